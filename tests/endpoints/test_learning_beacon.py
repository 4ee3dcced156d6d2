"""The beacon `POST /__ep/collect` through the real server: what it counts, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

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
    after = _clicks(data_dir)[variant]
    assert (after.conversions, after.value_sum) == (before.conversions + 1,
                                                    before.value_sum + 2.0)
