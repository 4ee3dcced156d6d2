"""The beacon `POST /__ep/collect` through the real server: what it counts, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from edge_personalizer.learn.counters import Tally, variant_totals
from edge_personalizer.learn.store.sqlite import SqliteStore

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..servers import Server, start_proxy

BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")
SAME_SITE = {"sec-fetch-site": "same-origin", "user-agent": BROWSER}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("beacon-data")


@pytest.fixture(scope="module")
def counting(origin: Server, server_logs: Path, data_dir: Path) -> Iterator[Server]:
    """A server of its own (its own SQLite store in `data_dir`), writing counts every 0.2 s."""
    server = start_proxy(server_logs, "--origin", origin.url,
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_PROFILE_COOKIE_SECURE": "false",
                              "EP_STORE_FLUSH_INTERVAL": "0.2", "EP_DATA_DIR": str(data_dir)})
    yield server
    server.stop()


def _clicks(data_dir: Path) -> dict[str, Tally]:
    """Per variant of hero-test: its exposures and cta-click conversions in the store."""
    time.sleep(0.6)   # one flush interval and then some

    async def totals() -> dict[str, Tally]:
        store = SqliteStore(data_dir / "ep.db")
        try:
            return variant_totals(await store.totals("hero-test"), "hero-test", "cta-click")
        finally:
            await store.close()

    return anyio.run(totals)


def _shown(server: Server) -> tuple[str, str]:
    """A new visitor sees the experiment: their variant and profile cookie."""
    with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as visitor:
        shown = visitor.get("/slotted/a?exp=on", headers={"accept": "text/html"})
        return ("bold" if "<h1>Bold</h1>" in shown.text else "control",
                visitor.cookies["ep_profile"])


def test_a_stale_cookie_sent_again_counts_its_conversion_once(counting: Server,
                                                              data_dir: Path) -> None:
    variant, cookie = _shown(counting)
    before = _clicks(data_dir)[variant]
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        # a double-clicked button, a reload, a replay: each with the cookie of before
        beacon = httpx.post(f"{counting.url}/__ep/collect",
                            json={"goal": "cta-click", "value": 2},
                            headers={**SAME_SITE, "x-forwarded-for": address},
                            cookies={"ep_profile": cookie})
        assert beacon.status_code == 204
        # its profile cookie is said to be the server's own, for an edge that adds decide's
        assert beacon.headers["x-ep-cookies"] == "set" and "ep_profile=" in \
            beacon.headers["set-cookie"]
    after = _clicks(data_dir)[variant]
    assert (after.conversions, after.value_sum) == (before.conversions + 1,
                                                    before.value_sum + 2.0)


def test_visitors_behind_one_address_are_not_refused_but_a_flood_is(counting: Server,
                                                                     data_dir: Path) -> None:
    shown = [_shown(counting) for _ in range(60)]   # an office behind one address
    before = _clicks(data_dir)
    statuses = [httpx.post(f"{counting.url}/__ep/collect", json={"goal": "cta-click"},
                           headers=SAME_SITE, cookies={"ep_profile": cookie}).status_code
                for _, cookie in shown]
    assert statuses == [204] * 60
    after = _clicks(data_dir)
    for variant in after:
        clicked = sum(1 for shown_variant, _ in shown if shown_variant == variant)
        assert after[variant].conversions == before[variant].conversions + clicked
    # one visitor's flood, and beacons without a profile from one address, are stopped
    _, cookie = shown[0]
    flood = [httpx.post(f"{counting.url}/__ep/collect", json={"goal": "cta-click"},
                        headers=SAME_SITE, cookies={"ep_profile": cookie}).status_code
             for _ in range(30)]
    assert 429 in flood
    anonymous = [httpx.post(f"{counting.url}/__ep/collect", json={"goal": "cta-click"},
                            headers=SAME_SITE).status_code for _ in range(30)]
    assert 429 in anonymous


@pytest.mark.parametrize("value", [-5, "12,50", 1e12, True, [1]])
def test_a_beacon_with_a_bad_value_is_told_what_is_wrong(counting: Server, value: Any) -> None:
    refused = httpx.post(f"{counting.url}/__ep/collect", json={"goal": "cta-click",
                                                               "value": value},
                         headers={**SAME_SITE, "x-forwarded-for": "203.0.113.9"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error.startswith(f"value {value!r}: expected a plain amount"), error
