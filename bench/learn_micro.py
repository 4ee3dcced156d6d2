"""Micro benchmark of counting on the request path (edge_personalizer/learn/counters.py).

    .venv/bin/python bench/learn_micro.py      # writes bench/results/learn_micro.json

Each figure is nanoseconds a call: the best of 7 runs of a tight loop of many calls (the
loop's own cost included, as a page pays it), beside a plain dict increment measured the
same way in the same run. The flusher's side (collect, off the request path) is timed too.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def main() -> None:
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "request_path": request_path(),
        "flusher": flusher_side(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learn_micro.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
