"""/__ep/ endpoints through the real server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..servers import RedisServer, Server, free_port, start_proxy
from . import proxy_on_own_rules


def test_health_reports_ready_with_origin_rules_and_geo(proxy: Server) -> None:
    response = proxy.health()
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ready"
    assert report["origin"]["reachable"] is True
    assert report["rules"]["loaded"] is True
    assert len(report["rules"]["version"]) == 16
    assert report["rules"]["files"] >= 1
    assert report["geo"]["type"] == "GeoLite2-City"
    assert report["store"]["location"].startswith("sqlite://")
    assert report["store"]["reachable"] is True
    assert report["store"]["writes"] == "ok"
    assert report["background"] == {"status": "ok"}   # no background task restarting
    assert response.headers["cache-control"] == "no-store"


def test_anyone_reads_whether_it_is_ready_and_only_the_operator_the_details(
        proxy: Server, tmp_path: Path) -> None:
    # The proxy answers every visitor of the site: the origin's address (in its errors),
    # rule files and the names in their warnings, the store's location and the workers'
    # PIDs were anyone's to read.
    brief = {"status": "ready", "failing": [],
             "details": "sent with the admin token (Authorization: Bearer ...)"}
    for headers in ({}, {"authorization": "Bearer not-the-token"},
                    {"authorization": f"Basic {ADMIN_TOKEN}"}):
        response = httpx.get(proxy.url + "/__ep/health", headers=headers)
        assert (response.status_code, response.json()) == (200, brief)
        assert response.headers["cache-control"] == "no-store"
    assert httpx.get(proxy.url + "/__ep/health/ready").json() == brief
    assert "store" in proxy.health().json()
    # not ready: which check fails, still without the origin's address
    gone = start_proxy(tmp_path, "--origin", f"http://127.0.0.1:{free_port()}", admin=False)
    try:
        response = httpx.get(gone.url + "/__ep/health")
        assert (response.status_code, response.json()) == (503, {
            "status": "not ready", "failing": ["origin"],
            "details": "sent once admin_token (EP_ADMIN_TOKEN) is set, with it"})
    finally:
        gone.stop()


@pytest.mark.parametrize(("goal", "status", "advice"), [
    # a goal on a page the site answered 404 counted nothing for as long as it ran, and
    # nothing said why ("No conversions on signup yet")
    ("{when: {request.path: /status/404}}", 404,
     "check its page (moved, or failing?) and its when:"),
    # a form answered 303 (to its thank-you page) under `status: [200]`: the same
    ("{when: {request.path: /status/303}, status: [200]}", 303,
     "its status: leaves out 303 (add it if that answer reaches the goal: a form that "
     "redirects once done answers 303), or check its when:")])
def test_health_and_the_dashboard_tell_a_goal_whose_requests_are_not_counted(
        origin: Server, tmp_path: Path, goal: str, status: int, advice: str) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(
        f"slots: {{hero: {{}}}}\ngoals:\n  signup: {goal}\n"
        "experiments:\n  - name: e\n    slot: hero\n    goals: [signup]\n"
        "    variants: {control: {}, b: {html: x}}\n")
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY})
    browser = {"accept": "text/html", "user-agent": "Mozilla/5.0 (X11; Linux x86_64; "
               "rv:133.0) Gecko/20100101 Firefox/133.0"}
    try:
        for _ in range(3):
            page = httpx.get(f"{server.url}/status/{status}", headers=browser)
            assert page.status_code == status
        told = server.health().json()["rules"]["goals_not_counted"]
        segments = httpx.get(f"{server.url}/__ep/dashboard/segments",
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    finally:
        server.stop()
    assert told == [f"goal 'signup': 3 requests that meet it were answered {status} (3) and "
                    f"not counted (0 reached it): {advice}"]
    assert "goal &#39;signup&#39;: 3 requests" in segments.split('data-banner="notices"')[1]


def test_a_server_started_from_a_rules_directory_without_rule_files_says_so(
        origin: Server, tmp_path: Path) -> None:
    # An empty volume mounted as the rules directory: the site served no personalization,
    # with health ready and no warning (a reload refuses such a directory, with a reason).
    rules = tmp_path / "rules"
    rules.mkdir()
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules))
    try:
        health = server.health().json()
    finally:
        server.stop()
    told = ("the rules directory holds no rule file (.yaml or .yml, outside hidden folders): "
            "no page is personalized")
    assert health["status"] == "ready" and health["rules"]["warnings"][0].startswith(told)
    assert f"{rules}: {told}" in server.log()


def test_health_answers_in_time_when_the_origin_hangs(tmp_path: Path) -> None:
    # An origin that takes the connection and never answers: the health check waited the
    # origin read timeout (30 s), past any load balancer's probe timeout.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)   # connections complete in the kernel; nobody reads them
    proxy = start_proxy(tmp_path, "--origin", f"http://127.0.0.1:{hanging.getsockname()[1]}",
                        env={"EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        began = time.monotonic()
        response = proxy.health(timeout=10)
        assert time.monotonic() - began < 4
        assert response.status_code == 503
        assert response.json()["origin"] == {"reachable": False, "latency_ms": 2000.0,
                                             "detail": "no answer within 2 s"}
    finally:
        proxy.stop()
        hanging.close()


def test_health_tells_a_store_that_is_down_and_stays_ready(
        origin: Server, redis_server: RedisServer, tmp_path: Path) -> None:
    proxy = start_proxy(tmp_path, "--origin", origin.url,
                        "--rules", str(ROOT / "tests" / "data" / "rules"),
                        env={"EP_STORE_URL": redis_server.url,
                             "EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        store = proxy.health().json()["store"]
        assert store["location"] == redis_server.url
        assert store["reachable"] is True
        assert "consequence" not in store
        redis_server.stop()
        time.sleep(1.1)   # past the probe's one-second memory
        response = proxy.health()
        assert response.status_code == 200   # no page waits for the store
        report = response.json()
        assert report["status"] == "ready"
        assert report["store"]["reachable"] is False
        assert "ConnectionError" in report["store"]["detail"]
        assert "counts wait in memory" in report["store"]["consequence"]
        assert httpx.get(proxy.url + "/page/", headers={"accept": "text/html"}).status_code == 200
        redis_server.start()
        time.sleep(1.1)
        assert proxy.health().json()["store"]["reachable"] is True
        # A store that accepts connections and never answers: the health check still
        # answers at once (within a load balancer's usual one-second probe timeout).
        redis_server.pause()
        try:
            time.sleep(1.1)
            started = time.monotonic()
            response = proxy.health(timeout=5)
            assert time.monotonic() - started < 1.0
            assert response.status_code == 200
            assert response.json()["store"]["reachable"] is False
        finally:
            redis_server.resume()
    finally:
        proxy.stop()


BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36"
TWO_EXPERIMENTS = """
slots: {hero: {}, banner: {}}
experiments:
  - {name: healthy, slot: hero, holdout: 0, goals: [purchase],
     variants: {control: {weight: 50}, bold: {weight: 50, html: "<h1>Bold</h1>"}}}
  - {name: broken, slot: banner, holdout: 0, goals: [purchase],
     variants: {control: {weight: 50}, loud: {weight: 50, html: "<p>Loud</p>"}}}
goals:
  purchase: {when: {request.path: /page/checkout/thanks}}
"""


def _exposed(server: Server) -> dict[str, int]:
    report = httpx.get(f"{server.url}/__ep/results",
                       headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    return {e["name"]: e["exposed"] for e in report["experiments"]}


def test_a_key_in_the_way_is_named_and_the_counts_arrive_once_it_is_removed(
        origin: Server, redis_server: RedisServer, tmp_path: Path) -> None:
    # A string where one experiment's counts belong lost every count written with it, the
    # other experiment's too, while the log and health said the counts waited.
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.set("ep:counts:broken", "garbage")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(TWO_EXPERIMENTS)
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        env={"EP_STORE_URL": redis_server.url, "EP_PROFILE_KEYS": PROFILE_KEY,
                             "EP_STORE_FLUSH_INTERVAL": "0.2"})
    try:
        for _ in range(5):
            with httpx.Client(base_url=proxy.url, headers={"user-agent": BROWSER}) as visitor:
                assert visitor.get("/slotted/a", headers={"accept": "text/html"}).is_success
        time.sleep(1.0)   # several flushes
        store = proxy.health().json()["store"]
        assert store["writes"] == "failing" and store["counts_waiting"] >= 2
        assert "ep:counts:broken holds a string" in store["write_error"]
        assert _exposed(proxy) == {"healthy": 0, "broken": 0}
        client.delete("ep:counts:broken")
        deadline = time.monotonic() + 10
        while _exposed(proxy) != {"healthy": 5, "broken": 5}:
            assert time.monotonic() < deadline, _exposed(proxy)
            time.sleep(0.2)
        time.sleep(0.6)   # flushes after: nothing sent twice
        assert _exposed(proxy) == {"healthy": 5, "broken": 5}
        assert proxy.health().json()["store"]["writes"] == "ok"
        assert proxy.log().count("ep:counts:broken holds a string") == 1
    finally:
        proxy.stop()
        client.close()


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
    for refused in (f"Basic {ADMIN_TOKEN}", f"Bearer{ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x",
                    "Bearer", f"Bearer {ADMIN_TOKEN}, Bearer {ADMIN_TOKEN}"):
        assert httpx.get(proxy.url + "/__ep/metrics",
                         headers={"authorization": refused}).status_code == 401, refused
    # The scheme is case-insensitive (RFC 9110): a client that writes it in lower case
    # (some do) is let in, here and on the dashboard.
    for scheme in ("bearer", "BEARER"):
        for path in ("/__ep/metrics", "/__ep/dashboard"):
            assert httpx.get(proxy.url + path, headers={
                "authorization": f"{scheme} {ADMIN_TOKEN}"}).status_code == 200, (scheme, path)


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


@pytest.fixture(scope="module")
def two_workers(origin: Server, server_logs: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    rules = tmp_path_factory.mktemp("rules")
    shutil.copytree(ROOT / "tests" / "data" / "rules", rules, dirs_exist_ok=True)
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--rules", str(rules),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_RULES_WATCH_INTERVAL": "0"}, timeout=40)
    yield server, rules
    server.stop()


def _scrape(server: Server) -> float:
    text = httpx.get(server.url + "/__ep/metrics",
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "ep_requests" for sample in family.samples
               if sample.name == "ep_requests_total" and sample.labels["status"] == "204")


def test_metrics_of_several_workers_are_one_view(two_workers: tuple[Server, Path]) -> None:
    server, _ = two_workers
    for _ in range(30):   # new connections: the kernel spreads them over both workers
        httpx.get(server.url + "/status/204")
    time.sleep(1.5)       # every worker has published since
    scrapes = [_scrape(server) for _ in range(6)]
    assert scrapes == [30.0] * 6
    health = server.health().json()
    assert len(health["workers"]) == 2


def _workers(server: Server) -> list[int]:
    return [w["pid"] for w in server.health().json()["workers"]]


def _replaced(server: Server, gone: int) -> bool:
    """Whether worker `gone` has left health and another serves in its place. (A request
    sent the moment a worker is killed may reach it as it dies: reset, not yet.)"""
    try:
        pids = _workers(server)
    except httpx.TransportError:
        return False
    return not pids or (gone not in pids and len(pids) >= 2)


def test_the_server_s_counters_keep_what_a_worker_counted_once_it_is_gone(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    started = time.time()
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_RULES_WATCH_INTERVAL": "0",
                              "EP_DATA_DIR": str(tmp_path / "data")}, timeout=40)
    try:
        counted = 0
        deadline = time.monotonic() + 20
        while len(workers := _workers(server)) < 2:   # both have published their state
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        first, second = workers
        # one killed outright (its state stays behind), then the other stopped (it hands
        # its counts on): not a worker replaced just now, which the server takes for a
        # crash loop
        for gone, stop in ((None, None), (first, signal.SIGKILL), (second, signal.SIGTERM)):
            if gone is not None and stop is not None:
                os.kill(gone, stop)
                deadline = time.monotonic() + 20
                while not _replaced(server, gone):
                    assert time.monotonic() < deadline, server.log()
                    time.sleep(0.2)
            for _ in range(20):   # new connections: spread over both workers
                assert httpx.get(server.url + "/status/204").status_code == 204
            counted += 20
            time.sleep(1.5)       # every worker has published since
            assert [_scrape(server) for _ in range(6)] == [counted] * 6
        text = httpx.get(server.url + "/__ep/metrics",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    finally:
        server.stop()
    created = [sample.value for family in text_string_to_metric_families(text)
               if family.name.endswith("_created") for sample in family.samples]
    assert created and all(started - 5 < value <= time.time() for value in created)


def test_a_reload_reaches_every_worker(two_workers: tuple[Server, Path]) -> None:
    server, rules = two_workers
    (rules / "extra.yaml").write_text(
        "rules:\n  - name: added-now\n    when: {request.query.added: '1'}\n"
        "    then: {headers: {X-Added: 'yes'}}\n")
    answer = httpx.post(server.url + "/__ep/reload", timeout=15,
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert answer["reloaded"] is True
    assert {w["rules_version"] for w in answer["workers"]} == {answer["version"]}
    assert len(answer["workers"]) == 2
    time.sleep(1.5)   # every worker has published since: one series while they agree
    serving = [line for line in _metrics(server).splitlines()
               if line.startswith("ep_rules_serving{")]
    assert serving == [f'ep_rules_serving{{version="{answer["version"]}"}} 2.0']
    for _ in range(10):   # whichever worker answers, it has the new rules
        page = httpx.get(server.url + "/page/x?added=1", headers={"accept": "text/html"})
        assert page.headers.get("x-added") == "yes"
    # A refused reload changes no version: the answer waits for every worker to have
    # tried, so each names the refusal (not the state it had before the request).
    (rules / "broken.yaml").write_text("rules:\n  - name: [not, a, name]\n")
    refused = httpx.post(server.url + "/__ep/reload", timeout=15,
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert refused.status_code == 422
    workers = refused.json()["workers"]
    assert len(workers) == 2 and all("broken.yaml" in (w["last_error"] or "") for w in workers)
    assert {w["rules_version"] for w in workers} == {answer["version"]}
    # An alert on the refusal lasts while the broken edit is on disk (both workers), and
    # ends with the edit mended.
    time.sleep(1.5)   # every worker has published since
    assert "ep_rules_reload_failing 2.0" in _metrics(server)
    (rules / "broken.yaml").unlink()
    assert httpx.post(server.url + "/__ep/reload", timeout=15,
                      headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    time.sleep(1.5)
    assert "ep_rules_reload_failing 0.0" in _metrics(server)


def _metrics(server: Server) -> str:
    return httpx.get(server.url + "/__ep/metrics",
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text


def test_a_refused_reload_names_the_file_line_and_why_of_a_number_too_large(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    # An int of 400 digits in a weight answered 422 "<dir>: the loader failed:
    # OverflowError(...)", naming no file, line or what to write instead.
    server, rules = proxy_on_own_rules(origin, server_logs, tmp_path)
    try:
        serving = server.health().json()["rules"]["version"]
        (rules / "huge.yaml").write_text(
            "experiments:\n  - name: huge\n    slot: hero\n"
            "    variants: {control: {weight: 1" + "0" * 400 + "}, b: {html: x}}\n")
        refused = httpx.post(server.url + "/__ep/reload", timeout=15,
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert f"{rules / 'huge.yaml'}:4:34: experiment 'huge': weight is a positive" in error
        assert "OverflowError" not in error and "loader failed" not in error
        assert server.health().json()["rules"]["version"] == serving   # the last good rules
    finally:
        server.stop()
