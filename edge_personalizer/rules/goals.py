"""The `goals:` section: what counts as a conversion, compiled into Goal values.

    goals:
      purchase:
        when: {request.path: /checkout/thanks}   # any condition rules accept
        status: [200]                             # optional: the response's status
        value: {query: total}                     # optional: or {header: X-Order-Total}
        window: 72h                               # attribution window (default 72h)
      newsletter: {when: {request.path: /newsletter, request.method: POST}}
      cta-click: {beacon: true}                   # the page's beacon may reach it
      refund: {}                                  # X-EP-Goal from the origin only
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from .conditions import Condition
from .durations import seconds_in
from .fields import as_written, suggest
from .model import DEFAULT_GOAL_WINDOW, Goal

GOAL_KEYS = ("when", "status", "value", "window", "beacon", "description")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
MAX_WINDOW = 90 * 86400.0
_T = TypeVar("_T")

# Compiles a condition mapping at a path of the file, reporting its own errors (None then).
ConditionCompiler = Callable[[Any, tuple[str | int, ...]], Condition | None]


class GoalInvalid(ValueError):
    """One mistake of a goal: what is wrong, and where in the file."""

    def __init__(self, message: str, at: tuple[str | int, ...], *, on_key: bool = False):
        super().__init__(message)
        self.at = at
        self.on_key = on_key


class GoalInvalids(ValueError):
    """A goal does not compile: each of its mistakes (none when its condition's errors
    were reported by the condition compiler)."""

    def __init__(self, errors: list[GoalInvalid]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


def compile_goal(name: Any, raw: Any, compile_condition: ConditionCompiler,
                 source: str) -> Goal:
    """The goal; GoalInvalids with every mistake of it."""
    at: tuple[str | int, ...] = ("goals", str(name))
    if not isinstance(name, str) or not _NAME.match(name):
        raise GoalInvalids([GoalInvalid("a goal's name is 1-64 letters, digits, '-' and '_'",
                                        at, on_key=True)])
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise GoalInvalids([GoalInvalid(
            "a goal is a mapping (when, status, value, window, beacon), or {} for one "
            "reached by the X-EP-Goal header only", at)])
    errors = [GoalInvalid(f"unknown key {key!r}; a goal has " + ", ".join(GOAL_KEYS)
                          + suggest(str(key), GOAL_KEYS), (*at, str(key)), on_key=True)
              for key in raw if key not in GOAL_KEYS]

    def part(read: Callable[[], _T], instead: _T) -> _T:
        try:
            return read()
        except GoalInvalid as exc:
            errors.append(exc)
            return instead

    beacon = part(lambda: _beacon(raw.get("beacon", False), (*at, "beacon")), False)
    statuses: frozenset[int] = part(lambda: _statuses(raw.get("status"), (*at, "status")),
                                    frozenset())
    no_value: tuple[str | None, str | None] = (None, None)
    query, header = part(lambda: _value(raw.get("value"), (*at, "value")), no_value)
    window = part(lambda: window_seconds(raw.get("window"), (*at, "window")),
                  DEFAULT_GOAL_WINDOW)
    when = compile_condition(raw["when"], (*at, "when")) if "when" in raw else None
    if errors or ("when" in raw and when is None):
        raise GoalInvalids(errors)
    return Goal(name=name, when=when, statuses=statuses, value_query=query,
                value_header=header, window_seconds=window, source=source, beacon=beacon)


def _beacon(raw: Any, at: tuple[str | int, ...]) -> bool:
    if not isinstance(raw, bool):
        raise GoalInvalid("beacon is true (the page's beacon may reach the goal) or false", at)
    return raw


def _statuses(raw: Any, at: tuple[str | int, ...]) -> frozenset[int]:
    if raw is None:
        return frozenset()
    items = raw if isinstance(raw, list) else [raw]
    wrong = [as_written(s) for s in items
             if not isinstance(s, int) or isinstance(s, bool) or not 100 <= s <= 599]
    if not items or wrong:
        raise GoalInvalid("status is an HTTP status (200) or a list of them ([200, 201])"
                          + (f"; no status: {', '.join(wrong)}" if wrong else ""), at)
    return frozenset(items)


def _value(raw: Any, at: tuple[str | int, ...]) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("query", "header"):
        raise GoalInvalid("value is {query: <parameter>} or {header: <response header>}", at)
    (kind, name), = raw.items()
    if not isinstance(name, str) or not name or (kind == "header" and not _HEADER.match(name)):
        what = "response header" if kind == "header" else "query parameter"
        raise GoalInvalid(f"value: {kind} names a {what}", (*at, kind))
    return (name, None) if kind == "query" else (None, name)


def window_seconds(raw: Any, at: tuple[str | int, ...]) -> float:
    """`72h`, `30m`, `7d` or `90s`: always with its unit (a bare 72 meant as hours would
    be 72 seconds, and count next to nothing); at most 90 days."""
    if raw is None:
        return DEFAULT_GOAL_WINDOW
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        written = as_written(raw)
        number = written if written == repr(raw) else "72"   # (not 400 digits thrice)
        raise GoalInvalid(f"window {written}: write it with its unit ({number}h, {number}m or "
                          f"{number}s; or days: 7d)", at)
    seconds = seconds_in(str(raw))
    if seconds is None:
        raise GoalInvalid(f"window {as_written(raw)}: write 30m, 72h or 7d", at)
    if not 0 < seconds <= MAX_WINDOW:
        raise GoalInvalid("window is more than 0 and at most 90 days", at)
    return seconds
