"""The learning loop's endpoints: `GET /__ep/results` (admin) and the beacon
`POST /__ep/collect`, for conversions only the browser sees (a click)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
from lru import LRU
from starlette.types import Receive, Scope, Send

from ..errors import StoreError
from ..learn import bandit
from ..learn.catalog import read_catalog
from ..learn.goals import MAX_VALUE, parse_value
from ..learn.results import results
from ..learn.store import Store, decoded, read_table
from ..personalize.personalizer import Personalizer
from ..personalize.response_headers import COOKIES_SET, PageHeaders
from ..rules.book import RuleBook
from ..rules.model import RuleSet
from .admin import AdminToken
from .responses import read_small_body, send_json
from .router import Route

MAX_BEACON_BYTES = 1024


class RateLimit:
    """At most `rate` events a second per key, in bursts of `burst` (a token bucket per
    key, bounded: the least recently seen keys are forgotten first)."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: LRU[str, tuple[float, float]] = LRU(max_keys)

    def allows(self, key: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True


def same_site(scope: Scope) -> bool:
    """A beacon from the site's own pages: the browser says so (Sec-Fetch-Site), or its
    Origin names the host it was sent to."""
    headers = dict(scope["headers"])
    fetch_site = headers.get(b"sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in (b"same-origin", b"same-site")
    origin, host = headers.get(b"origin"), headers.get(b"host")
    if origin is None or host is None:
        return False
    return bool(origin.partition(b"://")[2].rstrip(b"/") == host)


class Results:
    """Experiment results from the store's totals (current to one flush interval)."""

    def __init__(self, *, store: Store, rules: RuleBook | None, token: AdminToken) -> None:
        self.store = store
        self.rules = rules
        self.token = token

    def routes(self) -> dict[str, Route]:
        return {"/__ep/results": Route(self.results)}

    async def results(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.token.allows(scope, send):
            return
        if self.rules is None:
            await send_json(send, 409, {"error": "no rules directory configured"})
            return
        try:
            totals = await self.store.totals()
            recorded = await read_catalog(self.store)   # stopped experiments' goals
        except StoreError as exc:
            await send_json(send, 503, {"error": f"the store does not answer: {exc}"},
                            extra=[(b"retry-after", b"5")] if exc.passes else [])
            return
        ruleset = self.rules.current
        # scipy's distributions take a while for many experiments: off the event loop.
        report = await anyio.to_thread.run_sync(partial(
            results, ruleset, totals, recorded, unreadable=self.store.unreadable()))
        # An edit that did not load has not taken effect: these are the serving rules'.
        report["reload_error"] = self.rules.last_error
        await self._add_weights(report, ruleset)
        await send_json(send, 200, report)

    async def _add_weights(self, report: dict[str, Any], ruleset: RuleSet) -> None:
        """Each bandit experiment's current weights per cell, with their version."""
        if not any(e.allocation == "bandit" for e in ruleset.experiments):
            return
        try:
            published = await read_table(self.store, bandit.TABLE_NAME)
            table = (decoded(published, bandit.WeightsTable.decode)
                     if published is not None else bandit.WeightsTable())
        except StoreError:   # (an outage, or a copy that does not read: no weights shown)
            table = bandit.WeightsTable()
        add_bandit_weights(report, ruleset, table)


def add_bandit_weights(report: dict[str, Any], ruleset: RuleSet,
                       table: bandit.WeightsTable) -> None:
    """Each bandit experiment of `report` (results' JSON) with its weights per cell as
    `table` publishes them, and their version (None: none published yet)."""
    bandits = {e.name for e in ruleset.experiments if e.allocation == "bandit"}
    weights = table.as_json() if bandits else {}
    for experiment in report["experiments"]:
        if experiment["name"] in bandits:
            experiment["bandit"] = weights.get(experiment["name"])


class Beacon:
    """`POST /__ep/collect` with `{"goal": NAME, "value": AMOUNT}`: a conversion the page's
    script reports (navigator.sendBeacon), counted like any other for the visitor of the
    profile cookie. Small, same-site and rate-limited; 204 when taken.

    Two limits, per worker: `limit` per visitor (the id of a valid profile cookie, or the
    address for a beacon without one, which counts nothing), and a generous `address_limit`
    per address, so the visitors of an office or a carrier's shared address are not refused
    while a flood from one address still is. The store counts a visitor's conversion once
    however many beacons bring it.
    """

    def __init__(self, headers: PageHeaders, *, limit: RateLimit | None = None,
                 address_limit: RateLimit | None = None) -> None:
        self.headers = headers
        self.personalizer: Personalizer = headers.personalizer
        self.limit = limit or RateLimit(rate=2.0, burst=20)
        self.address_limit = address_limit or RateLimit(rate=50.0, burst=500)

    def routes(self) -> dict[str, Route]:
        return {"/__ep/collect": Route(self.collect, frozenset({"POST"}))}

    async def collect(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not same_site(scope):
            await send_json(send, 403, {"error": "beacons come from the site's own pages"})
            return
        client = scope.get("client")
        address = client[0] if client else "-"
        if not self.address_limit.allows(address):
            await _too_many(send)
            return
        body = await read_small_body(receive, MAX_BEACON_BYTES)
        event = _event(body) if body is not None else _BAD_BODY
        learning = self.personalizer.learning
        if isinstance(event, str) or learning is None:
            if learning is not None:
                learning.goals.on_invalid("beacon")
            await send_json(send, 400, {"error": event if isinstance(event, str) else _BAD_BODY})
            return
        goals = self.personalizer.rules.current.goals if self.personalizer.rules else {}
        conversion = learning.goals.beacon(goals, *event)
        if isinstance(conversion, str):
            await send_json(send, 400, {"error": conversion})
            return
        exchange = self.personalizer.begin({**scope, "method": "POST"})
        profile = exchange.visitor.profile
        if not self.limit.allows(address if profile.new else "visitor:" + profile.visitor_id):
            await _too_many(send)
            return
        exchange.conversions = [conversion]
        cookie = self.personalizer.profile_cookie(exchange)
        extra = [(b"set-cookie", cookie), COOKIES_SET] if cookie is not None else []
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"cache-control", b"no-store"), *extra]})
        await send({"type": "http.response.body", "body": b""})


_BAD_BODY = 'expected a JSON object of at most 1 KiB: {"goal": NAME, "value": AMOUNT}'
_BAD_VALUE = ("value {!r}: expected a plain amount (digits, at most one '.' with decimals, "
              f"up to {MAX_VALUE:.0f}), such as 49.90")


async def _too_many(send: Send) -> None:
    await send_json(send, 429, {"error": "too many beacons"}, extra=[(b"retry-after", b"1")])


def _event(body: bytes) -> tuple[str, float | None] | str:
    """The beacon's goal and value, or what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _BAD_BODY
    if not isinstance(data, dict) or not isinstance(data.get("goal"), str):
        return _BAD_BODY
    value = data.get("value")
    if value is None:
        return data["goal"], None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return _BAD_VALUE.format(value)
    amount = parse_value(str(value))
    return (data["goal"], amount) if amount is not None else _BAD_VALUE.format(value)
