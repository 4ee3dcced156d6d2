"""Instructions a request, counted by valgrind's callgrind: a measure the machine's speed
does not change (the same binary, inputs and environment give the same count).

The server (`edge-personalizer serve`, one worker) runs under callgrind twice, once for
FEW and once for MANY requests of the kit's mix (facebook Referer, utm_source=facebook,
iPhone, desktop) over kept-alive connections; the difference divided by MANY - FEW is what
one request costs, startup and shutdown cancelling out. Each target is counted with the
kit's rules and, as the baseline of the same run, without rules (the proxy alone).

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
from pathlib import Path

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


def load(port: int, page: str, requests: int) -> None:
    """`requests` requests of the mix over CONNECTIONS kept-alive connections."""
    errors: list[str] = []

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for n in range(index, requests, CONNECTIONS):
            query, headers = MIX[n % len(MIX)]
            connection.request("GET", f"/{page}.html{query}", headers=headers)
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


RULES = {"kit": "bench/peer-rules", "bare": None, "demo": "rules"}   # --targets


def count(origin: str, page: str, requests: int, rules: str | None) -> int:
    """Instructions callgrind counted for a whole server run answering `requests`."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        # One file a process: the server may fork its worker, which callgrind follows.
        args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.%p",
                sys.executable, "-m", "edge_personalizer", "serve", "--origin", origin,
                "--workers", "1", "--port", str(port), "--no-access-log", "--log-level",
                "warning"]
        if rules:
            args += ["--rules", rules]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EP_")}
        env |= {"PYTHONHASHSEED": "0", "EP_RULES_WATCH_INTERVAL": "0",
                "EP_PROFILE_KEYS": "instructions-benchmark-key", "EP_DATA_DIR": tmp}
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
            load(port, page, requests)
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


def per_request(origin: str, page: str, few: int, many: int, rules: str | None) -> float:
    return (count(origin, page, many, rules) - count(origin, page, few, rules)) / (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--origin", help="the origin to serve (default: the kit's)")
    parser.add_argument("--pages", default="small,big")
    parser.add_argument("--few", type=int, default=200)
    parser.add_argument("--many", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/instructions.json")
    parser.add_argument("--targets", default="kit,bare",
                        help="kit (the kit's rules), bare (no rules), demo (rules/: their "
                             "slots absent from the kit's pages)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is missing (apt-get install valgrind)")
    origin = args.origin or "http://127.0.0.1:18080"
    started = None if args.origin else kit_origin()
    try:
        results = measure(origin, args.pages.split(","), args.few, args.many,
                          args.targets.split(","))
    finally:
        if started is not None:
            os.killpg(started.pid, signal.SIGINT)
            started.wait(timeout=30)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


def measure(origin: str, pages: list[str], few: int, many: int,
            targets: list[str]) -> dict[str, object]:
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"), "few": few,
                                  "many": many, "connections": CONNECTIONS, "pages": {}}
    for page in pages:
        counted = {target: per_request(origin, page, few, many, RULES[target])
                   for target in targets}
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
        results["pages"][page] = figures   # type: ignore[index]
    return results


if __name__ == "__main__":
    main()
