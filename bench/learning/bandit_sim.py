"""Per-segment bandits, simulated: how many conversions they win against fixed equal weights,
a context-free bandit and the oracle.

    .venv/bin/python bench/learning/bandit_sim.py   # writes bench/results/learning_bandit.json

A population of 30,000 visitors in 3 segments, each shown one of 3 variants, converting
with known rates (2-8%) whose best variant differs by segment. The allocation goes through
the product's learning loop, not a copy of it: learn/counters.py counts each exposure and
conversion, learn/flusher.py writes them to a real SQLite store every simulated minute,
learn/trainer.py's Trainer recomputes the weights on the experiment's cadence (every 300
simulated seconds; one visitor arrives a second) and publishes them, and a TableReader
brings them back; a new visitor is assigned by WeightsTable.choose at their stable bucket
(rules/bucketing.py). A quarter of the visitors come back later: they keep their variant
(as the profile cookie's `variants` keeps it). It does not go through the HTTP server: the
server's rule side (allocation: bandit in rule files) is not wired yet.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_personalizer.learn.bandit import BanditSpec, WeightsTable  # noqa: E402
from edge_personalizer.learn.counters import Accumulator  # noqa: E402
from edge_personalizer.learn.flusher import Flusher  # noqa: E402
from edge_personalizer.learn.readers import weights_reader  # noqa: E402
from edge_personalizer.learn.store import open_store, sqlite_url  # noqa: E402
from edge_personalizer.learn.trainer import Trainer  # noqa: E402
from edge_personalizer.rules.bucketing import bucket  # noqa: E402

RESULTS = ROOT / "bench" / "results"
VISITORS = 30_000
VARIANTS = ("control", "a", "b")
RATES = {"segment-1": {"control": 0.04, "a": 0.08, "b": 0.02},
         "segment-2": {"control": 0.04, "a": 0.02, "b": 0.07},
         "segment-3": {"control": 0.05, "a": 0.03, "b": 0.03}}
UPDATE_EVERY = 300.0
RETURNING = 0.25
REPEATS = 5
EXPERIMENT = "hero-test"


def oracle(segment: str, point: float) -> str:
    return max(RATES[segment], key=lambda v: RATES[segment][v])


def equal(segment: str, point: float) -> str:
    return VARIANTS[min(int(point * 3), 2)]


async def simulate(policy: str, seed: int, *, leader_share: float = 0.9) -> dict[str, Any]:
    """One population through one policy: 'fixed', 'oracle', 'context_free' or 'per_segment'."""
    rng = np.random.default_rng(seed)
    segments = rng.choice(sorted(RATES), size=VISITORS)
    draws = rng.random(VISITORS)
    returns = rng.random(VISITORS) < RETURNING
    now = [0.0]
    counters = Accumulator(clock=lambda: now[0])
    spec = BanditSpec(EXPERIMENT, tuple((v, 1.0) for v in VARIANTS), goal="purchase",
                      update_every=UPDATE_EVERY, leader_share=leader_share)
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(sqlite_url(Path(folder) / "ep.db"))
        flusher = Flusher(counters, store)
        learning = policy in ("context_free", "per_segment")
        trainer = Trainer(store, specs=lambda: [spec] if learning else [], learn_interval=None,
                          clock=lambda: now[0])
        reader = weights_reader(store)
        shown: dict[int, str] = {}
        served = {s: dict.fromkeys(VARIANTS, 0) for s in RATES}
        conversions = would_switch = 0
        min_weight = 1.0
        comebacks: list[int] = []
        for n in range(VISITORS):
            now[0] = float(n)
            if n % 60 == 0:
                await flusher.flush()
                await trainer.step()
                await reader.refresh()
                min_weight = min(min_weight, _min_weight(reader.current))
            segment = str(segments[n])
            cell = segment if policy == "per_segment" else "all"
            point = bucket(EXPERIMENT, f"visitor-{seed}-{n}")
            choose = _chooser(policy, reader.current, cell)
            variant = shown[n] = choose(segment, point)
            served[segment][variant] += 1
            counters.expose(EXPERIMENT, variant, cell)
            if draws[n] < RATES[segment][variant]:
                conversions += 1
                counters.convert(EXPERIMENT, variant, "purchase", cell)
            if returns[n]:
                comebacks.append(n)
            if comebacks and n % 10 == 0:   # an earlier visitor comes back: sticky
                back = comebacks.pop(0)
                fresh = choose(str(segments[back]), bucket(EXPERIMENT, f"visitor-{seed}-{back}"))
                would_switch += fresh != shown[back]   # served shown[back] all the same
        await store.close()
    return {"conversions": conversions, "served": served, "min_published_weight": min_weight,
            "returning_whose_new_draw_differs": would_switch}


def _chooser(policy: str, table: WeightsTable, cell: str) -> Callable[[str, float], str]:
    if policy == "oracle":
        return oracle
    if policy == "fixed":
        return equal

    def choose(segment: str, point: float) -> str:
        return table.choose(EXPERIMENT, cell, point) or equal(segment, point)
    return choose


def _min_weight(table: WeightsTable) -> float:
    weights = [w for e in table.experiments.values() for c in e.cells.values()
               for _, w in c.weights]
    return min(weights, default=1.0)


async def run() -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    policies = [("fixed", 0.9), ("context_free", 0.9), ("per_segment", 0.9),
                ("per_segment_leader_share_0.5", 0.5), ("oracle", 0.9)]
    for name, share in policies:
        policy = "per_segment" if name.startswith("per_segment") else name
        runs[name] = [await simulate(policy, seed, leader_share=share)
                      for seed in range(REPEATS)]
    oracle_mean = float(np.mean([r["conversions"] for r in runs["oracle"]]))
    summary = {}
    for name, results in runs.items():
        won = [r["conversions"] for r in results]
        summary[name] = {
            "conversions_mean": round(float(np.mean(won)), 1),
            "conversions_each": won,
            "share_of_oracle": round(float(np.mean(won)) / oracle_mean, 4),
            "min_published_weight": min(r["min_published_weight"] for r in results),
            "returning_whose_new_draw_differs": sum(r["returning_whose_new_draw_differs"]
                                                    for r in results),
            "served_first_run": results[0]["served"],
        }
    return summary


def main() -> None:
    started = time.perf_counter()
    summary = anyio.run(run)
    results = {"machine": {"python": platform.python_version()},
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "setup": {"visitors": VISITORS, "rates": RATES, "update_every_visitors":
                         UPDATE_EVERY, "burn_in": 200, "floor": 0.01, "repeats": REPEATS,
                         "returning_share": RETURNING, "through": "learn/ (counters, flusher, "
                         "SQLite store, trainer, reader); not the HTTP server"},
               "policies": summary, "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning_bandit.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, figures in summary.items():
        print(f"{name:30s} {figures['conversions_mean']:8.1f} conversions "
              f"({figures['share_of_oracle']:.1%} of oracle), min weight "
              f"{figures['min_published_weight']:.4f}, returning visitors kept from a "
              f"switch {figures['returning_whose_new_draw_differs']}")


if __name__ == "__main__":
    main()
