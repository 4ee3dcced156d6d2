from __future__ import annotations

from edge_personalizer.metrics import Metrics


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.request_finished(200, 0.01)
    first.origin_failed("timeout")
    assert b'ep_requests_total{status="200"} 1.0' in first.render()
    assert b'ep_origin_errors_total{kind="timeout"} 1.0' in first.render()
    assert b'ep_errors_total{stage="origin"} 1.0' in first.render()
    assert b'ep_requests_total{status="200"}' not in second.render()
