from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from edge_personalizer.classify.edge import (
    EdgeMapping,
    edge_client_ip,
    edge_device_type,
    edge_geo,
    merge_geo,
    with_edge_type,
)
from edge_personalizer.classify.visitor import Device, Geo

from ..conftest import ROOT
from ..servers import Server, start_proxy


def test_cloudflare_headers() -> None:
    geo = edge_geo({"cf-ipcountry": "de", "cf-ipcity": "M%C3%BCnchen", "cf-region-code": "BY",
                    "cf-timezone": "Europe/Berlin", "cf-iplatitude": "48.1",
                    "cf-ipcontinent": "EU"})
    assert geo == Geo(country="DE", region="DE-BY", city="München", continent="EU",
                      time_zone="Europe/Berlin", eu=True, latitude=48.1, source="edge")


def test_cloudfront_vercel_and_akamai() -> None:
    assert edge_geo({"cloudfront-viewer-country": "US", "cloudfront-viewer-metro-code": "807",
                     "cloudfront-viewer-country-region": "CA"}) == \
        Geo(country="US", region="US-CA", metro=807, eu=False, source="edge")
    assert edge_geo({"x-vercel-ip-country": "JP", "x-vercel-ip-city": "Tokyo"}).city == "Tokyo"  # type: ignore[union-attr]
    akamai = edge_geo({"x-akamai-edgescape": "georegion=246,country_code=SE,region_code=M,"
                                             "city=MALMO,lat=55.6,long=13.0,timezone=GMT+1"})
    assert akamai is not None and (akamai.country, akamai.region, akamai.city,
                                   akamai.time_zone) == ("SE", "SE-M", "Malmo", "Etc/GMT-1")


@pytest.mark.parametrize(("edgescape", "city", "time_zone"), [
    ("country_code=US,region_code=NY,city=NEWYORK,timezone=EST", "New York", "America/New_York"),
    ("country_code=US,region_code=CA,city=SANJOSE,timezone=PST", "San Jose",
     "America/Los_Angeles"),
    ("country_code=US,city=ST.LOUIS,timezone=CST", "St. Louis", "America/Chicago"),
    ("country_code=GB,city=LONDON,timezone=GMT", "London", "Etc/GMT"),
    ("country_code=IN,city=NEWDELHI,timezone=GMT+5", "New Delhi", "Etc/GMT-5"),
    ("country_code=US,city=ANCHORAGE,timezone=AKST", "Anchorage", "America/Anchorage"),
    ("country_code=BR,city=SAO+PAULO,timezone=GMT-3", "Sao Paulo", "Etc/GMT+3"),
    ("country_code=DE,city=BERLIN,timezone=Europe/Berlin", "Berlin", "Europe/Berlin"),
    ("country_code=XY,city=SOMEWHERE,timezone=XYZT", "Somewhere", None),
])
def test_akamai_cities_and_time_zones_read_like_the_other_sources(
        edgescape: str, city: str, time_zone: str | None) -> None:
    geo = edge_geo({"x-akamai-edgescape": edgescape})
    assert geo is not None and (geo.city, geo.time_zone) == (city, time_zone)


def test_unknown_and_absent_values() -> None:
    assert edge_geo({}) is None
    assert edge_geo({"cf-ipcountry": "XX"}) is None   # Cloudflare's "unknown"
    assert edge_geo({"cf-ipcountry": "T1"}) is None   # Tor


LONDON = Geo(country="GB", region="GB-ENG", city="London", postal="SW1",
             time_zone="Europe/London", continent="EU", latitude=51.5, longitude=-0.09,
             anonymous=False, source="database")


def test_edge_wins_and_the_database_fills_in_the_same_place() -> None:
    merged = merge_geo(Geo(country="GB", city="LONDON", source="edge"), LONDON)
    assert merged == replace(LONDON, source="edge")   # the database's spelling too
    region = merge_geo(Geo(country="GB", region="GB-ENG", source="edge"), LONDON)
    assert (region.city, region.latitude) == ("London", 51.5)
    assert merge_geo(None, LONDON) is LONDON


def test_the_database_adds_nothing_of_another_place() -> None:
    sweden = merge_geo(Geo(country="SE", source="edge"), LONDON)
    assert sweden == Geo(country="SE", anonymous=False, source="edge")
    malmo = merge_geo(Geo(country="GB", city="Manchester", source="edge"), LONDON)
    assert (malmo.city, malmo.region, malmo.time_zone) == ("Manchester", "GB-ENG",
                                                           "Europe/London")
    assert (malmo.latitude, malmo.longitude, malmo.postal) == (None, None, None)
    unknown_city = replace(LONDON, city=None)
    assert merge_geo(Geo(country="GB", city="Leeds", source="edge"), unknown_city).latitude \
        is None


def test_operator_mapping() -> None:
    mapping = EdgeMapping({"x-geo-country": "geo.country", "x-device": "device.type"})
    assert edge_geo({"x-geo-country": "fr"}, mapping) == Geo(country="FR", eu=True,
                                                             source="edge")
    assert edge_device_type({"x-device": "Tablet"}, mapping) == "tablet"
    assert edge_device_type({"x-device": "fridge"}, mapping) is None


def test_device_headers_and_bots_stay_bots() -> None:
    assert edge_device_type({"cloudfront-is-mobile-viewer": "true",
                             "cloudfront-is-desktop-viewer": "false"}) == "mobile"
    phone = with_edge_type(Device("desktop"), "mobile")
    assert phone.type == "mobile" and phone.touch
    assert with_edge_type(Device("bot"), "mobile").type == "bot"


def test_client_ip_headers() -> None:
    assert edge_client_ip({"cf-connecting-ip": "203.0.113.7"}) == "203.0.113.7"
    assert edge_client_ip({"true-client-ip": "198.51.100.1, 10.0.0.1"}) == "198.51.100.1"
    assert edge_client_ip({}) is None


GEO_RULES = """
slots:
  hero: {}
rules:
  - name: where
    when: {request.query.where: "1"}
    then:
      hero:
        html: "<p>{{ geo.city }}|{{ geo.latitude }}|{{ geo.longitude }}|{{ geo.time_zone }}</p>"
"""
CDN = httpx.HTTPTransport(local_address="127.0.0.2")
PAGE = {"accept": "text/html", "cf-connecting-ip": "81.2.69.142",   # London in the test db
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"}


@pytest.fixture(scope="module")
def geo_proxy(origin: Server, server_logs: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    rules = tmp_path_factory.mktemp("geo-rules")
    (rules / "site.yaml").write_text(GEO_RULES)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         "--trusted-proxy", "127.0.0.2",
                         "--geo-db", str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    yield server
    server.stop()


def shown(server: Server, headers: dict[str, str]) -> str:
    with httpx.Client(transport=CDN) as cdn:
        page = cdn.get(f"{server.url}/slotted/a?where=1", headers={**PAGE, **headers})
    start = page.text.index('data-ep-slot="hero"><p>') + len('data-ep-slot="hero"><p>')
    return page.text[start:page.text.index("</p>", start)]


def test_through_the_server_edge_places_keep_no_database_coordinates(
        geo_proxy: Server) -> None:
    city, latitude, longitude, zone = shown(geo_proxy, {}).split("|")
    assert city == "London" and latitude and longitude   # the database alone
    cloudflare = shown(geo_proxy, {"cf-ipcountry": "GB", "cf-ipcity": "Manchester"})
    assert cloudflare == "Manchester|||Europe/London"
    akamai = shown(geo_proxy, {"x-akamai-edgescape":
                               "country_code=US,region_code=NY,city=NEWYORK,timezone=EST"})
    assert akamai == "New York|||America/New_York"
