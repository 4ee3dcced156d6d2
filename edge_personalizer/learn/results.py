"""Results: the store's totals judged per experiment and goal (and per rule), as the
`/__ep/results` endpoint and `edge-personalizer report` give them.

An experiment that counts per cell (`per: segment`, or `per: [fields]`) is also judged
within each cell: for `per: segment`, each segment the rules name (and `other`, the
visitors in none), in the order of the `segments:` section. A visitor counts in one cell,
so the cells add up to the whole.

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
from dataclasses import dataclass
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
    EXPOSURE,
    FIXED_PERIOD,
    UNKNOWN_PERIOD,
    CountKey,
    Tally,
    variant_totals,
)
from .periods import in_periods, period_weighted_totals, periods_shown
from .rule_results import rule_results
from .stats import Counts, goal_result

log = logging.getLogger(__name__)

INTERNAL_PREFIX = "ep:"   # counts kept under such names are not experiments (AFFINITY)
POOLED = "variants"   # every variant's visitors together, against those held out
_ARM_KEYS = MappingProxyType({HOLDOUT: "held_out", POOLED: "experiment"})   # (their keys)
MAX_CELLS = 50   # per: [fields] cells judged one by one: the most exposed first


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


def _most_exposed(exposed: Mapping[str, int]) -> list[str]:
    return sorted(exposed, key=lambda cell: (-exposed[cell], cell))[:MAX_CELLS]


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
    return _most_exposed(exposed)


def clamped(rows: Mapping[CountKey, Tally], goal: str, *, by_day: bool = False
            ) -> tuple[dict[CountKey, Tally], dict[str, int]]:
    """`rows` with each variant's conversions on `goal` cut to its exposures, and per
    variant how many were cut: conversions with no exposure counted for them (a store
    emptied while visitors came back, or one visitor's conversion counted twice). Cut
    within each cell's period, where the variants are compared (and within each day for
    counts from before periods were kept, when `by_day`, as period-weighted totals take
    them); their value goes with them."""
    def group(key: CountKey) -> tuple[str, str, int, str]:
        day = key.day if by_day and key.period == UNKNOWN_PERIOD else ""
        return key.variant, key.cell, key.period, day

    exposed: dict[tuple[str, str, int, str], int] = {}
    converted: dict[tuple[str, str, int, str], int] = {}
    for key, tally in rows.items():
        if key.goal == EXPOSURE:
            exposed[group(key)] = exposed.get(group(key), 0) + tally.exposures
        elif key.goal == goal:
            converted[group(key)] = converted.get(group(key), 0) + tally.conversions
    left = {g: exposed.get(g, 0) for g, n in converted.items() if n > exposed.get(g, 0)}
    if not left:
        return dict(rows), {}
    cut: dict[str, int] = {}
    for g in left:
        cut[g[0]] = cut.get(g[0], 0) + converted[g] - left[g]
    out: dict[CountKey, Tally] = {}
    for key, tally in sorted(rows.items()):
        g = group(key)
        if key.goal != goal or g not in left or not tally.conversions:
            out[key] = tally
            continue
        kept = min(tally.conversions, left[g])
        left[g] -= kept
        share = kept / tally.conversions
        out[key] = Tally(tally.exposures, kept, tally.value_sum * share,
                         tally.value_sq_sum * share)
    return out, cut


@dataclass(frozen=True)
class Plan:
    """How an experiment's counts are judged."""

    name: str
    weights: Mapping[str, float]   # today's split (a stopped experiment: its variants, even)
    removed: tuple[str, ...]       # variants counted, no longer in the rules
    control: str
    weighted: bool                 # compared within periods (bandit, or splits edited)
    split_period: int | None       # fixed weights edited: the split the ratio is checked in
    check_split: bool              # False: no sample-ratio check (bandit, stopped)


def _variants_counted(rows: Mapping[CountKey, Tally]) -> list[str]:
    return sorted({key.variant for key in rows} - {HOLDOUT})


def _exposed(rows: Mapping[CountKey, Tally], *, held_out: bool = False) -> int:
    """The visitors counted in `rows`: in the experiment's variants, or those `held_out`."""
    return sum(t.exposures for k, t in rows.items()
               if k.goal == EXPOSURE and (k.variant == HOLDOUT) == held_out)


def _counted_only(name: str, status: str, rows: Mapping[CountKey, Tally],
                  **more: Any) -> dict[str, Any]:
    """An experiment's entry with its visitors counted, nothing judged (`more`: why)."""
    return {"name": name, "status": status, "per": None, "control": None,
            "exposed": _exposed(rows), "held_out": _exposed(rows, held_out=True),
            "goals": {}, "warnings": [], **more}


def _pooled(rows: Mapping[CountKey, Tally]) -> dict[CountKey, Tally]:
    """`rows` with every variant's counts as one (POOLED), the holdout's apart."""
    pooled: dict[CountKey, Tally] = {}
    for key, tally in rows.items():
        arm = key._replace(variant=HOLDOUT if key.variant == HOLDOUT else POOLED)
        held = pooled.get(arm)
        pooled[arm] = tally if held is None else held.plus(tally)
    return pooled


def _compared(plan: Plan, goal: str, kept: Mapping[CountKey, Tally], control: str,
              variants: set[str]) -> tuple[Mapping[str, Counts], dict[str, tuple[Counts, Counts]]]:
    """Each variant's totals on `goal` (within periods when the plan is weighted), and for
    each of `variants` shown in other periods than `control`, the two's totals over the
    periods both were shown in: the control's other periods (before a variant was added
    or renamed, after one was removed) say nothing of how the variant compares."""
    shown = periods_shown(kept)
    control_shown = shown.get(control, set())
    paired: dict[str, tuple[Counts, Counts]] = {}
    for variant in variants:
        if shown.get(variant, set()) != control_shown:
            both = _totals(plan, in_periods(kept, shown.get(variant, set()) & control_shown),
                           goal)
            paired[variant] = (both.get(control, Tally()), both.get(variant, Tally()))
    return _totals(plan, kept, goal), paired


def _totals(plan: Plan, rows: Mapping[CountKey, Tally], goal: str) -> Mapping[str, Counts]:
    """Each variant's totals on `goal` over `rows`: within periods when the plan is
    weighted."""
    if plan.weighted:
        return period_weighted_totals(rows, plan.name, goal)
    return variant_totals(rows, plan.name, goal)


def against_holdout(plan: Plan, goal: str, rows: Mapping[CountKey, Tally]
                    ) -> dict[str, Any] | None:
    """The experiment's visitors, every variant together as they were shared out, against
    those it held out (who saw the page as it is) on `goal`: what running it brought.
    Both counted (conversions beyond the exposures cut as for the variants), compared as a
    variant with the control in the periods both were in (None: no such period)."""
    pooled = _pooled(rows)
    shown = periods_shown(pooled)
    both = shown.get(HOLDOUT, set()) & shown.get(POOLED, set())
    if not both:
        return None
    kept, cut = clamped(in_periods(rows, both), goal, by_day=plan.weighted)
    judged = goal_result(_totals(plan, _pooled(kept), goal), {HOLDOUT: 1.0, POOLED: 1.0},
                         control=HOLDOUT).as_json()["variants"]
    counted = variant_totals(in_periods(pooled, both), plan.name, goal)
    unexposed = {HOLDOUT: cut.get(HOLDOUT, 0),
                 POOLED: sum(n for variant, n in cut.items() if variant != HOLDOUT)}
    for name, arm in judged.items():
        real = counted.get(name, Tally())
        few = arm["too_few_conversions"]
        arm.update(converted=real.conversions, value_sum=real.value_sum, removed=False,
                   unexposed_conversions=unexposed[name],
                   too_few_conversions=few and [_ARM_KEYS[n] for n in few])
    return {_ARM_KEYS[HOLDOUT]: judged[HOLDOUT], _ARM_KEYS[POOLED]: judged[POOLED]}


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


def judged_on(plan: Plan, goal: str, rows: Mapping[CountKey, Tally],
              weighted_by: str = "period") -> tuple[dict[str, Any], dict[str, int]]:
    """One goal's results over `rows` (the whole, or one cell's), and per variant the
    conversions cut for having no exposure counted. Each variant's `converted` and
    `value_sum` are what was counted; rates and comparisons, within periods when the plan
    is weighted, leave out the conversions cut."""
    holdout = against_holdout(plan, goal, rows)
    kept, cut = clamped(rows, goal, by_day=plan.weighted)
    rows, kept = _without_holdout(rows), _without_holdout(kept)
    totals, paired = _compared(plan, goal, kept, plan.control,
                               {*plan.weights, *plan.removed} - {plan.control})
    judged = goal_result(totals, plan.weights, control=plan.control, removed=plan.removed,
                         paired=paired).as_json()
    counted = variant_totals(rows, plan.name, goal)
    for name, variant in judged["variants"].items():
        real = counted.get(name, Tally())
        variant.update(converted=real.conversions, value_sum=real.value_sum,
                       unexposed_conversions=cut.get(name, 0),
                       removed=name in plan.removed)
    if not plan.check_split:
        judged.update(srm_p=None, srm=False)
    elif plan.split_period is not None:
        today = {k: t for k, t in rows.items() if k.period == plan.split_period}
        split = goal_result(variant_totals(today, plan.name, EXPOSURE), plan.weights,
                            control=plan.control).as_json()
        judged.update(srm_p=split["srm_p"], srm=split["srm"])
    if plan.weighted:
        judged["weighted_by"] = weighted_by
    if holdout is not None:
        judged["holdout"] = holdout
    return judged, cut


def _without_holdout(rows: Mapping[CountKey, Tally]) -> dict[CountKey, Tally]:
    return {key: tally for key, tally in rows.items() if key.variant != HOLDOUT}


def _judge(plan: Plan, goals: tuple[str, ...], rows: Mapping[CountKey, Tally],
           cells: list[str]) -> dict[str, Any]:
    by_cell: dict[str, dict[CountKey, Tally]] = {cell: {} for cell in cells}
    for key, tally in rows.items():
        held = by_cell.get(key.cell)
        if held is not None:
            held[key] = tally
    goals_judged: dict[str, Any] = {}
    warnings: list[str] = []
    for goal in goals:
        # the whole experiment: within each cell's periods (cells have weights of their own)
        judged, cut = judged_on(plan, goal, rows, "cell and period" if cells else "period")
        warnings += [_unexposed_warning(variant, n, goal) for variant, n in cut.items()]
        if cells:
            judged["segments"] = {
                cell: {"exposed": _exposed(cell_rows),
                       "held_out": _exposed(cell_rows, held_out=True),
                       **judged_on(plan, goal, cell_rows)[0]}
                for cell, cell_rows in by_cell.items()}
        goals_judged[goal] = judged
    return {"control": plan.control, "exposed": _exposed(rows),
            "held_out": _exposed(rows, held_out=True), "goals": goals_judged,
            "warnings": warnings}


def _unexposed_warning(variant: str, n: int, goal: str) -> str:
    return (f"{variant}: {n:,} conversion{'' if n == 1 else 's'} on {goal} had no exposure "
            "counted (the store was emptied or reset while visitors came back, or one "
            "visitor's conversion was counted twice); left out of its rates")


def _rows_of(name: str, totals: Mapping[CountKey, Tally]) -> dict[CountKey, Tally]:
    return {key: tally for key, tally in totals.items() if key.experiment == name}


def experiment_results(experiment: Experiment, totals: Mapping[CountKey, Tally], *,
                       now: datetime | None = None) -> dict[str, Any]:
    """An experiment of the rules judged on its goals (and within its cells), its status
    as at `now` (UTC; the present by default)."""
    rows = _rows_of(experiment.name, totals)
    judged = _judge(plan_of(experiment, rows), experiment.goals, rows,
                    cells_of(experiment, rows))
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
                    had: tuple[str, ...] | None = None) -> dict[str, Any]:
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
    periods = {key.period for key in rows if key.goal == EXPOSURE}
    kept = [v for v in variants if had is None or v in had] or variants
    control = "control" if "control" in kept else kept[0]
    plan = Plan(name, dict.fromkeys(kept, 1.0), tuple(v for v in variants if v not in kept),
                control, len(periods) > 1, None, False)
    exposed = _exposed_by_cell(rows)
    cells = _most_exposed(exposed) if set(exposed) - {ALL_VISITORS} else []
    return {"name": name, "status": "stopped", "per": None,
            **_judge(plan, goals, rows, cells)}


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
            recorded: GoalCatalog | None = None, *,
            now: datetime | None = None) -> dict[str, Any]:
    """Every experiment of the rule set judged on its goals, then every experiment counted
    and since removed from the rules (stopped, judged on the goals `recorded` for it), and
    what each rule reached (then each rule counted and since removed)."""
    recorded = recorded if recorded is not None else GoalCatalog()
    now = now or datetime.now(UTC)
    experiments = [_guarded(e.name, status_of(e, now), totals,
                            partial(experiment_results, e, totals, now=now))
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
        recorded.variants_of(name))) for name in stopped]
    return {"rules_version": ruleset.version, "experiments": experiments,
            "rules": rule_results(totals, counted & rule_names - named)
            + rule_results(totals, gone - set(stopped), removed=True)}
