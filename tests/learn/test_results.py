from __future__ import annotations

import dataclasses
from types import MappingProxyType

from edge_personalizer.learn.counters import CountKey, Tally
from edge_personalizer.learn.results import control_of, results
from edge_personalizer.rules.model import Experiment, RuleSet


def _always(visitor: object) -> bool:
    return True


def experiment(name: str = "hero-test", *weights: tuple[str, float]) -> Experiment:
    return Experiment(name=name, slots=("hero",), audience=_always,   # type: ignore[arg-type]
                      holdout=0.0, weights=weights or (("control", 50.0), ("bold", 50.0)),
                      variants=MappingProxyType({}), source="t.yaml:1", goals=("purchase",))


def test_an_experiment_is_judged_on_its_goals_from_the_store_s_totals() -> None:
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(experiment(),))
    day = "2026-12-02"
    totals = {
        CountKey("hero-test", "control", "", "all", day): Tally(exposures=1000),
        CountKey("hero-test", "bold", "", "all", day): Tally(exposures=1000),
        CountKey("hero-test", "control", "purchase", "all", day): Tally(0, 50, 500.0, 5000.0),
        CountKey("hero-test", "bold", "purchase", "all", day): Tally(0, 80, 800.0, 8000.0),
        CountKey("fb-rule", "facebook", "", "all", day): Tally(exposures=10),
        CountKey("fb-rule", "facebook", "purchase", "all", day): Tally(0, 2, 0.0, 0.0),
    }
    report = results(ruleset, totals)
    (hero,) = report["experiments"]
    assert hero["name"] == "hero-test" and hero["exposed"] == 2000
    purchase = hero["goals"]["purchase"]
    bold, control = purchase["variants"]["bold"], purchase["variants"]["control"]
    assert (bold["exposed"], bold["converted"], bold["rate"]) == (1000, 80, 0.08)
    assert bold["uplift"] is not None and abs(bold["uplift"] - 0.6) < 1e-9
    assert bold["uplift_low"] < 0.6 < bold["uplift_high"]
    assert bold["chance_to_beat_control"] > 0.95
    assert control["uplift"] is None and control["chance_to_beat_control"] is None
    assert purchase["srm_p"] > 0.5
    # fb-rule is no rule of this set: only rules of the serving set are reported
    assert report["rules"] == []


def test_the_control_is_the_variant_named_so_else_the_first() -> None:
    assert control_of(experiment("x", ("a", 1.0), ("control", 1.0))) == "control"
    assert control_of(experiment("x", ("a", 1.0), ("b", 1.0))) == "a"
