"""Per-segment bandits through the real server: conversions won against fixed weights, a
context-free bandit and the oracle.

    .venv/bin/python bench/learning/bandit_server.py [VISITORS]
        # writes bench/results/learning_bandit_server.json (VISITORS: 30,000 by default)

Each policy runs its own `edge-personalizer serve` (one worker, the embedded SQLite store,
counts flushed every 0.2 s) in front of the test origin, with a rule file whose experiment
`hero-test` has three variants and, for the bandits, `allocation: bandit` with
`bandit: {burn_in: 200, floor: 1, update_every: 1s}` and, per segment,
`per: [request.header.x-segment]`. Visitors arrive at about 300 a second, so an update
comes every ~300 visitors, as in bench/learning/bandit_sim.py. Each visitor sends their
segment header, gets their variant (X-EP-Variant) and profile cookie on a page view, and
converts with their segment's known rate for that variant by requesting the goal's page
with the cookie. A quarter of them come back later with their cookie: the variant they
are shown again is compared with the first. The oracle's conversions use the same random
draws with each segment's best variant, without a server.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import start_origin, start_proxy  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RATES = {"segment-1": {"control": 0.04, "a": 0.08, "b": 0.02},
         "segment-2": {"control": 0.04, "a": 0.02, "b": 0.07},
         "segment-3": {"control": 0.05, "a": 0.03, "b": 0.03}}
ARRIVALS_PER_SECOND = 300
RETURNING = 0.25
IN_FLIGHT = 16
VISITOR_COOKIE = "x-bench-visitor-cookie"
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")   # crawlers are never bucketed nor counted
RULES = """\
slots: {{hero: {{}}}}
goals:
  purchase: {{when: {{request.path: /page/thanks}}}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
{allocation}    variants:
      control: {{weight: 1}}
      a: {{weight: 1, html: A}}
      b: {{weight: 1, html: B}}
"""
POLICIES = {
    "fixed": "",
    "context_free": "    allocation: bandit\n"
                    "    bandit: {burn_in: 200, floor: 1, update_every: 1s}\n",
    "per_segment": "    allocation: bandit\n    per: [request.header.x-segment]\n"
                   "    bandit: {burn_in: 200, floor: 1, update_every: 1s}\n",
}


async def own_cookie_only(request: httpx.Request) -> None:
    """Each visitor carries their own cookie (VISITOR_COOKIE), never the client's jar."""
    request.headers.pop("cookie", None)
    mine = request.headers.pop(VISITOR_COOKIE, None)
    if mine:
        request.headers["cookie"] = mine


def shown_variant(page: httpx.Response) -> str:
    """The variant of X-EP-Variant (`hero=a`); the control changes nothing and names none."""
    return page.headers.get("x-ep-variant", "").partition("=")[2] or "control"


class Population:
    """Who arrives, in which segment, and the uniform draw that decides a conversion."""

    def __init__(self, visitors: int, seed: int = 16) -> None:
        rng = np.random.default_rng(seed)
        self.segments = [str(s) for s in rng.choice(sorted(RATES), size=visitors)]
        self.draws = rng.random(visitors).tolist()
        self.returns = (rng.random(visitors) < RETURNING).tolist()

    def oracle(self) -> int:
        best = {s: max(rates.values()) for s, rates in RATES.items()}
        return sum(d < best[s] for s, d in zip(self.segments, self.draws, strict=True))


async def visit(client: httpx.AsyncClient, n: int, people: Population,
                shown: dict[int, tuple[str, str]], stats: dict[str, Any]) -> None:
    segment = people.segments[n]
    headers = {"accept": "text/html", "user-agent": BROWSER, "x-segment": segment}
    page = await client.get("/slotted/home", headers=headers)
    variant = shown_variant(page)
    cookie = page.headers.get("set-cookie", "").split(";", 1)[0]
    shown[n] = (variant, cookie)
    stats["served"][segment][variant] = stats["served"][segment].get(variant, 0) + 1
    if variant in RATES[segment] and people.draws[n] < RATES[segment][variant]:
        stats["conversions"] += 1
        await client.get("/page/thanks", headers={**headers, VISITOR_COOKIE: cookie})


async def come_back(client: httpx.AsyncClient, n: int, people: Population,
                    shown: dict[int, tuple[str, str]], stats: dict[str, Any]) -> None:
    variant, cookie = shown[n]
    page = await client.get("/slotted/home", headers={
        "accept": "text/html", "user-agent": BROWSER, "x-segment": people.segments[n],
        VISITOR_COOKIE: cookie})
    again = shown_variant(page)
    stats["returned"] += 1
    stats["switched"] += again != variant


async def drive(url: str, people: Population) -> dict[str, Any]:
    stats: dict[str, Any] = {"conversions": 0, "returned": 0, "switched": 0,
                             "served": {s: {} for s in RATES}}
    shown: dict[int, tuple[str, str]] = {}
    comebacks: list[int] = []
    pending: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30.0,
                                 event_hooks={"request": [own_cookie_only]}) as client:
        for n in range(len(people.segments)):
            lag = started + n / ARRIVALS_PER_SECOND - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
            while len(pending) >= IN_FLIGHT:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if people.returns[n]:
                comebacks.append(n)
            if n % 4 == 0 and comebacks and comebacks[0] in shown and n - comebacks[0] > 600:
                back = comebacks.pop(0)
                pending.add(asyncio.create_task(come_back(client, back, people, shown, stats)))
            pending.add(asyncio.create_task(visit(client, n, people, shown, stats)))
        if pending:
            await asyncio.wait(pending)
    stats["seconds"] = round(time.monotonic() - started, 1)
    return stats


def run_policy(name: str, people: Population, tmp: Path) -> dict[str, Any]:
    rules = tmp / f"rules-{name}"
    rules.mkdir()
    (rules / "experiment.yaml").write_text(RULES.format(allocation=POLICIES[name]))
    origin = start_origin(tmp)
    proxy = start_proxy(tmp, "--origin", origin.url, "--rules", str(rules), env={
        "EP_VARIANT_HEADER": "true", "EP_STORE_FLUSH_INTERVAL": "0.2",
        "EP_PROFILE_COOKIE_SECURE": "false"})
    try:
        return asyncio.run(drive(proxy.url, people))
    finally:
        proxy.stop()
        origin.stop()


def main() -> None:
    visitors = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    people = Population(visitors)
    oracle = people.oracle()
    policies: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in POLICIES:
            policies[name] = run_policy(name, people, Path(folder))
            policies[name]["share_of_oracle"] = round(policies[name]["conversions"] / oracle, 4)
            print(name, json.dumps(policies[name]), flush=True)
    results = {"machine": {"python": platform.python_version()},
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "setup": {"visitors": visitors, "rates": RATES, "arrivals_per_second":
                         ARRIVALS_PER_SECOND, "returning_share": RETURNING,
                         "bandit": "burn_in 200, floor 1%, update_every 1s"},
               "oracle_conversions": oracle, "policies": policies}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning_bandit_server.json").write_text(json.dumps(results, indent=2) + "\n")
    print("oracle", oracle)


if __name__ == "__main__":
    main()
