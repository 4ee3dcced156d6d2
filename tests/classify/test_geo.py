from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.classify.geo import GeoDatabase
from edge_personalizer.errors import GeoDatabaseError

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
