from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from edge_personalizer.classify.geo import AnonymousIpDatabase, GeoDatabase, GeoLocator
from edge_personalizer.classify.visitor import UNKNOWN_GEO
from edge_personalizer.errors import GeoDatabaseError

from ..corpora import maxmind

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "maxmind"
BUNDLED = ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"


def test_bundled_database_opens_and_finds_a_city() -> None:
    db = GeoDatabase(BUNDLED)
    assert db.info.database_type == "GeoLite2-City"
    record = db.record("81.2.69.142")
    assert record is not None and record["country"]["iso_code"] == "GB"
    assert db.record("1.1.1.1") is None
    assert db.record("not an ip") is None
    db.close()


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="does not exist"):
        GeoDatabase(tmp_path / "none.mmdb")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(GeoDatabaseError, match="cannot be read"):
        GeoDatabase(junk)


def test_wrong_database_type_is_a_clear_error() -> None:
    with pytest.raises(GeoDatabaseError, match="expected a City or Country database"):
        GeoDatabase(DATA / "GeoLite2-ASN-Test.mmdb")


def _expected_records(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(an address inside each network, record) from MaxMind's source JSON."""
    out = []
    for entry in json.loads(maxmind(f"source-data/{name}.json").read_text()):
        for network, record in entry.items():
            net = ipaddress.ip_network(network, strict=False)
            if net.version == 6 and network.startswith("::") and net.prefixlen >= 96:
                # "::81.2.69.142/127" is the IPv4 network 81.2.69.142/31
                address = str(ipaddress.IPv4Address(int(net.network_address)))
            else:
                address = str(net.network_address)
            out.append((address, record))
    return out


@pytest.mark.parametrize("name", ["GeoIP2-City-Test", "GeoLite2-City-Test",
                                  "GeoIP2-Country-Test", "GeoLite2-Country-Test"])
def test_every_test_address_locates_as_its_source_says(name: str) -> None:
    database = GeoDatabase(maxmind(f"test-data/{name}.mmdb"))
    locator = GeoLocator(database, max_entries=16)
    checked = 0
    for address, record in _expected_records(name):
        if "country" not in record:
            continue
        stored = database.record(address)
        if stored is None or stored.get("country", {}).get("iso_code") != \
                record.get("country", {}).get("iso_code"):
            continue   # the writer merged or overrode this network: the mmdb wins
        geo = locator.locate(address)
        assert geo.country == record["country"]["iso_code"], address
        if "city" in record:
            assert geo.city == record["city"]["names"]["en"], address
        if record.get("subdivisions"):
            assert geo.region == f"{geo.country}-{record['subdivisions'][0]['iso_code']}"
        if record.get("location", {}).get("time_zone"):
            assert geo.time_zone == record["location"]["time_zone"]
        checked += 1
    with_country = [r for _, r in _expected_records(name) if "country" in r]
    assert checked >= 0.9 * len(with_country)
    database.close()


def test_known_addresses() -> None:
    locator = GeoLocator(GeoDatabase(BUNDLED))
    london = locator.locate("81.2.69.142")
    assert (london.country, london.city, london.region, london.continent) == \
        ("GB", "London", "GB-ENG", "EU")
    assert london.time_zone == "Europe/London" and london.source == "database"
    linkoping = locator.locate("89.160.20.112")
    assert (linkoping.country, linkoping.eu) == ("SE", True)
    assert locator.locate("2001:218::1").country == "JP"
    assert locator.locate("1.1.1.1") == UNKNOWN_GEO
    assert locator.locate(None) == UNKNOWN_GEO
    assert locator.locate("garbage") == UNKNOWN_GEO


def test_anonymous_ip_database_marks_anonymous_visitors() -> None:
    anonymous = AnonymousIpDatabase(maxmind("test-data/GeoIP2-Anonymous-IP-Test.mmdb"))
    locator = GeoLocator(GeoDatabase(BUNDLED), anonymous=anonymous)
    assert locator.locate("1.2.0.1").anonymous is True
    assert locator.locate("89.160.20.112").anonymous is False
    with pytest.raises(GeoDatabaseError, match="expected an Anonymous-IP database"):
        AnonymousIpDatabase(BUNDLED)
