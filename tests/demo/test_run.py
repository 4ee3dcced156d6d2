"""`edge-personalizer demo`, as `make demo` runs it."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from edge_personalizer.config import Settings
from edge_personalizer.demo.run import SECRETS_FILE, demo_files, demo_secrets
from edge_personalizer.errors import SettingsError

from ..servers import Server, free_port, start

ROOT = Path(__file__).resolve().parents[2]


def time_zone_outside_the_evening_deal() -> str:
    """A zone where it is not a weekday evening for the next hours: the demo's evening-deal
    rule (Monday to Friday, 18:00-23:00 local time) then leaves the pages as they are."""
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Kiritimati"):
        if datetime.now(ZoneInfo(zone)).hour < 16:
            return zone
    raise AssertionError("some zone is before 16:00")


def _free_port_followed_by_a_free_one() -> int:
    for _ in range(100):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


@pytest.fixture(scope="module")
def demo(server_logs: Path) -> Iterator[tuple[Server, int]]:
    # Without --origin-port the shop takes the port after the proxy's (two demos on one
    # machine: `make demo PORT=9080` beside the one on 8080).
    port = _free_port_followed_by_a_free_one()
    origin_port = port + 1
    # Without --rules and --geo-db: the project's demo rules and test geo database.
    server = start([sys.executable, "-m", "edge_personalizer", "demo", "--port", str(port)],
                   port, server_logs / "demo.log",
                   ready_path="/__ep/health/live",
                   env={"EP_DEFAULT_TIME_ZONE": time_zone_outside_the_evening_deal(),
                        "EP_DATA_DIR": str(server_logs / "demo-data")},
                   timeout=90.0)   # the first start counts a simulated week first
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
    assert "  rules: rules    geo database: geo_db/GeoLite2-City-Test.mmdb\n" in log


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


def test_the_printed_newsletter_and_london_visitors_see_what_it_says(
        demo: tuple[Server, int]) -> None:
    server, _ = demo
    assert "-A 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0'" \
        in server.log()
    newsletter = httpx.get(
        server.url + "/?utm_medium=email&utm_campaign=newsletter-nov",
        headers={"accept": "text/html",
                 "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 "
                               "Firefox/133.0"})
    assert "banner=newsletter-readers" in newsletter.headers["x-ep-variant"]
    assert "set-cookie" in newsletter.headers
    assert f"-H 'X-Forwarded-For: 81.2.69.142' {server.url}/" in server.log()
    london = httpx.get(server.url + "/", headers={"accept": "text/html",
                                                  "x-forwarded-for": "81.2.69.142"})
    assert "Free delivery across the UK, London." in london.text


def test_demo_health_shows_rules_and_geo(demo: tuple[Server, int]) -> None:
    server, _ = demo
    assert server.health().json() == {   # anyone: ready or not, no details
        "status": "ready", "failing": [],
        "details": "sent with the admin token (Authorization: Bearer ...)"}
    token = printed(server, "admin token")
    assert f"Health: curl -s -H 'Authorization: Bearer {token}' {server.url}/__ep/health" \
        in server.log()
    report = httpx.get(server.url + "/__ep/health",
                       headers={"authorization": f"Bearer {token}"}).json()
    assert report["status"] == "ready"
    assert report["rules"]["rules"] >= 5
    assert report["geo"]["type"] == "GeoLite2-City"


def printed(server: Server, label: str) -> str:
    deadline = time.monotonic() + 5
    while f"{label}:" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    found = re.search(rf"^  {label}: (\S+)$", server.log(), re.MULTILINE)
    assert found is not None, server.log()
    return found.group(1)


def test_every_suggestion_needing_the_token_or_key_works(demo: tuple[Server, int]) -> None:
    server, _ = demo
    token, key = printed(server, "admin token"), printed(server, "profile key")
    admin = {"authorization": f"Bearer {token}"}
    assert f"Bearer {token}' {server.url}/__ep/metrics" in server.log()
    metrics = httpx.get(f"{server.url}/__ep/metrics", headers=admin)
    assert metrics.status_code == 200 and "ep_requests_total" in metrics.text
    assert httpx.post(f"{server.url}/__ep/reload", headers=admin).status_code == 200
    traced = httpx.get(f"{server.url}/?utm_source=fb",
                       headers={"accept": "text/html", "x-ep-debug": token})
    assert "x-ep-trace" in traced.headers
    command = [sys.executable, "-m", "edge_personalizer", "preview-link", "--rule",
               "facebook-welcome", "--url", f"{server.url}/", "--rules", "rules"]
    assert "preview-link \\\n      --rule facebook-welcome" in server.log()
    link = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "EP_PROFILE_KEYS": key})
    assert link.returncode == 0, link.stderr
    preview = httpx.get(link.stdout.strip(), headers={"accept": "text/html", "user-agent": PHONE})
    assert "Welcome, friend from Facebook" in preview.text   # no Facebook referrer needed


def test_the_printed_explain_command_explains_a_phone_from_facebook_in_london(
        demo: tuple[Server, int]) -> None:
    server, _ = demo
    printed(server, "admin token")   # (the instructions are printed whole by then)
    found = re.search(r"^  (\.venv/bin/edge-personalizer explain .*?)\n  The same trace",
                      server.log(), re.MULTILINE | re.DOTALL)
    assert found is not None, server.log()
    words = shlex.split(found.group(1).replace("\\\n", " "))
    assert words[0] == ".venv/bin/edge-personalizer"
    explained = subprocess.run([sys.executable, "-m", "edge_personalizer", *words[1:]],
                               capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert explained.returncode == 0 and explained.stderr == "", explained.stderr
    for line in ("device.type: mobile", "geo.city: London", "referral.source: facebook",
                 "hero: facebook-welcome (rule facebook-welcome)"):
        assert line in explained.stdout, explained.stdout


def test_the_demo_without_its_rules_or_geo_database_says_where_they_were_looked_for(
        tmp_path: Path) -> None:
    # It served with no rules and no geo database while printing what they would show.
    settings = Settings(origin_url="http://127.0.0.1:1")
    # (a folder named rules that is not the demo's, as an installed package may find one)
    (tmp_path / "rules").mkdir()
    with pytest.raises(SettingsError, match="the demo's rules are not at .*/rules .*make demo"):
        demo_files(settings, rules=tmp_path / "rules", geo_db=ROOT / "geo_db" / "missing.mmdb")
    with pytest.raises(SettingsError, match="the demo's geo database is not at .*missing.mmdb"):
        demo_files(settings, geo_db=ROOT / "geo_db" / "missing.mmdb")
    given = dataclasses.replace(settings, rules_dir=tmp_path, geo_db=tmp_path / "city.mmdb")
    assert demo_files(given, rules=tmp_path / "no", geo_db=tmp_path / "no") == (given, tmp_path)


def test_the_demo_keeps_the_token_and_key_it_made(tmp_path: Path) -> None:
    made = demo_secrets(tmp_path / "data")
    assert demo_secrets(tmp_path / "data") == made
    assert len(made[0]) >= 20 and len(made[1]) >= 40
    assert (tmp_path / "data" / SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    assert demo_secrets(tmp_path / "other") != made


def test_the_demo_has_counts_to_show_and_a_checkout_that_counts(
        demo: tuple[Server, int]) -> None:
    server, _ = demo
    token = re.search(r"admin token: (\S+)", server.log())
    assert token is not None
    auth = {"authorization": f"Bearer {token.group(1)}"}
    report = httpx.get(f"{server.url}/__ep/results", headers=auth).json()
    (hero,) = report["experiments"]
    assert hero["name"] == "hero-headline-test" and hero["exposed"] > 1000
    purchase = hero["goals"]["purchase"]["variants"]
    assert all(v["converted"] > 0 for v in purchase.values())
    dashboard = httpx.get(f"{server.url}/__ep/dashboard", headers=auth)
    assert dashboard.status_code == 200 and "hero-headline-test" in dashboard.text
    # A shopper through the proxy: add to the cart, buy, and the thank-you page counts.
    browser = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
               "like Gecko) Chrome/131.0.0.0 Safari/537.36")
    with httpx.Client(base_url=server.url, headers={"user-agent": browser,
                                                   "accept": "text/html"}) as shopper:
        shopper.get("/")
        shopper.post("/cart", data={"sku": "rn-100"})
        thanks = shopper.post("/checkout", follow_redirects=True)
    assert thanks.status_code == 200 and "Order total" in thanks.text
