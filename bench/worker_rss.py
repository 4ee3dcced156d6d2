"""Peak resident memory of each worker of the real server, with the demo rules and a store.

The server is started as an operator would start it (`edge-personalizer serve`, 2 workers,
the demo rules in rules/, the test geo database, SQLite in a fresh data dir, access log on)
in front of the peer kit's origin. wrk sends page views (bench/page_views.lua: the kit's four
request shapes with Accept: text/html and no cookie, so every request is counted as a new
visitor's exposure) to the 100 KB and then the 5 KB page; each worker's VmHWM (peak RSS)
and VmRSS are read from /proc at start and after the load. The model of "visitors like you"
is built and loaded by the workers at startup (from the store's counts), as in production.

With --agents N, the page views come from N distinct User-Agents instead (uap-core's test
cases), as a site's real mix of browsers would: the parser's automata and the caches grow
with them.

Each run starts a fresh server; the figure is the highest worker peak over the runs. The
server runs from this interpreter's import path, so PYTHONPATH=<a tree> measures that tree's
code (with the rules and geo database of this checkout).

    .venv/bin/python bench/worker_rss.py [--runs 3] [--duration 5] [--label current]
                                         [--agents N] [--env NAME=VALUE]
                                         # writes bench/results/worker_rss.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from instructions import free_port, kit_origin  # noqa: E402

ORIGIN = "http://127.0.0.1:18080"
SCRIPT = ROOT / "bench" / "page_views.lua"
UAP_CORE = ROOT.parent / "shared" / "corpora" / "uap-core"
PAGES = ("big", "small")
GEO_DB = ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon and RssFile of a process, in KiB."""
    wanted = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in wanted:
            found[name] = int(value.split()[0])
    return found


def workers_of(pid: int, count: int) -> list[int]:
    """The worker processes of the server `pid` (its children that are not granian's
    helper processes: the workers are forks running the same command line)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        workers = [int(child) for child in children
                   if Path(f"/proc/{child}/cmdline").read_bytes() == cmdline]
        if len(workers) == count:
            return workers
        time.sleep(0.2)
    raise SystemExit(f"expected {count} workers under {pid}")


def varied_agents_script(count: int, path: Path) -> Path:
    """A wrk script sending page views from `count` distinct User-Agents (uap-core's test
    cases, in their order), one after the other: what a site's mix of browsers makes the
    User-Agent parser and the caches hold."""
    import yaml

    agents: list[str] = []
    for name in ("tests/test_ua.yaml", "tests/test_device.yaml", "tests/test_os.yaml"):
        cases = yaml.load((UAP_CORE / name).read_text(), Loader=yaml.CSafeLoader)
        agents += [case["user_agent_string"] for case in cases["test_cases"]]
    agents = list(dict.fromkeys(agents))[:count]
    if len(agents) < count:
        raise SystemExit(f"only {len(agents)} distinct User-Agents in {UAP_CORE}")
    quoted = ",\n".join(json.dumps(agent) for agent in agents)   # JSON strings are Lua's
    path.write_text(f"""local agents = {{
{quoted}
}}
local n = 0
request = function()
  n = n + 1
  local headers = {{ ["Accept"] = "text/html", ["User-Agent"] = agents[(n % #agents) + 1] }}
  return wrk.format("GET", wrk.path, headers)
end
""")
    return path


def one_run(workers: int, duration: int, extra_env: dict[str, str],
            script: Path) -> dict[str, object]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EP_", "MALLOC_"))}
    clean |= extra_env
    with tempfile.TemporaryDirectory() as data_dir, \
            open(Path(data_dir) / "server.log", "w+b") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_personalizer", "serve", "--origin", ORIGIN,
             "--rules", str(ROOT / "rules"), "--geo-db", str(GEO_DB),
             "--workers", str(workers), "--port", str(port), "--data-dir", data_dir],
            cwd=data_dir, env=clean | {"EP_PROFILE_KEYS": "worker-rss-benchmark-key"},
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/__ep/health/ready", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"the server did not start:\n{log.read().decode()}") \
                            from None
                    time.sleep(0.2)
            pids = workers_of(process.pid, workers)
            time.sleep(1)   # both workers through their startup
            at_start = [memory_kib(pid) for pid in pids]
            for page in PAGES:
                out = subprocess.run(
                    ["wrk", "-t", "2", "-c", "32", "-d", f"{duration}s", "-s", str(script),
                     f"http://127.0.0.1:{port}/{page}.html"],
                    capture_output=True, text=True, check=True).stdout
                if "Non-2xx" in out:
                    raise SystemExit(f"failed responses:\n{out}")
            after = [memory_kib(pid) for pid in pids]
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    return {"at_start": at_start, "after_load": after,
            "peak_mib": round(max(m["VmHWM"] for m in after) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="wrk seconds a page")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--label", default="current")
    parser.add_argument("--agents", type=int, default=0, metavar="N",
                        help="send N distinct User-Agents from uap-core's cases instead of "
                             "the kit's four request shapes")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in the server's environment (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/worker_rss.json")
    args = parser.parse_args()
    origin = kit_origin()
    scripts = tempfile.TemporaryDirectory()
    script = (varied_agents_script(args.agents, Path(scripts.name) / "agents.lua")
              if args.agents else SCRIPT)
    try:
        runs = []
        for number in range(args.runs):
            runs.append(one_run(args.workers, args.duration,
                                dict(item.split("=", 1) for item in args.env), script))
            start = max(m["VmRSS"] for m in runs[-1]["at_start"]) / 1024  # type: ignore[attr-defined]
            print(f"run {number + 1}: workers at start {start:.1f} MiB, "
                  f"peak {runs[-1]['peak_mib']} MiB", flush=True)
    finally:
        scripts.cleanup()
        if origin is not None:
            os.killpg(origin.pid, signal.SIGINT)
            origin.wait(timeout=30)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "workers": args.workers,
        "wrk_seconds_a_page": args.duration, "pages": list(PAGES), "env": args.env,
        "user_agents": args.agents or "the kit's four request shapes",
        "load_at_end": os.getloadavg()[0],
        "peak_mib": max(run["peak_mib"] for run in runs),  # type: ignore[type-var]
        "runs": runs}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"peak worker RSS over {args.runs} runs: {results[args.label]['peak_mib']} MiB "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
