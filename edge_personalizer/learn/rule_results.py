"""What each rule reached: the visitors a rule's variant was shown to and, per goal, how
many of them converted (rules are not compared with a control; experiments are)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .counters import EXPOSURE, CountKey, Tally
from .stats import rate_interval


def rule_results(totals: Mapping[CountKey, Tally], names: set[str], *,
                 removed: bool = False) -> list[dict[str, Any]]:
    """What each rule's variants reached: exposures and, per goal, conversions and rate
    (`removed`: rules since removed from the rules, so marked)."""
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
                shown = min(converted, exposed)   # more than were exposed: see experiments
                low, high = rate_interval(shown, exposed) if exposed else (None, None)
                per_goal[goal] = {"converted": converted,
                                  "rate": shown / exposed if exposed else None,
                                  "rate_low": low, "rate_high": high}
            variants[variant] = {"exposed": exposed, "goals": per_goal}
        out.append({"name": name, "variants": variants, "removed": removed})
    return out
