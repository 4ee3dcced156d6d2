from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from edge_personalizer.observability.workers import (
    WorkerBoard,
    board_directory,
    combined_metrics,
    start_afresh,
)

from ..servers import ADMIN_TOKEN, Server, start_proxy

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


CREATED = """# HELP ep_rule_reload_failures_total Rejected
# TYPE ep_rule_reload_failures_total counter
ep_rule_reload_failures_total 1.0
# HELP ep_rule_reload_failures_created Rejected
# TYPE ep_rule_reload_failures_created gauge
ep_rule_reload_failures_created 1700000000.0
"""


def test_a_counter_was_created_when_its_first_worker_s_was() -> None:
    later = CREATED.replace("1700000000.0", "1700000050.0")
    combined = _values(combined_metrics([later, CREATED, later]))
    assert combined["ep_rule_reload_failures_created[]"] == 1700000000.0   # not a sum
    assert combined["ep_rule_reload_failures_total[]"] == 3.0


def _dead_worker(directory: Path, pid: int, metrics: str) -> None:
    (directory / f"{pid}.json").write_text(json.dumps(
        {"pid": pid, "at": time.time(), "metrics": metrics}))


def test_a_dead_worker_s_counters_stay_in_the_server_s_once(tmp_path: Path) -> None:
    board = WorkerBoard(tmp_path)
    board.publish({"metrics": TWO})
    _dead_worker(tmp_path, 999999999, ONE)    # killed outright: its state stayed behind
    first = _values(combined_metrics([TWO, *board.others_metrics()]))
    assert first["ep_requests_total[('status', '200')]"] == 8.0
    assert first["ep_store_up[]"] == 0.0      # the dead worker's gauges are not kept...
    assert first["ep_counts_waiting[]"] == 4.0
    # ...its counters are, once, however many scrapes read them, from any worker
    other = WorkerBoard(tmp_path)
    other.pid = 999999998   # another worker, which has counted nothing itself
    scrapes = [combined_metrics([TWO, *board.others_metrics()]),
               combined_metrics(other.others_metrics()),
               combined_metrics([TWO, *board.others_metrics()])]
    assert [_values(text)["ep_requests_total[('status', '200')]"] for text in scrapes] \
        == [8.0] * 3
    assert [s["pid"] for s in board.states()] == [board.pid]


def test_a_worker_that_stops_hands_its_counts_on(tmp_path: Path) -> None:
    leaving, staying = WorkerBoard(tmp_path), WorkerBoard(tmp_path)
    staying.pid = 999999998   # a pid of its own (the test has one process)
    leaving.publish({"metrics": ONE})
    leaving.leave()
    leaving.publish({"metrics": ONE})   # a reload finishing after: not counted twice
    assert leaving.states() == []
    counted = _values(combined_metrics([TWO, *staying.others_metrics()]))
    assert counted["ep_requests_total[('status', '200')]"] == 8.0
    # a worker given the pid of a dead one takes over none of its counts, nor loses them
    _dead_worker(tmp_path, os.getpid(), ONE)
    WorkerBoard(tmp_path).publish({"metrics": TWO})
    counted = _values(combined_metrics([TWO, *staying.others_metrics()]))
    assert counted["ep_requests_total[('status', '200')]"] == 3.0 + 3.0 + 5.0 + 5.0


def test_a_server_s_board_starts_afresh(tmp_path: Path) -> None:
    # pid 1 in a container, on a kept volume: the last run's workers are no part of this one
    directory = board_directory(tmp_path, 1)
    directory.mkdir(parents=True)
    _dead_worker(directory, 999999999, ONE)
    old = WorkerBoard(directory)
    old.pid = 999999998
    assert combined_metrics(old.others_metrics())   # the last run's counts
    start_afresh(directory)
    assert WorkerBoard(directory).others_metrics() == []
    # the boards of servers gone (each restart left one, ~5 KB) go; a live server's stays,
    # and so does one written within the minute (a server whose pids are not this one's)
    gone, recent = board_directory(tmp_path, 999999997), board_directory(tmp_path, 999999996)
    live = board_directory(tmp_path, os.getpid())
    for board in (gone, recent, live, directory):
        board.mkdir(parents=True, exist_ok=True)
        (board / "retired.prom").write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(gone / "retired.prom", (an_hour_ago, an_hour_ago))
    start_afresh(directory)
    assert sorted(p.name for p in directory.parent.iterdir()) == [
        str(os.getpid()), "999999996"]


def test_a_board_that_cannot_be_written_is_told_and_its_end_too(
        origin: Server, tmp_path: Path) -> None:
    # With data_dir full, each scrape showed one worker's counts (8,305, then 3,910: a
    # counter reset to Prometheus), health said ready with "workers": [] and a reload
    # answered 200 with "workers": []; only the log said why.
    data = tmp_path / "data"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text("rules: []\n")
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--workers", "2", "--rules",
                        str(rules), env={"EP_DATA_DIR": str(data)})
    board = board_directory(data, proxy.process.pid)
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}", "connection": "close"}

    def told() -> tuple[dict[str, Any], str]:
        health = proxy.health().json()
        metrics = httpx.get(f"{proxy.url}/__ep/metrics", headers=admin).text
        return health, metrics

    try:
        deadline = time.monotonic() + 10
        while len(proxy.health().json()["workers"]) < 2:
            assert time.monotonic() < deadline, "the workers never published"
            time.sleep(0.2)
        shutil.rmtree(board)
        board.write_text("a file where the board's folder was: nothing can be written")
        time.sleep(2.5)   # each worker publishes every second
        health, metrics = told()
        assert health["status"] == "ready"
        report = health["board"]
        assert isinstance(report, dict) and report["writable"] is False
        assert "FileExistsError" in report["detail"]
        assert len(health["workers"]) == 1   # the one answering, unpublished
        assert "ep_worker_state_unpublished 1.0" in metrics
        reload = httpx.post(f"{proxy.url}/__ep/reload", headers=admin, timeout=15).json()
        assert reload["board"]["writable"] is False and len(reload["workers"]) == 1
        board.unlink()
        time.sleep(2.5)
        health, metrics = told()
        assert "board" not in health and len(health["workers"]) == 2
        assert "ep_worker_state_unpublished 0.0" in metrics   # (its first state after)
    finally:
        proxy.stop()
    assert proxy.log().count("state is published to") == 2   # each worker's, once
