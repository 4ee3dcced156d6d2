"""A simulated week of shoppers, replayed through the demo's own rules into its store, so
the results and the dashboard have something to show the first time the demo starts."""

from __future__ import annotations

import random
import time
from types import MappingProxyType

from ..config import Settings
from ..learn.store import open_store
from ..replay import LoggedRequest, Replay, ReplaySummary

_BROWSERS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
_REFERERS = ("", "https://www.google.com/search?q=running+shoes", "", "https://www.bing.com/")
# The bold hero sells a little better: what the results should find.
_PURCHASE = MappingProxyType({"bold": 0.07, "control": 0.045, "holdout": 0.045})


async def simulate_week(settings: Settings, *, visitors: int = 3000, seed: int = 1,
                        start: float | None = None) -> ReplaySummary:
    """A week of visitors, from `start` (default: a week ago). The same seed and start
    give the same week: the rules read the visitors' clock (an evening rule)."""
    rng = random.Random(seed)
    replayer = Replay(settings)
    start = time.time() - 7 * 86400 if start is None else start
    for i in range(visitors):
        headers = {"user-agent": rng.choice(_BROWSERS)}
        referer = rng.choice(_REFERERS)
        if referer:
            headers["referer"] = referer
        shopper = _Shopper(replayer, f"demo-{seed}-{i}", f"198.51.100.{i % 250}", headers,
                           start + i * 7 * 86400 / visitors)
        page = await shopper.visit("/")
        variant = "bold" if b"Run further" in page else "control"
        if rng.random() < 2.5 * _PURCHASE[variant]:
            await shopper.visit("/cart", "POST", 30)
            if rng.random() < 0.4:
                total = rng.choice((59.0, 89.0, 129.0))
                await shopper.visit(f"/checkout/thanks?total={total:.2f}", after=90)
    return await replayer.finish()


class _Shopper:
    def __init__(self, replayer: Replay, visitor: str, ip: str, headers: dict[str, str],
                 at: float) -> None:
        self.replayer, self.visitor, self.ip, self.headers, self.at = (
            replayer, visitor, ip, headers, at)

    async def visit(self, url: str, method: str = "GET", after: float = 0.0) -> bytes:
        logged = LoggedRequest(url=url, method=method, headers=self.headers,
                               time=self.at + after, visitor=self.visitor, ip=self.ip)
        return (await self.replayer.request(logged)).body


async def has_counts(settings: Settings) -> bool:
    store = open_store(settings.store_location())
    try:
        return bool(await store.totals())
    finally:
        await store.close()
