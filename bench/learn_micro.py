"""Micro benchmark of counting on the request path (edge_personalizer/learn/counters.py),
and what counting costs a whole request, in-process.

    .venv/bin/python bench/learn_micro.py      # writes bench/results/learn_micro.json
    .venv/bin/python bench/learn_micro.py --in-process [--page big] [--rounds 10]
                                               # writes bench/results/learn_in_process.json

Each micro figure is nanoseconds a call: the best of 7 runs of a tight loop of many calls
(the loop's own cost included, as a page pays it), beside a plain dict increment measured
the same way in the same run. The flusher's side (collect, off the request path) is timed
too.

`--in-process` drives the whole app through ASGI (no server, no load generator) against an
origin serving the peer kit's pages (`../shared/bench/pages.py`, served by a Python HTTP
server in another process) for three configurations built in one process and run in turns:
bench/learning-rules without its goals and with its experiment on the written weights
(`copy_rules(goals=False)` of bench/instructions.py: the learning loop off), the same
rules as written (a goal, the experiment shared out by a bandit) counting into SQLite, and
into Redis (a redis-server started on a free port). Each turn is timed in CPU seconds of
this process (every thread: the flusher's SQLite writes included), so other work on the
machine changes the figures less than wall time would. Two request mixes: the kit's own
(its requests send no Accept header, so they are no page views: nothing is counted, the
goal is only looked for), and the same with `Accept: text/html`, where every request is a
new visitor's page view: a first exposure counted, and a profile cookie that carries it
(the worst case for counting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from instructions import copy_rules  # noqa: E402

from edge_personalizer.learn.counters import Accumulator  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CALLS = 200_000


def best_ns(stmt: str, namespace: dict[str, Any], *, number: int = CALLS) -> float:
    runs = timeit.Timer(stmt, globals=namespace).repeat(repeat=7, number=number)
    return min(runs) / number * 1e9


def request_path() -> dict[str, float]:
    counters = Accumulator()
    counters.expose("hero-headline", "bold", "mobile|search")
    counters.convert("hero-headline", "bold", "purchase", "mobile|search", value=49.9)
    plain: dict[tuple[str, ...], int] = {}
    namespace: dict[str, Any] = {"counters": counters, "plain": plain}
    figures = {
        "expose_held_key_ns": best_ns(
            'counters.expose("hero-headline", "bold", "mobile|search")', namespace),
        "expose_held_key_given_day_ns": best_ns(
            'counters.expose("hero-headline", "bold", "mobile|search", day="2026-12-02")',
            namespace),
        "convert_with_value_ns": best_ns(
            'counters.convert("hero-headline", "bold", "purchase", "mobile|search", value=49.9)',
            namespace),
        "baseline_plain_dict_increment_ns": best_ns(
            'k = ("hero-headline", "bold", "", "mobile|search", "2026-12-02"); '
            "plain[k] = plain.get(k, 0) + 1", namespace),
        "expose_new_key_ns": new_keys(),
        "dropped_past_the_bound_ns": past_the_bound(),
    }
    figures["expose_vs_plain_dict_ratio"] = (
        figures["expose_held_key_ns"] / figures["baseline_plain_dict_increment_ns"])
    return {name: round(value, 1) for name, value in figures.items()}


def new_keys(count: int = 100_000) -> float:
    cells = [f"cell-{n}" for n in range(count)]
    best = float("inf")
    for _ in range(5):
        counters = Accumulator(max_keys=count + 1)
        started = time.perf_counter_ns()
        for cell in cells:
            counters.expose("hero-headline", "bold", cell)
        best = min(best, (time.perf_counter_ns() - started) / count)
    return best


def past_the_bound() -> float:
    counters = Accumulator(max_keys=1)
    counters.expose("hero-headline", "bold", "held")
    return best_ns('counters.expose("hero-headline", "bold", "new")', {"counters": counters})


def flusher_side(keys: int = 10_000) -> dict[str, float]:
    counters = Accumulator(max_keys=keys + 1)
    best = float("inf")
    for _ in range(5):
        for n in range(keys):
            counters.expose("hero-headline", "bold", f"cell-{n}")
        started = time.perf_counter_ns()
        counters.collect()
        best = min(best, (time.perf_counter_ns() - started) / keys)
        counters.acknowledge(counters.pending_batch(keys))
    return {"collect_per_key_ns": round(best, 1), "collect_keys": keys}


# --- in-process: the whole app through ASGI ---------------------------------------------

DESKTOP = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
# The kit's request mix (its wrk_report.lua): facebook Referer, utm_source, iPhone, desktop.
KIT_MIX = (
    (b"", ((b"referer", b"https://www.facebook.com/acme/posts/123"),
           (b"user-agent", DESKTOP.encode()))),
    (b"utm_source=facebook&utm_medium=social", ((b"user-agent", DESKTOP.encode()),)),
    (b"", ((b"user-agent", IPHONE.encode()),)),
    (b"", ((b"user-agent", DESKTOP.encode()), (b"referer", b"https://www.google.com/"))),
)
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


class Page:
    """One request of a mix to one app; the response's body is read and dropped."""

    def __init__(self, app: ASGIApp, path: str, query: bytes,
                 headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.app = app
        self.scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                      "method": "GET", "scheme": "http", "path": path,
                      "raw_path": path.encode(), "query_string": query, "root_path": "",
                      "headers": [(b"host", b"127.0.0.1:8080"), *headers],
                      "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}

    async def get(self) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:   # the request has no more body: wait as a client that stays would
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        await self.app(dict(self.scope), receive, send)


async def _lifespan(app: ASGIApp, started: asyncio.Event, stop: asyncio.Event) -> None:
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                     messages.get, send))
    await stop.wait()
    await messages.put({"type": "lifespan.shutdown"})
    await task


async def _in_process(origin: str, redis_url: str, page: str, rounds: int,
                      per_round: int) -> dict[str, Any]:
    from edge_personalizer.app import create_app
    from edge_personalizer.config.settings import build_settings

    data = Path(tempfile.mkdtemp(prefix="ep-learn-bench-"))
    key = "bench-profile-key-0123456789abcdef"

    def app(rules: str, store_url: str | None, name: str) -> Any:
        raw = {"origin_url": origin, "rules_dir": rules,
               "access_log": "false", "profile_keys": key, "rules_watch_interval": "0",
               "data_dir": str(data / name)}
        if store_url:
            raw["store_url"] = store_url
        return create_app(build_settings(raw, source="bench"))

    rules = "bench/learning-rules"
    without_goals = copy_rules(rules, data / "no-goal-rules", goals=False)
    apps = {"no goal": app(without_goals, None, "a"),
            "goal, SQLite": app(str(ROOT / rules), None, "b"),
            "goal, Redis": app(str(ROOT / rules), redis_url, "c")}
    stop = asyncio.Event()
    lifespans = []
    for each in apps.values():
        started = asyncio.Event()
        lifespans.append(asyncio.ensure_future(_lifespan(each, started, stop)))
        await started.wait()
    figures: dict[str, Any] = {}
    try:
        for mix, accept in (("kit mix (no page views)", ()),
                            ("page views (a new visitor each)",
                             ((b"accept", b"text/html"),))):
            pages = {name: [Page(each, f"/{page}.html", query, (*headers, *accept))
                            for query, headers in KIT_MIX] for name, each in apps.items()}
            for requests in pages.values():   # warm: parsers, caches, connections
                for n in range(200):
                    await requests[n % 4].get()
            cpu: dict[str, list[float]] = {name: [] for name in apps}
            for _ in range(rounds):
                for name, requests in pages.items():
                    started_cpu = time.process_time()
                    for n in range(per_round):
                        await requests[n % 4].get()
                    cpu[name].append((time.process_time() - started_cpu) / per_round * 1e6)
            base = statistics.median(cpu["no goal"])
            figures[mix] = {name: {"cpu_us_median": round(statistics.median(times), 1),
                                   "cpu_us_best": round(min(times), 1),
                                   "ratio_to_no_goal": round(statistics.median(times) / base, 3)}
                            for name, times in cpu.items()}
    finally:
        stop.set()
        await asyncio.gather(*lifespans)
        shutil.rmtree(data, ignore_errors=True)
    return figures


def _origin_command(pages: Path, port: int) -> list[str]:
    """nginx serving `pages` (as the kit's origin does), else Python's HTTP server (whose
    slower answers cost the proxy more reads: compare runs of the same origin only)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                "--directory", str(pages), "--protocol", "HTTP/1.1"]
    temp = pages / "nginx"
    temp.mkdir()
    (temp / "nginx.conf").write_text(
        f"worker_processes 1; daemon off; pid {temp}/nginx.pid; error_log {temp}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; client_body_temp_path {temp}; proxy_temp_path {temp};\n"
        f"  fastcgi_temp_path {temp}; uwsgi_temp_path {temp}; scgi_temp_path {temp};\n"
        f"  keepalive_requests 1000000; default_type text/html;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {pages}; }} }}\n")
    return [nginx, "-c", str(temp / "nginx.conf"), "-p", str(temp)]


def in_process(page: str, rounds: int, per_round: int) -> dict[str, Any]:
    kit = Path(os.environ.get("PEER_KIT", ROOT.parent / "shared" / "bench"))
    redis_server = shutil.which("redis-server")
    if not (kit / "pages.py").exists() or redis_server is None:
        raise SystemExit("--in-process needs the peer kit's pages.py (set PEER_KIT) and "
                         "redis-server")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(kit / "pages.py"), tmp], check=True,
                       stdout=subprocess.DEVNULL)
        web_port, redis_port = _free_port(), _free_port()
        origin = subprocess.Popen(_origin_command(Path(tmp), web_port),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(web_port, origin)
            _wait_for(redis_port, redis)
            try:
                import uvloop  # the loop the server runs on
                uvloop.install()
            except ImportError:
                pass
            return asyncio.run(_in_process(f"http://127.0.0.1:{web_port}",
                                           f"redis://127.0.0.1:{redis_port}/0", page,
                                           rounds, per_round))
        finally:
            for process in (origin, redis):
                process.terminate()
                process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-process", action="store_true",
                        help="the whole app through ASGI: counting's cost a request")
    parser.add_argument("--page", choices=["big", "small"], default="big",
                        help="the kit's 100 KB page (big) or 5 KB page (small)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args()
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "platform": platform.platform(), "load_average": os.getloadavg()}
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.in_process:
        results = {"machine": machine, "when": when, "page": args.page,
                   "cpu_us_a_request": in_process(args.page, args.rounds, args.per_round)}
        out = RESULTS / "learn_in_process.json"
    else:
        results = {"machine": machine, "when": when, "request_path": request_path(),
                   "flusher": flusher_side()}
        out = RESULTS / "learn_micro.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
