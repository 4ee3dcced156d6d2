"""Which variant is ahead on a goal's results, or why none is."""

from __future__ import annotations

from typing import Any

from edge_personalizer.endpoints.verdicts import leader_of, segment_leaders, why_no_leader


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
    # a: one visitor beside the control, who converted (no comparison under two), b: 4 in
    # 9, the control 3 in 8.
    goal = _goal(a=None, b=0.605)
    goal["variants"]["a"] |= {"rate": 1.0, "compared_exposed": 1}
    goal["variants"]["b"] |= {"rate": 4 / 9, "compared_exposed": 9}
    goal["variants"]["control"]["rate"] = 3 / 8
    assert leader_of(goal) == (None, None)
    goal["variants"]["a"]["rate"] = 0.0   # none of a's converted: b is ahead all the same
    assert leader_of(goal) == ("b", 0.605)


def test_the_list_says_why_no_variant_is_ahead() -> None:
    goal = _goal(b=None)
    goal["variants"]["control"] |= {"exposed": 40, "converted": 0}
    goal["variants"]["b"] |= {"exposed": 67, "converted": 0, "compared_exposed": 67}
    assert why_no_leader(goal) == "no conversions yet"
    # a control that has none is no reason of its own: b's 19 may be judged against it
    goal["variants"]["b"]["converted"] = 19
    assert why_no_leader(goal) == "not enough conversions yet"
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


def test_segments_judged_apart_with_different_leaders_name_none_over_all() -> None:
    # A bandit per segment learnt discount for phones and freeship for the rest: over all,
    # "discount is ahead" had a marketer roll it out where it converts at a third.
    goal = _goal(discount=0.97, freeship=0.6)
    goal["segments"] = {"phones": _goal(discount=0.99, freeship=0.3),
                        "other": _goal(discount=0.2, freeship=0.98),
                        "new": _goal(discount=None, freeship=None),
                        "noisy": _goal(discount=0.4, freeship=0.45)}   # control, 0.6
    for judged in goal["segments"].values():
        del judged["control"]   # (the results name it once, for the whole goal)
    assert segment_leaders(goal) == {"phones": "discount", "other": "freeship"}
    assert leader_of(goal) == (None, None)
    assert why_no_leader({**goal, "variants": {
        name: {**v, "exposed": 100} for name, v in goal["variants"].items()}}) == \
        "each segment its own: phones discount, other freeship"
    # Segments that agree leave the one ahead over all named.
    goal["segments"]["other"] = goal["segments"]["phones"]
    assert leader_of(goal) == ("discount", 0.97)
