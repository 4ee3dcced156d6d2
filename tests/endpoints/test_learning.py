"""The beacon and the results endpoint, through the real server."""

from __future__ import annotations

import httpx

from edge_personalizer.endpoints.learning import RateLimit

from ..conftest import ADMIN_TOKEN
from ..servers import Server

SAME_SITE = {"sec-fetch-site": "same-origin", "content-type": "application/json"}


def test_results_need_the_admin_token_and_list_the_experiments(proxy: Server) -> None:
    assert httpx.get(f"{proxy.url}/__ep/results").status_code == 401
    response = httpx.get(f"{proxy.url}/__ep/results",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    report = response.json()
    assert {e["name"] for e in report["experiments"]} >= {"hero-test"}


def test_beacons_come_only_from_the_site_s_own_pages(proxy: Server) -> None:
    url = f"{proxy.url}/__ep/collect"
    cross = httpx.post(url, json={"goal": "x"}, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    forged = httpx.post(url, json={"goal": "x"}, headers={"origin": "https://evil.example"})
    assert forged.status_code == 403
    assert httpx.get(url).status_code == 405


def test_a_bad_beacon_is_refused_and_counts_nothing(proxy: Server) -> None:
    url = f"{proxy.url}/__ep/collect"
    big = httpx.post(url, content=b'{"goal": "' + b"x" * 2000 + b'"}', headers=SAME_SITE)
    assert big.status_code == 400
    assert httpx.post(url, content=b"not json", headers=SAME_SITE).status_code == 400
    unknown = httpx.post(url, json={"goal": "no-such-goal"}, headers=SAME_SITE)
    assert unknown.status_code == 400 and "set-cookie" not in unknown.headers
    metrics = httpx.get(f"{proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    assert 'ep_goal_signals_invalid_total{kind="beacon"}' in metrics


def test_rate_limit_refills_with_time() -> None:
    now = [0.0]
    limit = RateLimit(rate=1.0, burst=2, clock=lambda: now[0])
    assert [limit.allows("a") for _ in range(3)] == [True, True, False]
    assert limit.allows("b")
    now[0] = 1.0
    assert limit.allows("a") and not limit.allows("a")
