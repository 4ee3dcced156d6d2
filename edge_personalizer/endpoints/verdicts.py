"""Which variant is ahead on a goal's results, or why none is: what the dashboard, its
list and the text report name (from the results' JSON, so a tool reading /__ep/results
can tell the same)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def leader_of(goal: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """The variant ahead on a goal's results and its chance: the challenger most likely
    to beat control when that is above one half, the control when below; none when no
    comparison is made yet (or too few conversions on either side: stats.FEW_CONVERSIONS)
    or the best challenger and the control are even, nor when cells judged apart (`per:`)
    are decisively led by different ones (segment_leaders): rolled out to all, the one
    named over all would be the wrong one for some. A variant removed from the rules is
    no challenger: it can no longer be chosen."""
    if len(set(segment_leaders(goal).values())) > 1:
        return None, None
    control = goal["control"]
    challengers = _challengers(goal)
    chances = [(v["chance_to_beat_control"], name) for name, v in challengers.items()
               if v["chance_to_beat_control"] is not None and not v["too_few_conversions"]]
    if not chances:
        return None, None
    chance, name = max(chances)
    if chance == 0.5:
        return None, None
    leader, chance = (name, chance) if chance > 0.5 else (control, 1 - chance)
    # A challenger shown beside the control that the statistics cannot compare (a single
    # visitor of it where both were shown) may be ahead of the one named: then none is
    # named.
    best = goal["variants"][leader].get("rate")
    if best is not None and any(
            v["chance_to_beat_control"] is None and _shown_beside_control(v)
            and (v.get("rate") or 0.0) > best for v in challengers.values()):
        return None, None
    return leader, chance


def _challengers(goal: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The variants that may be chosen over the control: not it, not removed."""
    return {name: v for name, v in goal["variants"].items()
            if name != goal["control"] and not v.get("removed")}


def _shown_beside_control(variant: Mapping[str, Any]) -> bool:
    return bool(variant.get("compared_exposed", variant.get("exposed")))


def why_no_leader(goal: Mapping[str, Any] | None) -> str:
    """Why `leader_of` names no variant on a goal's results (its words in the list)."""
    if goal is None:
        return "no goal to judge it on"
    name = goal["control"]
    control = goal["variants"].get(name, {})
    challengers = list(_challengers(goal).values())
    if not control.get("exposed") or not any(v.get("exposed") for v in challengers):
        return "no visitors yet"
    if not control.get("converted") and not any(v.get("converted") for v in challengers):
        return "no conversions yet"
    beside = [v for v in challengers if _shown_beside_control(v)]
    if not beside:
        return f"no variant shown beside {name} yet"
    leaders = segment_leaders(goal)
    if len(set(leaders.values())) > 1:
        return "each segment its own: " + ", ".join(f"{cell} {name}"
                                                    for cell, name in leaders.items())
    if any(v["chance_to_beat_control"] == 0.5 for v in beside):
        return "none: even so far"
    return "not enough conversions yet"


# How likely a cell's leader must be to beat the other to speak against the one ahead over
# all: one cell's noise (a chance of 0.55) does not.
DECISIVE = 0.95


def segment_leaders(goal: Mapping[str, Any]) -> dict[str, str]:
    """The variant ahead in each cell judged apart (`per: segment` or `per: [fields]`),
    where one is, with a chance of at least DECISIVE."""
    leaders = {}
    for cell, judged in goal.get("segments", {}).items():
        leader, chance = leader_of({"control": goal["control"], **judged})
        if leader is not None and chance is not None and chance >= DECISIVE:
            leaders[cell] = leader
    return leaders
