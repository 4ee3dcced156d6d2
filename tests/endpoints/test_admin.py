"""/__ep/ endpoints through the real server."""

from __future__ import annotations

import httpx

from ..conftest import ADMIN_TOKEN
from ..servers import Server


def test_health_reports_ready_with_origin_rules_and_geo(proxy: Server) -> None:
    response = httpx.get(proxy.url + "/__ep/health")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ready"
    assert report["origin"]["reachable"] is True
    assert report["rules"]["loaded"] is True
    assert len(report["rules"]["version"]) == 16
    assert report["rules"]["files"] >= 1
    assert report["geo"]["type"] == "GeoLite2-City"
    assert response.headers["cache-control"] == "no-store"


def test_liveness_always_answers(proxy: Server) -> None:
    assert httpx.get(proxy.url + "/__ep/health/live").json() == {"status": "alive"}


def test_reserved_prefix_is_never_forwarded(proxy: Server, origin: Server) -> None:
    response = httpx.get(proxy.url + "/__ep/anything/else")
    assert response.status_code == 404
    assert "reserved for edge-personalizer" in response.text
    response = httpx.get(proxy.url + "/__ep/../__ep/nothing")
    assert response.status_code == 404


def test_metrics_need_the_admin_token(proxy: Server) -> None:
    assert httpx.get(proxy.url + "/__ep/metrics").status_code == 401
    wrong = httpx.get(proxy.url + "/__ep/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_metrics_in_prometheus_format(proxy: Server) -> None:
    httpx.get(proxy.url + "/status/404")
    response = httpx.get(proxy.url + "/__ep/metrics",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'ep_requests_total{status="404"}' in text
    assert "ep_origin_latency_seconds_bucket" in text
    assert "ep_personalization_seconds_bucket" in text
    assert "# TYPE ep_errors_total counter" in text
    assert "# TYPE ep_decisions_total counter" in text
    assert "ep_rules_loaded_timestamp_seconds" in text
