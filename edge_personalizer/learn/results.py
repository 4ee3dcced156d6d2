"""Results: the store's totals judged per experiment and goal (and per rule), as the
`/__ep/results` endpoint and `edge-personalizer report` give them.

An experiment that counts per cell (`per: segment`, or `per: [fields]`) is also judged
within each cell: for `per: segment`, each segment the rules name (and `other`, the
visitors in none), in the order of the `segments:` section. A visitor counts in one cell,
so the cells add up to the whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..rules.allocation import NO_SEGMENT
from ..rules.model import Experiment, RuleSet
from .bandit import period_weighted_totals
from .counters import EXPOSURE, FIXED_PERIOD, CountKey, Tally, variant_totals
from .stats import goal_result, rate_interval


def control_of(experiment: Experiment) -> str:
    """The variant the others are compared with: the one named control, else the first."""
    names = [name for name, _ in experiment.weights]
    return "control" if "control" in names else names[0]


MAX_CELLS = 50   # per: [fields] cells judged one by one: the most exposed first


def per_of(experiment: Experiment) -> str | list[str] | None:
    """What the experiment counts per: "segment", its fields, or None (one cell)."""
    if experiment.cells.segments:
        return "segment"
    return list(experiment.cells.fields) or None


def cells_of(experiment: Experiment, rows: Mapping[CountKey, Tally]) -> list[str]:
    """The cells to judge the experiment in, from its rows: every segment the rules name
    and `other` (then cells counted under segments since renamed), or the most exposed
    MAX_CELLS cells of its fields; none for an experiment of one cell."""
    if experiment.cells.single:
        return []
    exposed: dict[str, int] = {}
    for key, tally in rows.items():
        if key.goal == EXPOSURE:
            exposed[key.cell] = exposed.get(key.cell, 0) + tally.exposures
    if experiment.cells.segments:
        named = [segment.name for segment in experiment.cells.segments] + [NO_SEGMENT]
        return named + sorted(set(exposed) - set(named))
    return sorted(exposed, key=lambda cell: (-exposed[cell], cell))[:MAX_CELLS]


def experiment_results(experiment: Experiment,
                       totals: Mapping[CountKey, Tally]) -> dict[str, Any]:
    rows = {key: tally for key, tally in totals.items() if key.experiment == experiment.name}
    weights = dict(experiment.weights)
    control = control_of(experiment)
    exposed = variant_totals(rows, experiment.name, EXPOSURE)
    bandit = experiment.allocation == "bandit"
    # Fixed weights edited while the experiment ran: visitors were shared out in several
    # splits, so the variants are compared within each split (as a bandit's periods), and
    # the split is checked on the visitors of today's weights only.
    # Counts from before splits were told apart (FIXED_PERIOD) are no split of their own.
    edited = not bandit and len({key.period for key in rows if key.goal == EXPOSURE}
                                - {FIXED_PERIOD}) > 1
    totals_of = period_weighted_totals if bandit or edited else variant_totals

    def judged_on(goal: str, cell_rows: Mapping[CountKey, Tally],
                  weighted_by: str = "period") -> dict[str, Any]:
        judged = goal_result(totals_of(cell_rows, experiment.name, goal), weights,
                             control=control).as_json()
        if bandit:   # weights change by design: compare within periods, no ratio to check
            judged.update(srm_p=None, srm=False, weighted_by=weighted_by)
        elif edited:
            period = experiment.fixed_period
            today = {key: tally for key, tally in cell_rows.items() if key.period == period}
            split = goal_result(variant_totals(today, experiment.name, EXPOSURE), weights,
                                control=control).as_json()
            judged.update(srm_p=split["srm_p"], srm=split["srm"], weighted_by=weighted_by)
        return judged

    cells = cells_of(experiment, rows)
    by_cell: dict[str, dict[CountKey, Tally]] = {cell: {} for cell in cells}
    for key, tally in rows.items():
        held = by_cell.get(key.cell)
        if held is not None:
            held[key] = tally
    goals = {}
    for goal in experiment.goals:
        # the whole experiment: within each cell's periods (cells have weights of their own)
        judged = judged_on(goal, rows, "cell and period" if cells else "period")
        if cells:
            judged["segments"] = {
                cell: {"exposed": sum(t.exposures for k, t in cell_rows.items()
                                      if k.goal == EXPOSURE), **judged_on(goal, cell_rows)}
                for cell, cell_rows in by_cell.items()}
        goals[goal] = judged
    return {"name": experiment.name, "control": control, "per": per_of(experiment),
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
