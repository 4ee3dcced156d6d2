from __future__ import annotations

from edge_personalizer.observability.metrics import Metrics


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.request_finished(200, 0.01)
    first.origin_failed("timeout")
    assert b'ep_requests_total{status="200"} 1.0' in first.render()
    assert b'ep_origin_errors_total{kind="timeout"} 1.0' in first.render()
    assert b'ep_errors_total{stage="origin"} 1.0' in first.render()
    assert b'ep_requests_total{status="200"}' not in second.render()


def test_request_histograms_count_cumulatively_by_upper_bound() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.0011, 0.3, 60):   # on a bound, just past it, mid, past all
        metrics.request_finished(404, seconds)
    text = metrics.render().decode()
    assert 'ep_requests_total{status="404"} 4.0' in text
    assert 'ep_request_duration_seconds_bucket{le="0.001"} 1.0' in text
    assert 'ep_request_duration_seconds_bucket{le="0.0025"} 2.0' in text
    assert 'ep_request_duration_seconds_bucket{le="0.25"} 2.0' in text
    assert 'ep_request_duration_seconds_bucket{le="0.5"} 3.0' in text
    assert 'ep_request_duration_seconds_bucket{le="30.0"} 3.0' in text
    assert 'ep_request_duration_seconds_bucket{le="+Inf"} 4.0' in text
    assert 'ep_request_duration_seconds_count 4.0' in text
    assert 'ep_request_duration_seconds_sum 60.3021' in text


def test_log_lines_dropped_are_counted_at_scrape_time() -> None:
    metrics, dropped = Metrics(), [0]
    metrics.watch_log(lambda: dropped[0])
    dropped[0] = 7
    assert b"ep_log_lines_dropped_total 7.0" in metrics.render()


def test_background_tasks_started_again_are_a_gauge_read_at_scrape_time() -> None:
    # A worker's restarting trainer showed only in that worker's /__ep/health: nothing an
    # alert could watch, and another worker answering health hid it.
    metrics, restarting = Metrics(), [0]
    metrics.watch_log(lambda: 0, lambda: restarting[0])
    assert b"ep_background_restarting 0.0" in metrics.render()
    restarting[0] = 2
    assert b"ep_background_restarting 2.0" in metrics.render()
