"""`edge-personalizer demo`, as `make demo` runs it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from ..servers import Server, free_port, start

ROOT = Path(__file__).resolve().parents[2]


def time_zone_outside_the_evening_deal() -> str:
    """A zone where it is not a weekday evening for the next hours: the demo's evening-deal
    rule (Monday to Friday, 18:00-23:00 local time) then leaves the pages as they are."""
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Kiritimati"):
        if datetime.now(ZoneInfo(zone)).hour < 16:
            return zone
    raise AssertionError("some zone is before 16:00")


@pytest.fixture(scope="module")
def demo(server_logs: Path) -> Iterator[tuple[Server, int]]:
    port, origin_port = free_port(), free_port()
    server = start([sys.executable, "-m", "edge_personalizer", "demo", "--rules", "rules",
                    "--geo-db", "geo_db/GeoLite2-City-Test.mmdb", "--port", str(port),
                    "--origin-port", str(origin_port)], port, server_logs / "demo.log",
                   ready_path="/__ep/health/live",
                   env={"EP_DEFAULT_TIME_ZONE": time_zone_outside_the_evening_deal()})
    yield server, origin_port
    server.stop()


def test_demo_prints_what_to_try(demo: tuple[Server, int]) -> None:
    server, origin_port = demo
    deadline = time.monotonic() + 5
    while "Try:" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    assert f"the shop through the proxy:  http://127.0.0.1:{server.port}/" in log
    assert f"demo shop (the origin):      http://127.0.0.1:{origin_port}/" in log
    assert f"http://127.0.0.1:{server.port}/ | grep -A2 'data-ep-slot'" in log


@pytest.mark.parametrize("path", ["/", "/running", "/trail", "/sale", "/about", "/cart",
                                  "/static/shop.css", "/api/products.json", "/missing"])
def test_every_demo_page_comes_through_byte_identical(demo: tuple[Server, int],
                                                      path: str) -> None:
    server, origin_port = demo
    direct = httpx.get(f"http://127.0.0.1:{origin_port}{path}")
    proxied = httpx.get(f"{server.url}{path}")
    assert proxied.status_code == direct.status_code
    assert proxied.content == direct.content
    assert proxied.headers["content-type"] == direct.headers["content-type"]


def test_cart_cookie_and_redirect_round_trip(demo: tuple[Server, int]) -> None:
    server, _ = demo
    with httpx.Client(base_url=server.url) as client:
        added = client.post("/cart", data={"sku": "rn-100"})
        assert added.status_code == 303
        assert added.headers["location"] == "/cart"
        page = client.get("/cart")
    assert "Tempo Road Runner" in page.text
    assert "Cart (1)" in page.text


PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


def test_demo_personalizes_the_shop(demo: tuple[Server, int]) -> None:
    server, origin_port = demo
    headers = {"accept": "text/html", "referer": "https://l.facebook.com/", "user-agent": PHONE}
    page = httpx.get(server.url + "/", headers=headers)
    assert "Welcome, friend from Facebook" in page.text
    assert "Shop faster in our app." in page.text
    variants = page.headers["x-ep-variant"].split(",")   # promo too, on weekday evenings
    assert {"banner=mobile-app-nudge", "hero=facebook-welcome"} <= set(variants)
    newsletter = httpx.get(server.url + "/?utm_medium=email&utm_campaign=newsletter-nov",
                           headers={"accept": "text/html", "user-agent": PHONE})
    assert "Thanks for reading our newsletter" in newsletter.text
    plain = httpx.get(f"http://127.0.0.1:{origin_port}/")
    assert "Welcome, friend from Facebook" not in plain.text


def test_demo_health_shows_rules_and_geo(demo: tuple[Server, int]) -> None:
    server, _ = demo
    report = httpx.get(server.url + "/__ep/health").json()
    assert report["status"] == "ready"
    assert report["rules"]["rules"] >= 5
    assert report["geo"]["type"] == "GeoLite2-City"
