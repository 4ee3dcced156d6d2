"""Comparisons of one field that no value meets together. A rule with one would reach no
visitor, so the compiler refuses it where it is written: `{gte: 5, lt: 3}`, `{gte: 2}` of
an interest score (0..1), `{gt: 5, lt: 6}` of a count (whole numbers), `{in: [GB], not:
GB}`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..conditions import Between, Compare, Equals, Matcher, NotMatcher, OneOf
from ..fields import FieldSpec


def never(spec: FieldSpec, name: str, matchers: tuple[Matcher, ...], *,
          negated: bool = False) -> str | None:
    """Why `matchers` together hold for no value of the field, or None when some value
    meets them. `negated`: they are written under `not:`, which then holds for every one."""
    why = _no_number(spec, name, matchers) or _no_value(spec, name, matchers)
    if why is None:
        return None
    return why + (": not: of it holds for every value" if negated else
                  ": the condition never holds")


def _no_number(spec: FieldSpec, name: str, matchers: tuple[Matcher, ...]) -> str | None:
    bounds = [m for m in matchers if isinstance(m, (Compare, Between))
              or (isinstance(m, Equals) and spec.type == "number")]
    if not bounds:
        return None
    low, high = spec.span if spec.span is not None else (-math.inf, math.inf)
    low_open = high_open = False
    for bound in bounds:
        ends = ((bound.low, False, bound.high, False) if isinstance(bound, Between) else
                (bound.expected, False, bound.expected, False) if isinstance(bound, Equals)
                else (bound.limit, bound.op == "gt", math.inf, False)
                if bound.op in ("gt", "gte")
                else (-math.inf, False, bound.limit, bound.op == "lt"))
        if ends[0] > low or (ends[0] == low and ends[1]):
            low, low_open = ends[0], ends[1]
        if ends[2] < high or (ends[2] == high and ends[3]):
            high, high_open = ends[2], ends[3]
    if spec.whole:   # the whole numbers within: {gt: 5, lt: 6} has none
        if math.isfinite(low) and (low_open or low % 1):
            low, low_open = math.floor(low) + 1, False
        if math.isfinite(high) and (high_open or high % 1):
            high, high_open = math.ceil(high) - 1, False
    if low < high or (low == high and not (low_open or high_open)):
        return None
    return _told(spec, name, bounds)


def _no_value(spec: FieldSpec, name: str, matchers: tuple[Matcher, ...]) -> str | None:
    """Values named (equals, in) that the same condition then excludes (not)."""
    named = [m for m in matchers if isinstance(m, (Equals, OneOf))]
    refused = [m for m in matchers if isinstance(m, NotMatcher)
               and isinstance(m.inner, (Equals, OneOf))]
    if not named:
        return None
    excluded = frozenset().union(*(_choices(m.inner) for m in refused))
    choices = [_choices(m) for m in named]
    # A list field (language.tags) holds several values: `in` and `equals` each need one
    left = [c - excluded for c in choices] if spec.type == "list" else \
        [frozenset.intersection(*choices) - excluded]
    if all(left):
        return None
    return _told(spec, name, [*named, *refused])


def _told(spec: FieldSpec, name: str, matchers: Sequence[Matcher]) -> str:
    within = f"{name} is {spec.span_words()}, and " if spec.span or spec.whole else f"{name}: "
    said = " and ".join(m.describe() for m in matchers)
    return f"{within}no value {said}"


def _choices(matcher: Matcher) -> frozenset[Any]:
    """The values an `equals` or `in` names (folded as the field compares them)."""
    return frozenset([matcher.expected]) if isinstance(matcher, Equals) else \
        matcher.choices if isinstance(matcher, OneOf) else frozenset()
