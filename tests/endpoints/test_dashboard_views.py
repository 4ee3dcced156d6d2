from __future__ import annotations

import dataclasses
from typing import Any

from edge_personalizer.endpoints.dashboard_views import (
    cumulative_rates,
    leader_of,
    make_snapshot,
    why_no_leader,
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


def _goal(**chances: float | None) -> dict[str, Any]:
    """A goal's results: each variant's chance to beat the control, 50 conversions each."""
    variants: dict[str, dict[str, Any]] = {
        name: {"chance_to_beat_control": chance, "converted": 50, "too_few_conversions": []}
        for name, chance in chances.items()}
    return {"control": "control", "variants": {
        "control": {"chance_to_beat_control": None, "converted": 50,
                    "too_few_conversions": None}, **variants}}


def test_the_variant_ahead_is_the_likeliest_challenger_or_the_control_never_a_tie() -> None:
    assert leader_of(_goal(a=0.62, b=0.91)) == ("b", 0.91)
    assert leader_of(_goal(a=0.25)) == ("control", 0.75)
    # Even with the control (the same rate): neither is ahead, whatever the names say.
    assert leader_of(_goal(a=0.5)) == (None, None)
    assert leader_of(_goal(a=None)) == (None, None)   # no comparison yet
    removed = _goal(a=0.97, b=0.4)
    removed["variants"]["a"]["removed"] = True
    assert leader_of(removed) == ("control", 0.6)
    # Under 10 conversions in the control or the one ahead: too few to name it.
    few = _goal(a=0.99)
    few["variants"]["control"]["converted"] = 9
    few["variants"]["a"]["too_few_conversions"] = ["control"]
    assert leader_of(few) == (None, None)
    assert why_no_leader({**few, "variants": {
        name: {**v, "exposed": 100} for name, v in few["variants"].items()}}) == \
        "not enough conversions yet"
    # a challenger with too few is passed over, not the one with enough
    two = _goal(a=0.99, b=0.8)
    two["variants"]["a"] |= {"converted": 3, "too_few_conversions": ["a"]}
    assert leader_of(two) == ("b", 0.8)


def test_no_variant_is_ahead_while_one_that_cannot_be_compared_does_better() -> None:
    # a: every visitor converted (no spread: no comparison), b: 4 in 9, the control 3 in 8.
    goal = _goal(a=None, b=0.605)
    goal["variants"]["a"] |= {"rate": 1.0, "compared_exposed": 3}
    goal["variants"]["b"] |= {"rate": 4 / 9, "compared_exposed": 9}
    goal["variants"]["control"]["rate"] = 3 / 8
    assert leader_of(goal) == (None, None)
    goal["variants"]["a"]["rate"] = 0.0   # none of a's converted: b is ahead all the same
    assert leader_of(goal) == ("b", 0.605)


def test_the_list_says_why_no_variant_is_ahead() -> None:
    goal = _goal(b=None)
    goal["variants"]["control"] |= {"exposed": 40, "converted": 0}
    goal["variants"]["b"] |= {"exposed": 67, "converted": 19, "compared_exposed": 67}
    assert why_no_leader(goal) == "control has no conversions yet"
    goal["variants"]["control"]["converted"] = 3
    assert why_no_leader(goal) == "not enough conversions yet"
    goal["variants"]["b"]["chance_to_beat_control"] = 0.5
    assert why_no_leader(goal) == "none: even so far"
    goal["variants"]["b"]["compared_exposed"] = 0   # only in periods without the control
    assert why_no_leader(goal) == "no variant shown beside control yet"
    goal["variants"]["b"]["exposed"] = 0
    assert why_no_leader(goal) == "no visitors yet"
    goal["variants"]["b"] |= {"exposed": 67, "removed": True}   # no challenger left
    assert why_no_leader(goal) == "no visitors yet"
    assert why_no_leader(None) == "no goal to judge it on"


def test_a_challenger_never_shown_beside_the_control_never_blocks_the_one_ahead() -> None:
    goal = _goal(a=0.9, b=None)
    goal["variants"]["a"] |= {"rate": 0.04, "compared_exposed": 500}
    goal["variants"]["b"] |= {"rate": 0.06, "compared_exposed": 0}
    assert leader_of(goal) == ("a", 0.9)
    goal["variants"]["b"]["compared_exposed"] = 3   # shown beside it, all 3 converted
    goal["variants"]["b"]["rate"] = 1.0
    assert leader_of(goal) == (None, None)


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
