"""One goal's judgement of an experiment's counts: how the experiment is judged (Plan),
each variant's rate and value on the goal against the control's, and the experiment's
visitors against those it held out.

In: an experiment's rows (CountKey -> Tally) and its Plan. Out: the goal's results as
`/__ep/results` gives them. Conversions beyond a variant's exposures are cut from its
rates (`clamped`); counts kept within periods (a bandit's versions, edited splits, cells)
are compared within them (learn/periods.py); a goal that joined the experiment under way
judges the visitors exposed from its day on (`from_day`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..rules.model import HOLDOUT
from .counters import EXPOSURE, UNKNOWN_PERIOD, CountKey, Tally, variant_totals
from .periods import in_periods, period_weighted_totals, periods_shown
from .stats import Counts, goal_result

POOLED = "variants"   # every variant's visitors together, against those held out
_ARM_KEYS = MappingProxyType({HOLDOUT: "held_out", POOLED: "experiment"})   # (their keys)


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


def exposed(rows: Mapping[CountKey, Tally], *, held_out: bool = False) -> int:
    """The visitors counted in `rows`: in the experiment's variants, or those `held_out`."""
    return sum(t.exposures for k, t in rows.items()
               if k.goal == EXPOSURE and (k.variant == HOLDOUT) == held_out)


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
    or renamed, after one was removed) say nothing of how the variant compares. Weighted,
    every variant is paired with the control so, each period weighing by the two's
    visitors there (periods.period_weighted_totals' `pair`)."""
    shown = periods_shown(kept)
    control_shown = shown.get(control, set())
    paired: dict[str, tuple[Counts, Counts]] = {}
    for variant in variants:
        if plan.weighted:
            pair = _totals(plan, kept, goal, pair=(control, variant))
            paired[variant] = (pair.get(control, Tally()), pair.get(variant, Tally()))
        elif shown.get(variant, set()) != control_shown:
            both = _totals(plan, in_periods(kept, shown.get(variant, set()) & control_shown),
                           goal)
            paired[variant] = (both.get(control, Tally()), both.get(variant, Tally()))
    return _totals(plan, kept, goal), paired


def _totals(plan: Plan, rows: Mapping[CountKey, Tally], goal: str,
            pair: tuple[str, str] | None = None) -> Mapping[str, Counts]:
    """Each variant's totals on `goal` over `rows`: within periods when the plan is
    weighted (each by the `pair`'s visitors there, when given)."""
    if plan.weighted:
        return period_weighted_totals(rows, plan.name, goal, pair=pair)
    return variant_totals(rows, plan.name, goal)


def against_holdout(plan: Plan, goal: str, rows: Mapping[CountKey, Tally]
                    ) -> dict[str, Any] | None:
    """The experiment's visitors, every variant together as they were shared out, against
    those it held out (who saw the page as it is) on `goal`: what running it brought.
    Both counted (conversions beyond the exposures cut as for the variants), compared as a
    variant with the control in the periods both were in (None: no such period), each
    period weighing by n1 * n2 / (n1 + n2) of the two's visitors there."""
    pooled = _pooled(rows)
    shown = periods_shown(pooled)
    both = shown.get(HOLDOUT, set()) & shown.get(POOLED, set())
    if not both:
        return None
    kept, cut = clamped(in_periods(rows, both), goal, by_day=plan.weighted)
    # Weighted, each period by the two's visitors there, as a variant against the control
    # (_compared): a holdout edited under way held out shares that differ by period, and
    # one where it held out a handful says little of what holding out costs.
    totals = _totals(plan, _pooled(kept), goal, pair=(HOLDOUT, POOLED))
    judged = goal_result(totals, {HOLDOUT: 1.0, POOLED: 1.0},
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


def from_day(rows: Mapping[CountKey, Tally], day: str | None) -> Mapping[CountKey, Tally]:
    """`rows` as a goal that joined the experiment under way judges it, from `day` on
    (learn/catalog.py): the visitors exposed since, whose conversions alone count on it.
    All of them for a goal it had from the start (None)."""
    return rows if day is None else {key: t for key, t in rows.items() if key.day >= day}
