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
    meets them. `negated`: they are written under `not:`, which then holds for every value
    (or for none, when they hold for every one: `{not: {between: [0, 23]}}` of an hour)."""
    why = _no_number(spec, name, matchers) or _no_value(spec, name, matchers)
    if why is not None:
        return why + (": not: of it holds for every value" if negated else
                      ": the condition never holds")
    every = _every_number(spec, name, matchers) if negated else None
    return None if every is None else every + ": not: of it holds for none"


_Range = tuple[float, bool, float, bool]   # low, open at low, high, open at high


def _within(spec: FieldSpec, bounds: Sequence[Matcher], start: _Range) -> _Range:
    """The values `bounds` together leave of `start` (its whole numbers, for such a field)."""
    low, low_open, high, high_open = start
    for bound in bounds:
        ends = ((bound.low, False, bound.high, False) if isinstance(bound, Between) else
                (bound.expected, False, bound.expected, False) if isinstance(bound, Equals)
                else (bound.limit, bound.op == "gt", math.inf, False)
                if isinstance(bound, Compare) and bound.op in ("gt", "gte")
                else (-math.inf, False, bound.limit, bound.op == "lt")
                if isinstance(bound, Compare) else start)
        if ends[0] > low or (ends[0] == low and ends[1]):
            low, low_open = ends[0], ends[1]
        if ends[2] < high or (ends[2] == high and ends[3]):
            high, high_open = ends[2], ends[3]
    if spec.whole:   # the whole numbers within: {gt: 5, lt: 6} has none
        if math.isfinite(low) and (low_open or low % 1):
            low, low_open = math.floor(low) + 1, False
        if math.isfinite(high) and (high_open or high % 1):
            high, high_open = math.ceil(high) - 1, False
    return low, low_open, high, high_open


def _no_number(spec: FieldSpec, name: str, matchers: tuple[Matcher, ...]) -> str | None:
    bounds = [m for m in matchers if isinstance(m, (Compare, Between))
              or (isinstance(m, Equals) and spec.type == "number")]
    if not bounds:
        return None
    low, high = spec.span if spec.span is not None else (-math.inf, math.inf)
    low, low_open, high, high_open = _within(spec, bounds, (low, False, high, False))
    if low > high or (low == high and (low_open or high_open)):
        return _told(spec, name, bounds)
    # a number field's `in` beside bounds: one of its values must lie within them
    listed = [m for m in matchers if isinstance(m, OneOf)] if spec.type == "number" else []
    for one_of in listed:
        if not any((low < value or low == value and not low_open)
                   and (value < high or value == high and not high_open)
                   for value in one_of.choices):
            return _told(spec, name, [one_of, *bounds])
    return None


def _every_number(spec: FieldSpec, name: str, matchers: tuple[Matcher, ...]) -> str | None:
    """Why comparisons hold for every value of a field with a span (`{gte: 0}` of a count),
    or None."""
    if spec.span is None or not matchers \
            or not all(isinstance(m, (Compare, Between)) for m in matchers):
        return None
    low, low_open, high, high_open = _within(spec, matchers,
                                             (-math.inf, False, math.inf, False))
    least, most = spec.span
    if (low < least or low == least and not low_open) \
            and (high > most or high == most and not high_open):
        said = " and ".join(m.describe() for m in matchers)
        return f"{name} is {spec.span_words()}, and every value {said}"
    return None


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
