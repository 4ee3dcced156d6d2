from __future__ import annotations

import dataclasses

from edge_personalizer.endpoints.dashboard_views import (
    allocation_view,
    cumulative_rates,
    make_snapshot,
)
from edge_personalizer.learn.bandit import BanditSpec, WeightsTable, experiment_weights
from edge_personalizer.learn.counters import CountKey, Tally
from edge_personalizer.learn.store import Table
from edge_personalizer.rules.model import RuleSet

from ..learn.test_results import experiment


def test_cumulative_rates_add_up_day_by_day() -> None:
    totals = {CountKey("e", "a", "", "all", "2026-11-02"): Tally(10),
              CountKey("e", "a", "g", "all", "2026-11-02"): Tally(0, 2),
              CountKey("e", "a", "", "all", "2026-11-01"): Tally(30),
              CountKey("e", "a", "g", "all", "2026-11-01"): Tally(0, 3),
              CountKey("e", "a", "other", "all", "2026-11-01"): Tally(0, 9),
              CountKey("e", "b", "", "seg", "2026-11-02"): Tally(5),
              CountKey("f", "a", "", "all", "2026-11-03"): Tally(99)}
    days, exposed, converted = cumulative_rates(totals, "e", "g", ["a", "b"])
    assert days == ["2026-11-01", "2026-11-02"]
    assert exposed == {"a": [30, 40], "b": [0, 5]}
    assert converted == {"a": [3, 5], "b": [0, 0]}


def test_a_snapshot_s_results_carry_the_bandit_weights_as_results_do() -> None:
    # `report --format json` prints a snapshot's results: they lacked each bandit's
    # weights, which /__ep/results gives (the report says it answers "as /__ep/results").
    hero = dataclasses.replace(experiment(), allocation="bandit")
    fixed = dataclasses.replace(experiment(), name="cta-test")
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero, fixed))
    spec = BanditSpec("hero-test", (("control", 50), ("bold", 50)), goal="purchase")
    table = WeightsTable(3, {"hero-test": experiment_weights(spec, {}, version=3, now=0.0)})
    published = Table("bandit-weights", 3, table.encode(), 0.0)
    snapshot = make_snapshot(ruleset, {}, store="sqlite:///x", taken_at=0.0, bandits=published)
    by_name = {e["name"]: e for e in snapshot.results["experiments"]}
    assert by_name["hero-test"]["bandit"] == table.as_json()["hero-test"]
    assert "bandit" not in by_name["cta-test"]
    unpublished = make_snapshot(ruleset, {}, store="sqlite:///x", taken_at=0.0)
    assert {e["name"]: e.get("bandit", "-") for e in unpublished.results["experiments"]} == \
        {"hero-test": None, "cta-test": "-"}


def test_the_cells_beyond_max_cells_show_as_one_row_of_other_cells() -> None:
    hero = dataclasses.replace(experiment(), allocation="bandit")
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    spec = BanditSpec("hero-test", (("control", 50), ("bold", 50)), goal="purchase",
                      max_cells=1)
    counted = {CountKey("hero-test", "control", "", cell, "2026-11-02"): Tally(n)
               for n, cell in ((9, "google"), (1, "made-up-1"), (1, "made-up-2"))}
    table = WeightsTable(3, {"hero-test": experiment_weights(spec, counted, version=3,
                                                             now=0.0)})
    snapshot = make_snapshot(ruleset, counted, store="sqlite:///x", taken_at=0.0,
                             bandits=Table("bandit-weights", 3, table.encode(), 0.0))
    view = allocation_view(snapshot, "hero-test", ["control", "bold"])
    assert view is not None
    assert [(c["cell"], c["exposures"]) for c in view["cells"]] == [
        ("google", 9), ("other cells (2)", 2)]
