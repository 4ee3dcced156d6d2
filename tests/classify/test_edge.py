from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from edge_personalizer.classify.edge import (
    EDGE_VENDORS,
    EdgeMapping,
    TrustedEdge,
    client_ip_headers,
    edge_device_type,
    edge_geo,
    edge_header_names,
    merge_geo,
    with_edge_type,
)
from edge_personalizer.classify.visitor import Device, Geo

from ..conftest import ROOT
from ..servers import Server, start_proxy

ALL = TrustedEdge(EDGE_VENDORS)


def test_cloudflare_headers() -> None:
    geo = ALL.geo({"cf-ipcountry": "de", "cf-ipcity": "M%C3%BCnchen", "cf-region-code": "BY",
                    "cf-timezone": "Europe/Berlin", "cf-iplatitude": "48.1",
                    "cf-ipcontinent": "EU"})
    assert geo == Geo(country="DE", region="DE-BY", city="München", continent="EU",
                      time_zone="Europe/Berlin", eu=True, latitude=48.1, source="edge")


def test_cloudfront_vercel_and_akamai() -> None:
    assert ALL.geo({"cloudfront-viewer-country": "US", "cloudfront-viewer-metro-code": "807",
                     "cloudfront-viewer-country-region": "CA"}) == \
        Geo(country="US", region="US-CA", metro=807, eu=False, source="edge")
    assert ALL.geo({"x-vercel-ip-country": "JP", "x-vercel-ip-city": "Tokyo"}).city == "Tokyo"  # type: ignore[union-attr]
    akamai = ALL.geo({"x-akamai-edgescape": "georegion=246,country_code=SE,region_code=M,"
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
    geo = ALL.geo({"x-akamai-edgescape": edgescape})
    assert geo is not None and (geo.city, geo.time_zone) == (city, time_zone)


def test_unknown_and_absent_values() -> None:
    assert ALL.geo({}) is None
    assert ALL.geo({"cf-ipcountry": "XX"}) is None   # Cloudflare's "unknown"
    assert ALL.geo({"cf-ipcountry": "T1"}) is None   # Tor


def test_a_header_sent_twice_or_no_country_code_tells_nothing() -> None:
    # merged as HTTP joins repeats: the visitor's own header passed on beside the edge's
    assert ALL.geo({"cf-ipcountry": "GB, US"}) is None
    assert ALL.geo({"cf-ipcountry": "United Kingdom"}) is None
    assert ALL.geo({"cloudfront-viewer-country": "G1"}) is None
    twice = ALL.geo({"cf-ipcountry": "gb", "cf-timezone": "Europe/London, Asia/Tokyo",
                     "cf-iplatitude": "51.5, 35.6", "cf-ipcity": "Washington, D.C."})
    assert twice == Geo(country="GB", city="Washington, D.C.", eu=False, source="edge")
    # a region code without its country (dropped as above) is dropped with it
    assert ALL.geo({"cf-ipcountry": "US, GB", "cf-region-code": "ENG"}) is None
    assert ALL.geo({"cf-ipcontinent": "Europe"}) is None   # nothing the edge tells


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
    assert edge_geo({"x-geo-country": "fr"}, mapping, vendors=()) == Geo(country="FR", eu=True,
                                                             source="edge")
    assert edge_device_type({"x-device": "Tablet"}, mapping, vendors=()) == "tablet"
    assert edge_device_type({"x-device": "fridge"}, mapping, vendors=()) is None


def test_device_headers_and_bots_stay_bots() -> None:
    assert ALL.device_type({"cloudfront-is-mobile-viewer": "true",
                             "cloudfront-is-desktop-viewer": "false"}) == "mobile"
    phone = with_edge_type(Device("desktop"), "mobile")
    assert phone.type == "mobile" and phone.touch
    assert with_edge_type(Device("bot"), "mobile").type == "bot"


def test_client_ip_headers_by_edge() -> None:
    assert client_ip_headers(("cloudflare", "akamai")) == ("cf-connecting-ip",
                                                           "true-client-ip")
    assert client_ip_headers(("fastly",)) == ("fastly-client-ip",)
    assert client_ip_headers(("forwarded",)) == client_ip_headers(("vercel",)) == ()


def test_the_headers_of_every_edge_are_named_for_the_proxy() -> None:
    names = edge_header_names()
    assert {"cf-connecting-ip", "true-client-ip", "fastly-client-ip", "cf-ipcountry",
            "cloudfront-viewer-city", "x-vercel-ip-country", "x-akamai-edgescape",
            "cloudfront-is-mobile-viewer"} <= names
    assert all(name == name.lower() for name in names)


def test_only_the_named_edges_headers_are_read() -> None:
    spoofable = {"cf-ipcountry": "DE", "x-akamai-edgescape": "country_code=FR,city=PARIS",
                 "cloudfront-viewer-country": "JP", "x-vercel-ip-country": "BR",
                 "cloudfront-is-mobile-viewer": "true"}
    assert TrustedEdge(()).geo(spoofable) is None
    assert TrustedEdge(("forwarded",)).device_type(spoofable) is None
    assert TrustedEdge(("akamai",)).geo(spoofable).country == "FR"   # type: ignore[union-attr]
    assert TrustedEdge(("vercel",)).geo(spoofable).country == "BR"   # type: ignore[union-attr]
    assert TrustedEdge(("cloudflare",)).device_type(spoofable) is None
    assert TrustedEdge(("cloudfront",)).device_type(spoofable) == "mobile"
    mapped = TrustedEdge((), EdgeMapping({"x-geo-country": "geo.country"}))
    assert mapped.geo({**spoofable, "x-geo-country": "se"}).country == "SE"  # type: ignore[union-attr]


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
                         "--geo-db", str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"),
                         env={"EP_EDGE_VENDOR": "cloudflare,akamai"})
    yield server
    server.stop()


def shown(server: Server, headers: dict[str, str] | list[tuple[str, str]]) -> str:
    with httpx.Client(transport=CDN) as cdn:
        sent = [*PAGE.items(), *(headers.items() if isinstance(headers, dict) else headers)]
        page = cdn.get(f"{server.url}/slotted/a?where=1", headers=sent)
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
    # the visitor's own CF-IPCountry passed on beside the edge's: the database decides
    assert shown(geo_proxy, [("cf-ipcountry", "US"), ("cf-ipcountry", "GB")]) == \
        shown(geo_proxy, {})


@pytest.fixture(scope="module")
def forwarded_only_proxy(origin: Server, server_logs: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    rules = tmp_path_factory.mktemp("geo-rules-forwarded")
    (rules / "site.yaml").write_text(GEO_RULES)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         "--trusted-proxy", "127.0.0.2",   # edge_vendor left at its default
                         "--geo-db", str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    yield server
    server.stop()


def test_by_default_a_trusted_proxy_is_believed_for_x_forwarded_for_alone(
        forwarded_only_proxy: Server) -> None:
    # nginx or a load balancer hands on whatever CDN headers the visitor made up.
    made_up = {"cf-connecting-ip": "203.0.113.9", "x-forwarded-for": "81.2.69.142",
               "cf-ipcountry": "DE", "cf-ipcity": "Berlin",
               "x-akamai-edgescape": "country_code=FR,city=PARIS",
               "cloudfront-viewer-city": "Tokyo", "x-vercel-ip-city": "Lima"}
    city, latitude, _, zone = shown(forwarded_only_proxy, made_up).split("|")
    assert (city, zone) == ("London", "Europe/London") and latitude   # the database's
