"""Results: the store's totals judged per experiment and goal (and per rule), as the
`/__ep/results` endpoint and `edge-personalizer report` give them.

An experiment that counts per cell (`per: segment`, or `per: [fields]`) is also judged
within each cell: for `per: segment`, each segment the rules name (and `other`, the
visitors in none), in the order of the `segments:` section; per: [fields], the MAX_CELLS
cells with the most visitors, then OTHER_CELLS for the rest. A visitor counts in one
cell, so the cells add up to the whole.

Every variant the store has counts for is listed, one since removed from the rules marked
so; an experiment removed from the rules keeps its results (status "stopped"), judged from
the store's counts on the goals recorded for it while it ran. Counts that disagree
(conversions beyond the visitors exposed, after a store was emptied under returning
visitors) are cut to the exposures in the rates and said in the experiment's warnings;
an experiment whose results cannot be worked out is an error entry, not the others' end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from types import MappingProxyType
from typing import Any

from ..rules.allocation import NO_SEGMENT
from ..rules.model import HOLDOUT, Experiment, RuleSet
from ..rules.notices import phase
from .catalog import GoalCatalog
from .counters import (
    ALL_VISITORS,
    CELLS_JUDGED,
    EXPOSURE,
    FIXED_PERIOD,
    INTERNAL_PREFIX,
    OTHER_CELLS,
    TAKEN,
    CountKey,
    Tally,
    most_exposed,
)
from .judging import Plan, exposed, from_day, judged_on
from .rule_results import rule_results

log = logging.getLogger(__name__)

MAX_CELLS = CELLS_JUDGED   # per: [fields] cells judged one by one: the most exposed first


def control_of(experiment: Experiment) -> str:
    """The variant the others are compared with: the one named control, else the first."""
    names = [name for name, _ in experiment.weights]
    return "control" if "control" in names else names[0]


def status_of(experiment: Experiment, now: datetime) -> str:
    """An experiment at `now` (UTC): "ended" (its schedule, everywhere; paused or not),
    "paused", "scheduled" (its schedule has begun nowhere yet) or "running"."""
    where = phase(experiment.audience, now)
    return "paused" if experiment.paused and where != "ended" else where


def per_of(experiment: Experiment) -> str | list[str] | None:
    """What the experiment counts per: "segment", its fields, or None (one cell)."""
    if experiment.cells.segments:
        return "segment"
    return list(experiment.cells.fields) or None


def _exposed_by_cell(rows: Mapping[CountKey, Tally]) -> dict[str, int]:
    exposed: dict[str, int] = {}
    for key, tally in rows.items():
        if key.goal == EXPOSURE and key.variant != HOLDOUT:
            exposed[key.cell] = exposed.get(key.cell, 0) + tally.exposures
    return exposed


def cells_of(experiment: Experiment, rows: Mapping[CountKey, Tally]) -> list[str]:
    """The cells to judge the experiment in, from its rows: every segment the rules name
    and `other` (then cells counted under segments since renamed), or the most exposed
    MAX_CELLS cells of its fields; none for an experiment of one cell."""
    if experiment.cells.single:
        return []
    exposed = _exposed_by_cell(rows)
    if experiment.cells.segments:
        named = [segment.name for segment in experiment.cells.segments] + [NO_SEGMENT]
        return named + sorted(set(exposed) - set(named))
    return _most_exposed_and_others(exposed)


def _most_exposed_and_others(exposed: Mapping[str, int]) -> list[str]:
    """The MAX_CELLS most exposed cells, then OTHER_CELLS when there are more: the rest
    together, with the cells the trainer folded in the store (learn/folding.py)."""
    shown = most_exposed({cell: n for cell, n in exposed.items() if cell != OTHER_CELLS},
                         MAX_CELLS)
    return [*shown, OTHER_CELLS] if len(shown) < len(exposed) else shown


def _variants_counted(rows: Mapping[CountKey, Tally]) -> list[str]:
    return sorted({key.variant for key in rows} - {HOLDOUT})


def _counted_only(name: str, status: str, rows: Mapping[CountKey, Tally],
                  **more: Any) -> dict[str, Any]:
    """An experiment's entry with its visitors counted, nothing judged (`more`: why)."""
    return {"name": name, "status": status, "per": None, "control": None,
            "exposed": exposed(rows), "held_out": exposed(rows, held_out=True),
            "goals": {}, "warnings": [], **more}


def plan_of(experiment: Experiment, rows: Mapping[CountKey, Tally]) -> Plan:
    """How an experiment of the rules is judged on its rows."""
    weights = dict(experiment.weights)
    bandit = experiment.allocation == "bandit"
    # Fixed weights edited while the experiment ran: visitors were shared out in several
    # splits, so the variants are compared within each split (as a bandit's periods), and
    # the split is checked on the visitors of today's weights only.
    # Counts from before splits were told apart (FIXED_PERIOD) are no split of their own.
    # Edited before today's weights shared out anyone: the split check has no one yet.
    edited = not bandit and bool({key.period for key in rows if key.goal == EXPOSURE}
                                 - {FIXED_PERIOD, experiment.fixed_period})
    removed = tuple(v for v in _variants_counted(rows) if v not in weights)
    return Plan(experiment.name, weights, removed, control_of(experiment), bandit or edited,
                experiment.fixed_period if edited else None, not bandit)


def _judge(plan: Plan, goals: tuple[str, ...], all_rows: Mapping[CountKey, Tally],
           cells: list[str], since: Mapping[str, str] = MappingProxyType({}),
           replan: Callable[[Mapping[CountKey, Tally]], Plan] | None = None
           ) -> dict[str, Any]:
    """The experiment judged on each of its goals; a goal that joined it under way on
    the rows from its day, and by the plan `replan` makes of them (variants removed
    before, splits edited before, are none of its business)."""
    goals_judged: dict[str, Any] = {}
    warnings: list[str] = []
    for goal in goals:
        rows = from_day(all_rows, since.get(goal))
        goal_plan = plan
        if goal in since:
            warnings.append(_joined_note(goal, since[goal], exposed(rows), exposed(all_rows)))
            goal_plan = replan(rows) if replan is not None else plan
        # the whole experiment: within each cell's periods (cells have weights of their own)
        judged, cut = judged_on(goal_plan, goal, rows, "cell and period" if cells else "period")
        warnings += [_unexposed_warning(variant, n, goal) for variant, n in cut.items()]
        if cells:
            by_cell: dict[str, dict[CountKey, Tally]] = {cell: {} for cell in cells}
            rest = by_cell.get(OTHER_CELLS)   # the cells not shown one by one, if any
            for key, tally in rows.items():
                cell_rows = by_cell.get(key.cell, rest)
                if cell_rows is not None:
                    cell_rows[key] = tally
            judged["segments"] = {
                cell: {"exposed": exposed(cell_rows),
                       "held_out": exposed(cell_rows, held_out=True),
                       **judged_on(goal_plan, goal, cell_rows)[0]}
                for cell, cell_rows in by_cell.items()}
        if goal in since:
            judged["since"] = since[goal]
        goals_judged[goal] = judged
    return {"control": plan.control, "exposed": exposed(all_rows),
            "held_out": exposed(all_rows, held_out=True), "goals": goals_judged,
            "warnings": warnings}


def _joined_note(goal: str, day: str, since: int, exposed: int) -> str:
    return (f"{goal} joined the experiment while it ran: judged on the {since:,} visitors "
            f"exposed from {day} on (of {exposed:,}); those exposed before could not "
            "reach it")


def _unexposed_warning(variant: str, n: int, goal: str) -> str:
    return (f"{variant}: {n:,} conversion{'' if n == 1 else 's'} on {goal} had no exposure "
            "counted (the store was emptied or reset while visitors came back, or one "
            "visitor's conversion was counted twice); left out of its rates")


def _rows_of(name: str, totals: Mapping[CountKey, Tally]) -> dict[CountKey, Tally]:
    return {key: tally for key, tally in totals.items() if key.experiment == name}


def experiment_results(experiment: Experiment, totals: Mapping[CountKey, Tally], *,
                       now: datetime | None = None,
                       since: Mapping[str, str] = MappingProxyType({})) -> dict[str, Any]:
    """An experiment of the rules judged on its goals (and within its cells), its status
    as at `now` (UTC; the present by default); a goal that joined it under way from the
    day `since` says (learn/catalog.py)."""
    rows = _rows_of(experiment.name, totals)
    judged = _judge(plan_of(experiment, rows), experiment.goals, rows,
                    cells_of(experiment, rows), since, partial(plan_of, experiment))
    left: dict[str, int] = {}   # goals it no longer has (renamed, removed): their conversions, said
    for key, tally in rows.items():
        if key.goal != EXPOSURE and key.goal not in experiment.goals:
            left[key.goal] = left.get(key.goal, 0) + tally.conversions
    judged["warnings"] += [f"{goal} is no longer one of the experiment's goals: its {n:,} "
                           f"conversion{'' if n == 1 else 's'} counted so far are not judged "
                           "here (they are if it is put back)" for goal, n in sorted(left.items())]
    status = status_of(experiment, now or datetime.now(UTC))
    return {"name": experiment.name, "status": status, "per": per_of(experiment), **judged}


def stopped_results(name: str, totals: Mapping[CountKey, Tally],
                    recorded: tuple[str, ...] | None = None,
                    had: tuple[str, ...] | None = None,
                    since: Mapping[str, str] = MappingProxyType({})) -> dict[str, Any]:
    """An experiment counted in the store and since removed from the rules, judged from
    its counts: on the goals `recorded` for it while it ran (learn/catalog.py; if none
    were, every goal it has conversions for), its variants compared with the one named
    control (else the first by name), within periods when it had several; no split to
    check, the weights being gone. A variant counted and not among those it `had` when
    it stopped (as recorded) was removed before: listed as removed, never ahead."""
    rows = _rows_of(name, totals)
    variants = _variants_counted(rows)
    if not variants:   # every visitor counted was held out: nothing to compare
        return _counted_only(name, "stopped", rows)
    goals = (recorded if recorded is not None
             else tuple(sorted({key.goal for key in rows} - {EXPOSURE})))

    def plan_of_stopped(rows: Mapping[CountKey, Tally]) -> Plan:
        counted = _variants_counted(rows) or variants
        periods = {key.period for key in rows if key.goal == EXPOSURE}
        # every variant it still had, one no visitor reached too, as while it ran (all
        # counted when it had none of them, or was never recorded)
        kept = sorted(had) if had and not set(had).isdisjoint(counted) else counted
        control = "control" if "control" in kept else kept[0]
        return Plan(name, dict.fromkeys(kept, 1.0), tuple(v for v in counted if v not in kept),
                    control, len(periods) > 1, None, False)

    exposed = _exposed_by_cell(rows)
    cells = _most_exposed_and_others(exposed) if set(exposed) - {ALL_VISITORS} else []
    return {"name": name, "status": "stopped", "per": None,
            **_judge(plan_of_stopped(rows), goals, rows, cells, since, plan_of_stopped)}


def taken_warnings(name: str, totals: Mapping[CountKey, Tally]) -> list[str]:
    """What to say of the page views on which a rule filled the slot of experiment `name`
    for visitors it had counted (counted under TAKEN, by rule)."""
    taken: dict[str, tuple[int, str]] = {}
    for key, tally in totals.items():
        if key.experiment == TAKEN and key.variant == name:
            views, first = taken.get(key.cell, (0, key.day))
            taken[key.cell] = views + tally.exposures, min(first, key.day)
    return [f"rule {rule} filled the experiment's slot on {views:,} page "
            f"view{'' if views == 1 else 's'} of visitors it had counted (from {first} on): "
            "rules come first; what those visitors do still counts for the variant they "
            "were first shown, so the results mix in what the rule showed them (to leave them "
            f"out, give the rule `profile.variants.{name}: {{exists: false}}`, or run the "
            "experiment again under a new name)" for rule, (views, first) in sorted(taken.items())]


def _guarded(name: str, status: str, totals: Mapping[CountKey, Tally],
             judge: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One experiment's results; when they cannot be worked out, an entry saying so
    (and the log says why): the other experiments' results stand."""
    try:
        return judge()
    except Exception as exc:
        log.exception("the results of experiment %r could not be worked out", name)
        return _counted_only(name, status, _rows_of(name, totals), error=(
            f"its results could not be worked out: {type(exc).__name__}: {exc}"))


def results(ruleset: RuleSet, totals: Mapping[CountKey, Tally],
            recorded: GoalCatalog | None = None, *, now: datetime | None = None,
            unreadable: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """Every experiment of the rule set judged on its goals, then every experiment counted
    and since removed from the rules (stopped, judged on the goals `recorded` for it), and
    what each rule reached (then each rule counted and since removed). `unreadable`: what
    the store left out of an experiment's totals (Store.unreadable), said in its warnings."""
    recorded = recorded if recorded is not None else GoalCatalog()
    now = now or datetime.now(UTC)
    experiments = [_guarded(e.name, status_of(e, now), totals,
                            partial(experiment_results, e, totals, now=now,
                                    since=recorded.since_of(e.name)))
                   for e in ruleset.experiments]
    named = {e.name for e in ruleset.experiments}
    rule_names = {rule.name for rule in ruleset.rules}
    variants: dict[str, set[str]] = {}
    for key in totals:
        variants.setdefault(key.experiment, set()).add(key.variant)
    counted = set(variants)
    # a rule counts its visitors under its own name as the one variant: a removed rule's
    # counts are no stopped experiment
    gone = {name for name in counted - named - rule_names
            if not name.startswith(INTERNAL_PREFIX)}
    stopped = sorted(name for name in gone
                     if name in recorded.experiments or variants[name] != {name})
    experiments += [_guarded(name, "stopped", totals, partial(
        stopped_results, name, totals, recorded.experiments.get(name),
        recorded.variants_of(name), recorded.since_of(name))) for name in stopped]
    for entry in experiments:
        entry["warnings"] += taken_warnings(entry["name"], totals)
        entry["warnings"] += (unreadable or {}).get(entry["name"], [])
    return {"rules_version": ruleset.version, "experiments": experiments,
            "rules": rule_results(totals, counted & rule_names - named, goals=ruleset.goals,
                                  since=recorded.rules_since)
            + rule_results(totals, gone - set(stopped), removed=True, goals=ruleset.goals,
                           since=recorded.rules_since)}
