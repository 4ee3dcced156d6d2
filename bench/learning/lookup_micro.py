"""What the request path pays for bandit allocation and for predicted interests.

    .venv/bin/python bench/learning/lookup_micro.py   # writes bench/results/learning_micro.json

Each figure is microseconds a call: the best of 7 runs of a tight loop (timeit), beside a
plain dict get measured the same way in the same run. Budgets (issue 16): an allocation
lookup at most 2 us, predictions at most 5 us.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_personalizer.learn.affinity import build_model, strongest  # noqa: E402
from edge_personalizer.learn.bandit import (  # noqa: E402
    BanditSpec,
    WeightsTable,
    experiment_weights,
)
from edge_personalizer.learn.counters import EXPOSURE, CountKey, Tally  # noqa: E402
from edge_personalizer.rules.bucketing import bucket  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CALLS = 200_000
CATEGORIES = [f"category-{n}" for n in range(20)]


def best_us(stmt: str, namespace: dict[str, Any], *, number: int = CALLS) -> float:
    """The best of 7 runs, in the process's CPU time: on a shared machine the time spent
    waiting for a core is another process's, not this call's."""
    runs = timeit.Timer(stmt, globals=namespace, timer=time.process_time).repeat(
        repeat=7, number=number)
    return round(min(runs) / number * 1e6, 3)


def weights_table() -> WeightsTable:
    """Ten bandit experiments of four variants, 24 learned cells each."""
    experiments = {}
    for n in range(10):
        spec = BanditSpec(f"exp-{n}", tuple((f"v{k}", 1.0) for k in range(4)), goal="buy",
                          control="v0")
        rows = {}
        for cell, variant in itertools.product(range(24), range(4)):
            rows[CountKey(spec.experiment, f"v{variant}", EXPOSURE, f"cell-{cell}", "d")] = \
                Tally(exposures=1000)
            rows[CountKey(spec.experiment, f"v{variant}", "buy", f"cell-{cell}", "d")] = \
                Tally(conversions=20 + 10 * variant + cell)
        experiments[spec.experiment] = experiment_weights(spec, rows, version=1, now=0.0)
    return WeightsTable(1, experiments)


def allocation() -> dict[str, float]:
    namespace: dict[str, Any] = {"table": weights_table(), "bucket": bucket,
                                 "plain": {("exp-3", "cell-7"): 1}}
    return {
        "choose_us": best_us('table.choose("exp-3", "cell-7", 0.7312)', namespace),
        "bucket_hash_and_choose_us": best_us(
            'table.choose("exp-3", "cell-7", bucket("exp-3", "Xq3vT9aPz1kLmN0b"))', namespace),
        "baseline_plain_dict_get_us": best_us('plain.get(("exp-3", "cell-7"))', namespace),
    }


def predictions() -> dict[str, float]:
    counts: dict[tuple[str, ...], dict[str, float]] = {
        pair: {c: float(10 + (i * 7 + j) % 50) for j, c in enumerate(CATEGORIES)
               if c not in pair}
        for i, pair in enumerate(itertools.combinations(CATEGORIES, 2))}
    model = build_model(counts)
    now = int(time.time())
    few = {c: (0.2 + 0.1 * i, now - 3600 * i) for i, c in enumerate(CATEGORIES[:5])}
    every = {c: (0.05 + 0.04 * i, now - 3600 * i) for i, c in enumerate(CATEGORIES)}
    namespace: dict[str, Any] = {"model": model, "strongest": strongest, "few": few,
                                 "every": every}
    return {
        "predict_5_interests_us": best_us("model.predict(strongest(few, 30.0))", namespace),
        "predict_20_interests_us": best_us("model.predict(strongest(every, 30.0))", namespace),
        "predict_no_interests_us": best_us("model.predict(strongest({}, 30.0))", namespace),
        "model_bytes": len(model.encode()),
        "model_pairs": len(model.pairs),
    }


DECIDE_RULES = """\
slots: {{hero: {{selector: "#hero"}}}}
goals: {{purchase: {{when: {{request.path: /thanks}}}}}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
{allocation}    variants:
      control: {{weight: 1}}
      a: {{weight: 1, html: A}}
      b: {{weight: 1, html: B}}
"""
BANDIT = "    allocation: bandit\n    per: [device.type, referral.medium]\n"


def deciding() -> dict[str, float]:
    """decide() for a visitor with a fixed-weights experiment, and with the same experiment
    as a per-segment bandit whose weights are published for the visitor's cell."""
    import tempfile

    from edge_personalizer.rules.allocation import ALL_VISITORS, Cells
    from edge_personalizer.rules.book import check_rules
    from edge_personalizer.rules.evaluator import decide
    from tests.factories import make_visitor

    figures = {}
    for name, allocation in (("fixed", ""), ("bandit", BANDIT)):
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "r.yaml").write_text(DECIDE_RULES.format(allocation=allocation))
            ruleset, errors = check_rules(Path(folder))
        if errors:
            raise SystemExit(str(errors))
        visitor = make_visitor("/")
        visitor.profile  # noqa: B018  # classified before timing: only deciding is timed
        spec = BanditSpec("hero-test", (("control", 1.0), ("a", 1.0), ("b", 1.0)), "purchase")
        cell = ruleset.experiments[0].cells(visitor)
        rows = {CountKey("hero-test", v, g, cell, "d"): Tally(1000, 30 + 10 * i)
                for i, v in enumerate(("control", "a", "b")) for g in (EXPOSURE, "purchase")}
        table = WeightsTable(1, {"hero-test": experiment_weights(spec, rows, version=1, now=0)})
        namespace = {"decide": decide, "ruleset": ruleset, "visitor": visitor, "table": table}
        figures[f"decide_{name}_experiment_us"] = best_us(
            "decide(ruleset, visitor, allocations=table)", namespace, number=50_000)
    # What a fixed experiment pays for having cells at all: finding it has one.
    figures["cell_of_a_fixed_experiment_us"] = best_us(
        "ALL_VISITORS if cells.single else cells(visitor)",
        {"cells": Cells(), "visitor": make_visitor("/"), "ALL_VISITORS": ALL_VISITORS})
    return figures


def main() -> None:
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "platform": platform.platform()},
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "load_average": os.getloadavg()[0],
               "allocation": allocation(), "predictions": predictions(),
               "deciding": deciding()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning_micro.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
