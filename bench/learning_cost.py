"""What counting costs page views through the real server, in req/s (wrk).

The peer kit cannot show it: its requests send no Accept header, so they are no page views
and nothing is counted. Here wrk sends the kit's four request shapes as page views
(bench/page_views.lua: Accept: text/html, no cookie, so every request is a new visitor's
first exposure and gets a profile cookie that carries it) to three servers of 2 workers
each, started side by side in front of the kit's origin:

- `no-goal`: bench/learning-rules without its goals, the experiment for the visitors no
  rule claims on its written weights instead of a bandit (`copy_rules(goals=False)`,
  as bench/instructions.py makes it): the same rules with the learning loop off. The
  experiment's exposures are still counted (as they are without goals), the rules' are
  not (nothing judges them), and no goal is looked for;
- `sqlite`: bench/learning-rules as written (a goal, and that experiment shared out by a
  bandit), counting every exposure into the embedded SQLite store;
- `redis`: the same, counting into a redis-server started here.

Each round runs every target once per page, in a rotating order; the figure is the median
of the rounds, and each counting target is given as a ratio to `no-goal` of the same run:
the ratio of the medians, and the median of each round's own ratio (`paired_*`).
Beside req/s, the CPU seconds each target's processes used in a run (its supervisor and
workers, and redis-server's for the Redis target), a request: on this shared machine
req/s moves by ±10% between runs of the same server, CPU a request less.

    .venv/bin/python bench/learning_cost.py [--rounds 3] [--duration 8]
                                            # writes bench/results/learning_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from instructions import copy_rules, free_port, kit_origin  # noqa: E402

ORIGIN = "http://127.0.0.1:18080"
SCRIPT = ROOT / "bench" / "page_views.lua"
RULES = "bench/learning-rules"
TARGETS = ("no-goal", "sqlite", "redis")


def start_server(rules: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EP_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", ORIGIN, "--workers",
         "2", "--port", str(port), "--no-access-log", "--log-level", "warning",
         "--rules", rules],
        cwd=ROOT, env=clean | {"EP_PROFILE_KEYS": "learning-cost-benchmark-key"} | env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/__ep/health/live", timeout=1)
            return process, port
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server with {rules} did not start")


def wrk(url: str, seconds: int) -> tuple[float, int]:
    """Requests a second, and how many requests were answered."""
    out = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", f"{seconds}s", "-s", str(SCRIPT),
                          url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{errors.group(1)} failed responses from {url}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    answered = re.search(r"(\d+) requests in", out)
    if match is None or answered is None:
        raise SystemExit(f"wrk printed no rate:\n{out}")
    return float(match.group(1)), int(answered.group(1))


def paired(values: list[float], baseline: list[float]) -> float:
    """The median of each round's ratio of `values` to `baseline`."""
    return round(statistics.median(v / b for v, b in zip(values, baseline, strict=True)), 3)


def cpu_seconds(*pids: int) -> float:
    """CPU seconds (user and system) used so far by these processes and their children
    (a server's supervisor and workers)."""
    found = [str(each) for each in pids]
    for parent in pids:
        found += subprocess.run(["pgrep", "-P", str(parent)], capture_output=True,
                                text=True).stdout.split()
    ticks = 0
    for process in found:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def counted_exposures(port: int) -> bool:
    """Whether the server counted exposures: a sanity check that page views were sent
    (the experiment's exposures are counted with the learning loop off too)."""
    token = {"authorization": "Bearer learning-cost-benchmark-token"}
    metrics = httpx.get(f"http://127.0.0.1:{port}/__ep/metrics", headers=token).text
    return any(line.startswith("ep_exposures") and not line.rstrip().endswith(" 0.0")
               for line in metrics.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="measured seconds a run")
    parser.add_argument("--pages", default="big,small")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/learning_cost.json")
    args = parser.parse_args()
    origin = kit_origin()
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        admin = {"EP_ADMIN_TOKEN": "learning-cost-benchmark-token"}
        envs = {"no-goal": {"EP_DATA_DIR": f"{tmp}/none"} | admin,
                "sqlite": {"EP_DATA_DIR": f"{tmp}/sqlite"} | admin,
                "redis": {"EP_STORE_URL": f"redis://127.0.0.1:{redis_port}/0"} | admin}
        try:
            without_goals = copy_rules(RULES, Path(tmp) / "no-goal-rules", goals=False)
            for name in TARGETS:
                rules = without_goals if name == "no-goal" else RULES
                servers[name] = start_server(rules, envs[name])
            rates: dict[str, dict[str, list[float]]] = {
                page: {name: [] for name in TARGETS} for page in args.pages.split(",")}
            cpu: dict[str, dict[str, list[float]]] = {
                page: {name: [] for name in TARGETS} for page in args.pages.split(",")}
            # what each target's answers cost: its processes, and Redis's for the one that
            # counts into it
            watched: dict[str, tuple[int, ...]] = {
                name: (process.pid,) for name, (process, _) in servers.items()}
            watched["redis"] = (servers["redis"][0].pid, redis.pid)
            names = list(TARGETS)
            for round_ in range(args.rounds):
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for page, by_target in rates.items():
                    for name in order:
                        url = f"http://127.0.0.1:{servers[name][1]}/{page}.html"
                        wrk(url, 2)   # warm-up
                        used = cpu_seconds(*watched[name])
                        rate, answered = wrk(url, args.duration)
                        by_target[name].append(rate)
                        cpu[page][name].append(
                            (cpu_seconds(*watched[name]) - used) / answered * 1e6)
                        print(f"round {round_ + 1} {page} {name}: {rate:,.0f} req/s, "
                              f"{cpu[page][name][-1]:,.0f} µs of CPU a request", flush=True)
            counting = {name: counted_exposures(servers[name][1]) for name in TARGETS}
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)
            redis.terminate()
            redis.wait(timeout=10)
            if origin is not None:
                os.killpg(origin.pid, signal.SIGINT)
                origin.wait(timeout=30)
    if not all(counting.values()):
        raise SystemExit(f"expected counted exposures from every target, got {counting}")
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"),
                                  "rounds": args.rounds, "duration_s": args.duration,
                                  "load_at_end": os.getloadavg()[0], "pages": {}}
    for page, by_target in rates.items():
        median = {name: statistics.median(values) for name, values in by_target.items()}
        spent = {name: statistics.median(values) for name, values in cpu[page].items()}
        results["pages"][page] = {   # type: ignore[index]
            "req_s": {name: round(value) for name, value in median.items()},
            "runs": by_target,
            "ratio_to_no_goal": {name: round(median[name] / median["no-goal"], 3)
                                 for name in ("sqlite", "redis")},
            "cpu_us_per_request": {name: round(value) for name, value in spent.items()},
            "cpu_runs": {name: [round(v) for v in values] for name, values in cpu[page].items()},
            "cpu_ratio_to_no_goal": {name: round(spent[name] / spent["no-goal"], 3)
                                     for name in ("sqlite", "redis")},
            # each round's own ratio (the targets ran back to back), then their median:
            # what moves the machine between rounds moves both sides of a ratio
            "paired_ratio_to_no_goal": {name: paired(by_target[name], by_target["no-goal"])
                                        for name in ("sqlite", "redis")},
            "paired_cpu_ratio_to_no_goal": {
                name: paired(cpu[page][name], cpu[page]["no-goal"])
                for name in ("sqlite", "redis")}}
        print(f"{page}: no goal {median['no-goal']:,.0f} req/s; counting into SQLite "
              f"{median['sqlite'] / median['no-goal']:.3f}x, into Redis "
              f"{median['redis'] / median['no-goal']:.3f}x; CPU a request "
              f"{spent['sqlite'] / spent['no-goal']:.3f}x and "
              f"{spent['redis'] / spent['no-goal']:.3f}x; round by round (median) "
              f"{paired(by_target['sqlite'], by_target['no-goal']):.3f}x and "
              f"{paired(by_target['redis'], by_target['no-goal']):.3f}x")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
