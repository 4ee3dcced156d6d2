from __future__ import annotations

from edge_personalizer.classify.edge import (
    EdgeMapping,
    edge_client_ip,
    edge_device_type,
    edge_geo,
    merge_geo,
    with_edge_type,
)
from edge_personalizer.classify.visitor import Device, Geo


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
    assert akamai is not None and (akamai.country, akamai.region, akamai.city) == \
        ("SE", "SE-M", "MALMO")


def test_unknown_and_absent_values() -> None:
    assert edge_geo({}) is None
    assert edge_geo({"cf-ipcountry": "XX"}) is None   # Cloudflare's "unknown"
    assert edge_geo({"cf-ipcountry": "T1"}) is None   # Tor


def test_edge_wins_and_the_database_fills_in() -> None:
    database = Geo(country="GB", city="London", time_zone="Europe/London", source="database")
    merged = merge_geo(Geo(country="SE", source="edge"), database)
    assert (merged.country, merged.city, merged.source) == ("SE", "London", "edge")
    assert merge_geo(None, database) is database


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
