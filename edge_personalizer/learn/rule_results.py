"""What each rule reached: the visitors a rule's variant was shown to and, per goal, how
many of them converted (rules are not compared with a control; experiments are). A goal
that joined the rules once their visitors were counted judges them from its day on
(learn/catalog.py): its rate is over the visitors reached since."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from .counters import EXPOSURE, CountKey, Tally
from .judging import from_day
from .stats import rate_interval


def rule_results(totals: Mapping[CountKey, Tally], names: set[str], *,
                 removed: bool = False, goals: Collection[str] = (),
                 since: Mapping[str, str] = MappingProxyType({})) -> list[dict[str, Any]]:
    """What each rule's variants reached: exposures and, per goal (every one of `goals`,
    the rules', and any other it has conversions on), conversions and rate (`removed`:
    rules since removed from the rules, so marked; `since`: goal -> the day it judges the
    rules from, when it joined them late: its `exposed` and rate count the visitors
    reached from that day on)."""
    out = []
    for name in sorted(names):
        rows = {k: v for k, v in totals.items() if k.experiment == name}
        judged = sorted({*goals, *(k.goal for k in rows if k.goal != EXPOSURE)})
        variants: dict[str, Any] = {}
        for variant in sorted({k.variant for k in rows}):
            mine = {k: v for k, v in rows.items() if k.variant == variant}
            per_goal: dict[str, dict[str, Any]] = {}
            for goal in judged:
                counted = from_day(mine, since.get(goal))
                exposed = _exposed(counted)
                converted = sum(v.conversions for k, v in counted.items() if k.goal == goal)
                shown = min(converted, exposed)   # more than were exposed: see experiments
                low, high = rate_interval(shown, exposed) if exposed else (None, None)
                per_goal[goal] = {"converted": converted,
                                  "rate": shown / exposed if exposed else None,
                                  "rate_low": low, "rate_high": high}
                if goal in since:
                    per_goal[goal] |= {"since": since[goal], "exposed": exposed}
            variants[variant] = {"exposed": _exposed(mine), "goals": per_goal}
        out.append({"name": name, "variants": variants, "removed": removed})
    return out


def _exposed(rows: Mapping[CountKey, Tally]) -> int:
    return sum(v.exposures for k, v in rows.items() if k.goal == EXPOSURE)
