"""Instructions a request, counted by valgrind's callgrind: a measure the machine's speed
does not change (the same binary, inputs and environment give the same count).

The server (`edge-personalizer serve`, one worker) runs under callgrind twice, once for
FEW and once for MANY requests of the kit's mix (facebook Referer, utm_source=facebook,
iPhone, desktop) over kept-alive connections; the difference divided by MANY - FEW is what
one request costs, startup and shutdown cancelling out. Each target is counted with the
kit's rules and, as the baseline of the same run, without rules (the proxy alone).

The learning loop's cost: `--targets learn-none,learn,learn-redis --page-views` counts the
same mix sent as page views (Accept: text/html, no cookie: every request is a new visitor's
first view, which is counted) with bench/learning-rules (a goal, and a bandit experiment
per device type for the visitors no rule claims), counting into SQLite (`learn`) and into
a redis-server started here (`learn-redis`; the work of redis-server itself is not
counted), against the same rules without their goal, whose experiment then keeps the
weights written (`learn-none`: only the experiment's exposures are counted, as without
goals they are; no goal is looked for). This is the request path's share:
the work that runs by the clock (the store's flush every second, each worker's reads of
the published bandit weights and model every second, the bandit's update every 10 s) is
moved out of the run (all of it every hour; the counts are flushed once, at shutdown, in
both runs), because under callgrind a request takes ~50 times
longer than natively and clock-driven work would be charged to each request ~50 times
over. What the whole loop
costs in req/s, background included, is bench/learning_cost.py's measure.

    make bench-instructions     # = .venv/bin/python bench/instructions.py (~6 minutes)

It serves the kit's pages with the kit's origin (`../shared/bench/peers.sh --origin-only`,
or $PEER_KIT; started and stopped here unless something already listens on
127.0.0.1:18080) or with `--origin URL`, and writes bench/results/instructions.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
MIX = [
    ("", {"Referer": "https://www.facebook.com/acme/posts/123", "User-Agent": DESKTOP}),
    ("?utm_source=facebook&utm_medium=social", {"User-Agent": DESKTOP}),
    ("", {"User-Agent": IPHONE}),
    ("", {"User-Agent": DESKTOP, "Referer": "https://www.google.com/"}),
]
CONNECTIONS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load(port: int, page: str, requests: int, page_views: bool = False) -> None:
    """`requests` requests of the mix over CONNECTIONS kept-alive connections; as page views
    of new visitors if `page_views`."""
    accept = {"Accept": "text/html"} if page_views else {}
    errors: list[str] = []

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for n in range(index, requests, CONNECTIONS):
            query, headers = MIX[n % len(MIX)]
            connection.request("GET", f"/{page}.html{query}", headers=headers | accept)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"{response.status} for /{page}.html{query}")
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")


RULES = {"kit": "bench/peer-rules", "bare": None, "demo": "rules",   # --targets
         "learn": "bench/learning-rules", "learn-redis": "bench/learning-rules",
         "learn-none": "bench/learning-rules"}


@dataclass(frozen=True)
class Target:
    rules: str | None
    store_url: str | None = None   # None: SQLite in the run's data directory
    page_views: bool = False
    goals: bool = True   # False: the rules without their goals (and so without bandits)


def count(origin: str, page: str, requests: int, target: Target) -> int:
    """Instructions callgrind counted for a whole server run answering `requests`."""
    port = free_port()
    rules = target.rules
    with tempfile.TemporaryDirectory() as tmp:
        # One file a process: the server may fork its worker, which callgrind follows.
        args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.%p",
                sys.executable, "-m", "edge_personalizer", "serve", "--origin", origin,
                "--workers", "1", "--port", str(port), "--no-access-log", "--log-level",
                "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EP_")}
        env |= {"PYTHONHASHSEED": "0", "EP_RULES_WATCH_INTERVAL": "0",
                "EP_PROFILE_KEYS": "instructions-benchmark-key", "EP_DATA_DIR": tmp}
        if target.store_url:
            env["EP_STORE_URL"] = target.store_url
        if rules:   # clock-driven work out of the run (see above)
            env |= {"EP_STORE_FLUSH_INTERVAL": "3600", "EP_LEARN_INTERVAL": "3600",
                    "EP_STORE_POLL_INTERVAL": "3600"}
            args += ["--rules", copy_rules(rules, Path(tmp) / "rules", goals=target.goals)]
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 900   # (valgrind on a busy machine)
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the server under valgrind did not start") from None
                    time.sleep(0.5)
            load(port, page, requests, target.page_views)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=300)
        total = 0
        for out in Path(tmp).glob("callgrind.*"):
            match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
            if match is None:
                raise RuntimeError(f"callgrind wrote no totals in {out.name}")
            total += int(match.group(1))
        if not total:
            raise RuntimeError("callgrind wrote nothing")
        return total


def kit_origin() -> subprocess.Popen[bytes] | None:
    """Start the kit's origin unless one listens already; None if it does."""
    try:
        socket.create_connection(("127.0.0.1", 18080), timeout=1).close()
        return None
    except OSError:
        pass
    kit = Path(os.environ.get("PEER_KIT", ROOT.parent / "shared" / "bench"))
    if not (kit / "peers.sh").exists():
        raise SystemExit(f"the peer kit is not at {kit} (set PEER_KIT, or pass --origin)")
    process = subprocess.Popen([str(kit / "peers.sh"), "--origin-only"], cwd=kit,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", 18080), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit("the kit's origin did not start")


def copy_rules(rules: str, into: Path, *, goals: bool = True) -> str:
    """A copy of the rules directory for a run: its bandits update every hour (the clock's
    work stays out of the run); without `goals`, the learning loop is off: no goals, and
    every experiment on the weights written."""
    shutil.copytree(ROOT / rules, into)
    for path in into.rglob("*.yaml"):
        text = re.sub(r"update_every: *\w+", "update_every: 1h", path.read_text())
        if not goals:
            document = yaml.safe_load(text)
            document.pop("goals", None)
            for experiment in document.get("experiments", []):
                for key in ("goals", "allocation", "bandit"):
                    experiment.pop(key, None)
            text = yaml.safe_dump(document, sort_keys=False)
        path.write_text(text)
    return str(into)


def redis_server() -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a free port, nothing saved; and its URL."""
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.1)


def per_request(origin: str, page: str, few: int, many: int, target: Target) -> float:
    return (count(origin, page, many, target) - count(origin, page, few, target)) / (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--origin", help="the origin to serve (default: the kit's)")
    parser.add_argument("--pages", default="small,big")
    parser.add_argument("--few", type=int, default=200)
    parser.add_argument("--many", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/instructions.json")
    parser.add_argument("--targets", default="kit,bare",
                        help="kit (the kit's rules), bare (no rules), demo (rules/: their "
                             "slots absent from the kit's pages), learn and learn-redis (the "
                             "learning loop into SQLite and Redis)")
    parser.add_argument("--page-views", action="store_true",
                        help="send the mix as page views of new visitors (Accept: text/html)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is missing (apt-get install valgrind)")
    origin = args.origin or "http://127.0.0.1:18080"
    started = None if args.origin else kit_origin()
    targets = args.targets.split(",")
    redis = None
    try:
        store_url = None
        if "learn-redis" in targets:
            redis, store_url = redis_server()
        chosen = {name: Target(RULES[name], store_url if name == "learn-redis" else None,
                               args.page_views, goals=name != "learn-none")
                  for name in targets}
        results = measure(origin, args.pages.split(","), args.few, args.many, chosen)
        results["page_views"] = args.page_views
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        if started is not None:
            os.killpg(started.pid, signal.SIGINT)
            started.wait(timeout=30)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


def measure(origin: str, pages: list[str], few: int, many: int,
            targets: dict[str, Target]) -> dict[str, object]:
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"), "few": few,
                                  "many": many, "connections": CONNECTIONS, "pages": {}}
    for page in pages:
        counted = {name: per_request(origin, page, few, many, target)
                   for name, target in targets.items()}
        figures: dict[str, float] = {}
        rules, bare, demo = counted.get("kit"), counted.get("bare"), counted.get("demo")
        if rules is not None:
            figures["with_rules"] = round(rules)
        if bare is not None:
            figures["without_rules"] = round(bare)
        if rules is not None and bare is not None:
            figures["personalization"] = round(rules - bare)
            figures["ratio_to_bare_proxy"] = round(rules / bare, 3)
            print(f"{page}: {rules:,.0f} instructions a request with the kit's rules, "
                  f"{bare:,.0f} without rules ({rules / bare:.2f}x)", flush=True)
        if demo is not None:
            figures["demo_rules_slots_absent"] = round(demo)
            if rules is not None:   # speed of the absent-slot page to the slot-at-top one
                figures["absent_speed_vs_slot_at_top"] = round(rules / demo, 3)
            print(f"{page}: {demo:,.0f} instructions a request with the demo rules",
                  flush=True)
        none = counted.get("learn-none")
        if none is not None:
            figures["learn_none"] = round(none)
        for name in ("learn", "learn-redis"):
            learned = counted.get(name)
            if learned is not None:
                figures[name] = round(learned)
                if none is not None:   # what the learning loop adds to the same rules
                    figures[f"{name}_cost"] = round(learned / none - 1, 4)
                    print(f"{page}: {learned:,.0f} instructions a request with the learning "
                          f"loop ({name}), {learned / none - 1:+.1%} on the same rules "
                          f"without goals ({none:,.0f})", flush=True)
        results["pages"][page] = figures   # type: ignore[index]
    return results


if __name__ == "__main__":
    main()
