"""Conditions: small callables compiled from `when` clauses; evaluation only calls them.

Each condition answers for a visitor, describes itself in a marketer's words (`explain`
prints it), and says why it failed for a visitor.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol

from ..classify.visitor import Visitor, field_getter
from .bucketing import bucket
from .schedule import Schedule


class Condition(Protocol):
    def __call__(self, visitor: Visitor) -> bool: ...
    def describe(self) -> str: ...
    def failure(self, visitor: Visitor) -> str | None: ...


class Matcher(Protocol):
    """Tests one field value."""

    def __call__(self, value: Any) -> bool: ...
    def describe(self) -> str: ...


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "unknown"
    return str(value)


def _as_written(expected: Any, written: Any) -> str:
    """A value as the rule has it (`GB`, not the folded `gb` compared), as text when the
    field is text (`10115` written for a postcode)."""
    if written is None:
        return _show(expected)
    return _show(str(written) if isinstance(expected, str) else written)


@dataclass(frozen=True)
class Equals:
    expected: Any   # folded: compared without case
    written: Any = dataclasses.field(default=None, compare=False)   # as the rule has it

    def __call__(self, value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return any(_fold(item) == self.expected for item in value)
        return _fold(value) == self.expected and value is not None

    def describe(self) -> str:
        return f"is {_as_written(self.expected, self.written)}"


@dataclass(frozen=True)
class OneOf:
    choices: frozenset[Any]   # folded: compared without case
    written: tuple[Any, ...] = dataclasses.field(default=(), compare=False)

    def __call__(self, value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return any(_fold(item) in self.choices for item in value)
        return value is not None and _fold(value) in self.choices

    def describe(self) -> str:
        if not self.written:
            return "is one of " + ", ".join(sorted(_show(c) for c in self.choices))
        text = any(isinstance(c, str) for c in self.choices)
        return "is one of " + ", ".join(_show(str(c) if text else c) for c in self.written)


class _Comparison(NamedTuple):
    test: Callable[[Any, Any], bool]
    words: str


_COMPARE: Final[MappingProxyType[str, _Comparison]] = MappingProxyType({
    "gt": _Comparison(operator.gt, "is more than"), "gte": _Comparison(operator.ge, "is at least"),
    "lt": _Comparison(operator.lt, "is less than"), "lte": _Comparison(operator.le, "is at most"),
})


@dataclass(frozen=True)
class Compare:
    op: str
    limit: float

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return _COMPARE[self.op].test(value, self.limit)

    def describe(self) -> str:
        return f"{_COMPARE[self.op].words} {self.limit:g}"


@dataclass(frozen=True)
class Between:
    low: float
    high: float

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return bool(self.low <= value <= self.high)

    def describe(self) -> str:
        return f"is between {self.low:g} and {self.high:g}"


@dataclass(frozen=True)
class Text:
    """contains / prefix / suffix, ignoring case; `contains` on a list tests membership."""

    kind: str
    text: str

    def __call__(self, value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return self.kind == "contains" and any(_fold(v) == self.text for v in value)
        if not isinstance(value, str):
            return False
        folded = value.casefold()
        if self.kind == "contains":
            return self.text in folded
        if self.kind == "prefix":
            return folded.startswith(self.text)
        return folded.endswith(self.text)

    def describe(self) -> str:
        verb = {"contains": "contains", "prefix": "starts with", "suffix": "ends with"}
        return f"{verb[self.kind]} {_show(self.text)}"


@dataclass(frozen=True)
class Matches:
    """A regular expression (RE2: linear time, so no pattern can hang a request).

    The pattern is compiled from UTF-8 bytes and values are searched as bytes: the same
    matches as with text, at a fifth of the cost (the RE2 binding maps every str offset
    back and forth otherwise)."""

    source: str
    pattern: Any   # re2 pattern compiled from the source's UTF-8 bytes

    def __call__(self, value: Any) -> bool:
        search = self.pattern.search
        if isinstance(value, str):
            return search(value.encode("utf-8", "replace")) is not None
        if isinstance(value, (list, tuple)):
            return any(isinstance(v, str) and search(v.encode("utf-8", "replace")) is not None
                       for v in value)
        return False

    def describe(self) -> str:
        return f"matches /{self.source}/"


def _known(value: Any) -> bool:
    """Whether the visitor has a value for the field."""
    return value not in (None, "", (), [])


@dataclass(frozen=True)
class Exists:
    expected: bool

    def __call__(self, value: Any) -> bool:
        return _known(value) is self.expected

    def describe(self) -> str:
        return "is known" if self.expected else "is unknown"


@dataclass(frozen=True)
class NotMatcher:
    """`geo.country: {not: GB}`: a value, and not that one. A visitor with no value for
    the field matches neither GB nor not GB (as every comparison); `not: {exists: true}`
    is about having one."""

    inner: Matcher

    def __call__(self, value: Any) -> bool:
        if not isinstance(self.inner, Exists) and not _known(value):
            return False
        return not self.inner(value)

    def describe(self) -> str:
        return "not (" + self.inner.describe() + ")"


@dataclass(frozen=True)
class AllMatchers:
    matchers: tuple[Matcher, ...]

    def __call__(self, value: Any) -> bool:
        return all(m(value) for m in self.matchers)

    def describe(self) -> str:
        return " and ".join(m.describe() for m in self.matchers)


@dataclass(frozen=True)
class FieldIs:
    """One field tested by one matcher: `geo.country is "gb"`."""

    field: str
    matcher: Matcher
    read: Callable[[Visitor], Any] = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "read", field_getter(self.field))

    def __call__(self, visitor: Visitor) -> bool:
        return self.matcher(self.read(visitor))

    def describe(self) -> str:
        return f"{self.field} {self.matcher.describe()}"

    def failure(self, visitor: Visitor) -> str | None:
        value = visitor.field(self.field)
        if self.matcher(value):
            return None
        shown = list(value) if isinstance(value, tuple) else value
        return f"{self.describe()} (was {_show(shown)})"


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]

    def __call__(self, visitor: Visitor) -> bool:
        return all(c(visitor) for c in self.conditions)

    def describe(self) -> str:
        if not self.conditions:
            return "everyone"
        return " and ".join(_group(c) for c in self.conditions)

    def failure(self, visitor: Visitor) -> str | None:
        for condition in self.conditions:
            failed = condition.failure(visitor)
            if failed is not None:
                return failed
        return None


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]

    def __call__(self, visitor: Visitor) -> bool:
        return any(c(visitor) for c in self.conditions)

    def describe(self) -> str:
        return " or ".join(_group(c) for c in self.conditions)

    def failure(self, visitor: Visitor) -> str | None:
        if self(visitor):
            return None
        return "none of: " + "; ".join(c.failure(visitor) or c.describe()
                                       for c in self.conditions)


@dataclass(frozen=True)
class Not:
    condition: Condition

    def __call__(self, visitor: Visitor) -> bool:
        return not self.condition(visitor)

    def describe(self) -> str:
        return f"not ({self.condition.describe()})"

    def failure(self, visitor: Visitor) -> str | None:
        return None if self(visitor) else f"{self.describe()} (it was)"


@dataclass(frozen=True)
class Segment:
    """A named audience, compiled once and shared by every rule that names it."""

    name: str
    condition: Condition

    def __call__(self, visitor: Visitor) -> bool:
        return self.condition(visitor)

    def describe(self) -> str:
        return f"segment {self.name}"

    def failure(self, visitor: Visitor) -> str | None:
        failed = self.condition.failure(visitor)
        return None if failed is None else f"segment {self.name}: {failed}"


@dataclass(frozen=True)
class Traffic:
    """A stable share of the audience: the same visitors are in on every visit."""

    percent: float
    salt: str

    def __call__(self, visitor: Visitor) -> bool:
        visitor_id = visitor.profile.visitor_id
        return bool(visitor_id) and bucket(self.salt, visitor_id) * 100 < self.percent

    def describe(self) -> str:
        return f"for {self.percent:g}% of the audience"

    def failure(self, visitor: Visitor) -> str | None:
        return None if self(visitor) else f"{self.describe()} (not in it)"


def fields_read(condition: object) -> set[str]:
    """Every visitor field a condition can read (for Vary and cache keys)."""
    if isinstance(condition, FieldIs):
        return {condition.field}
    if isinstance(condition, (AllOf, AnyOf)):
        return set().union(*(fields_read(c) for c in condition.conditions))
    if isinstance(condition, (Not, Segment)):
        return fields_read(condition.condition)
    if isinstance(condition, Schedule):
        return {"time.date", "geo.time_zone"}
    if isinstance(condition, Traffic):
        return {"profile.visitor_id"}
    return set()


def _group(condition: Condition) -> str:
    text = condition.describe()
    return f"({text})" if isinstance(condition, (AnyOf, AllOf)) and " " in text else text


def holds_with(condition: Condition, visitor: Visitor, field: str, value: Any) -> bool:
    """Whether `condition` holds for the visitor if `field` had `value` instead (the
    redirect loop guard asks what would happen on another path)."""
    if isinstance(condition, FieldIs):
        return condition.matcher(value) if condition.field == field else condition(visitor)
    if isinstance(condition, AllOf):
        return all(holds_with(c, visitor, field, value) for c in condition.conditions)
    if isinstance(condition, AnyOf):
        return any(holds_with(c, visitor, field, value) for c in condition.conditions)
    if isinstance(condition, Not):
        return not holds_with(condition.condition, visitor, field, value)
    if isinstance(condition, Segment):
        return holds_with(condition.condition, visitor, field, value)
    return condition(visitor)
