from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge_personalizer.observability.workers import WorkerBoard, combined_metrics

ONE = """# HELP ep_requests_total Requests
# TYPE ep_requests_total counter
ep_requests_total{status="200"} 3.0
# HELP ep_store_up Store up
# TYPE ep_store_up gauge
ep_store_up 1.0
# HELP ep_counts_waiting Waiting
# TYPE ep_counts_waiting gauge
ep_counts_waiting 4.0
"""
TWO = ONE.replace('status="200"} 3.0', 'status="200"} 5.0').replace("ep_store_up 1.0",
                                                                     "ep_store_up 0.0")


def _values(text: bytes) -> dict[str, float]:
    return {sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples}


def test_counters_add_up_and_gauges_say_what_is_true_of_the_server() -> None:
    combined = _values(combined_metrics([ONE, TWO]))
    assert combined["ep_requests_total[('status', '200')]"] == 8.0
    assert combined["ep_store_up[]"] == 0.0            # down for one worker: down
    assert combined["ep_counts_waiting[]"] == 8.0


def test_the_board_shows_live_workers_only(tmp_path: Path) -> None:
    board = WorkerBoard(tmp_path, stale_after=5)
    board.publish({"rules_version": "v1"})
    (tmp_path / "999999999.json").write_text(json.dumps(
        {"pid": 999999999, "at": time.time(), "rules_version": "old"}))     # no such process
    (tmp_path / "1.json").write_text(json.dumps({"pid": 1, "at": time.time() - 60}))  # stale
    assert [s["rules_version"] for s in board.states()] == ["v1"]
    board.leave()
    assert board.states() == []


def test_two_threads_of_a_worker_publish_at_once(tmp_path: Path) -> None:
    # The reload thread publishes while the publisher's own turn does: neither may fail.
    board = WorkerBoard(tmp_path)
    failures: list[BaseException] = []

    def publish_many(name: str) -> None:
        try:
            for n in range(300):
                board.publish({"by": name, "n": n})
        except BaseException as exc:   # what a thread raises is lost unless kept
            failures.append(exc)

    threads = [threading.Thread(target=publish_many, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [s["n"] for s in board.states()] == [299]
    assert not list(tmp_path.glob(".*.tmp"))
