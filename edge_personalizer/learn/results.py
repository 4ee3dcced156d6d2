"""Results: the store's totals judged per experiment and goal (and per rule), as the
`/__ep/results` endpoint and `edge-personalizer report` give them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..rules.model import Experiment, RuleSet
from .bandit import period_weighted_totals
from .counters import EXPOSURE, CountKey, Tally, variant_totals
from .stats import goal_result, rate_interval


def control_of(experiment: Experiment) -> str:
    """The variant the others are compared with: the one named control, else the first."""
    names = [name for name, _ in experiment.weights]
    return "control" if "control" in names else names[0]


def experiment_results(experiment: Experiment,
                       totals: Mapping[CountKey, Tally]) -> dict[str, Any]:
    weights = dict(experiment.weights)
    exposed = variant_totals(totals, experiment.name, "")
    bandit = experiment.allocation == "bandit"
    totals_of = period_weighted_totals if bandit else variant_totals
    goals = {}
    for goal in experiment.goals:
        judged = goal_result(totals_of(totals, experiment.name, goal), weights,
                             control=control_of(experiment)).as_json()
        if bandit:   # weights change by design: compare within days, no ratio to check
            judged.update(srm_p=None, weighted_by="day")
        goals[goal] = judged
    return {"name": experiment.name, "control": control_of(experiment),
            "exposed": sum(t.exposures for t in exposed.values()), "goals": goals}


def rule_results(totals: Mapping[CountKey, Tally], names: set[str]) -> list[dict[str, Any]]:
    """What each rule's variants reached: exposures and, per goal, conversions and rate."""
    out = []
    for name in sorted(names):
        rows = {k: v for k, v in totals.items() if k.experiment == name}
        goals = sorted({k.goal for k in rows if k.goal != EXPOSURE})
        variants: dict[str, Any] = {}
        for variant in sorted({k.variant for k in rows}):
            exposed = sum(v.exposures for k, v in rows.items()
                          if k.variant == variant and k.goal == EXPOSURE)
            per_goal = {}
            for goal in goals:
                converted = sum(v.conversions for k, v in rows.items()
                                if k.variant == variant and k.goal == goal)
                low, high = rate_interval(converted, exposed) if exposed else (None, None)
                per_goal[goal] = {"converted": converted,
                                  "rate": converted / exposed if exposed else None,
                                  "rate_low": low, "rate_high": high}
            variants[variant] = {"exposed": exposed, "goals": per_goal}
        out.append({"name": name, "variants": variants})
    return out


def results(ruleset: RuleSet, totals: Mapping[CountKey, Tally]) -> dict[str, Any]:
    """Every experiment of the rule set judged on its goals, and what each rule reached."""
    experiments = [experiment_results(e, totals) for e in ruleset.experiments]
    named = {e.name for e in ruleset.experiments}
    rule_names = {rule.name for rule in ruleset.rules}
    counted = {k.experiment for k in totals} & rule_names - named
    return {"rules_version": ruleset.version, "experiments": experiments,
            "rules": rule_results(totals, counted)}
