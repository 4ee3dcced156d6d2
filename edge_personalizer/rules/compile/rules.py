"""The `rules` sections -> Rule values in rank order (priority, then file, then position)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from ...classify.visitor import WEEKDAYS
from ...errors import RuleError
from ..conditions import AllOf, Condition, Traffic
from ..fields import DAY_GROUPS, DAYS_EXPECTED, FULL_DAY_NAMES, as_written, days_named, suggest
from ..loader import KeyPath, RuleFile, RuleFiles
from ..model import Rule
from ..schedule import Schedule
from .actions import Actions, compile_then
from .conditions import compile_condition
from .context import (
    CompileContext,
    Invalid,
    Invalids,
    Reported,
    each,
    kind_of,
    name_problem,
    percentage,
)

RULE_KEYS: Final = ("name", "when", "then", "priority", "schedule", "traffic", "description")
# A priority only orders the rules: a million either way orders any rule set (one of 400
# digits validated, ordering rules as 1 and -1 would)
MAX_PRIORITY: Final = 1_000_000
_SCHEDULE_KEYS: Final = ("start", "end", "days", "hours")
_DATE_AND_TIME: Final = re.compile(r"(\d{4}-\d{2}-\d{2})[T ]\d{1,2}:\d{2}")
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HOURS: Final = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Written:
    """Where a compiled rule was written, for errors found after compiling it."""

    rule_file: RuleFile
    at: KeyPath


class _Compiled(NamedTuple):
    """A valid rule before its rank is known (each Rule is built once, ranked)."""

    name: str
    condition: Condition
    priority: int
    source: str
    actions: Actions
    written: str   # the name as written (a rule filling a slot by a field: NAME.VALUE each)


@dataclass(frozen=True)
class WrittenRule:
    """What one entry of a rules section compiles to, before its name is checked against
    the other files' rules and it is ranked."""

    position: int
    name: str | None                       # None: no valid name (its errors say why)
    where: str                             # file:line
    name_mark: tuple[int, int] | None      # where an error about its name points
    errors: tuple[RuleError, ...]
    compiled: tuple[_Compiled, ...]        # none when it has errors


@dataclass(frozen=True)
class FileRules:
    """One file's rules section, compiled: what a reload reuses while the file, and what
    its rules read from the other files, stay the same."""

    path: Path
    errors: tuple[RuleError, ...]          # about the section itself
    written: tuple[WrittenRule, ...]
    # The marks later checks (redirect circles) may point at, without the whole file's.
    marks: RuleFile
    # Each fragment file its rules show, as it was read (its HTML, or why it cannot be).
    fragments: Mapping[str, tuple[str, str] | str]


def compile_rules_sections(ctx: CompileContext, rule_files: RuleFiles
                           ) -> tuple[tuple[Rule, ...], dict[str, Written]]:
    """Every valid rule, ranked, and where each was written."""
    return rank_rules(ctx, [compile_file_rules(ctx, rule_file)
                            for rule_file in rule_files.files if "rules" in rule_file.sections])


def compile_file_rules(ctx: CompileContext, rule_file: RuleFile) -> FileRules:
    """One file's rules section on its own: its errors are kept with it, not in ctx."""
    section = rule_file.sections["rules"]
    errors_before = len(ctx.errors)
    ctx.fragments_shown = set()
    written: list[WrittenRule] = []
    keep: dict[KeyPath, tuple[int, int]] = {}
    if not isinstance(section, list):
        ctx.fail(rule_file, f"rules is a list of rules (- name: ...), got {kind_of(section)}",
                 ("rules",), None)
        section = []
    section_errors = tuple(ctx.errors[errors_before:])
    del ctx.errors[errors_before:]
    for position, raw in enumerate(section):
        at: KeyPath = ("rules", position)
        name, compiled = _rule(ctx, rule_file, raw, at)
        written.append(WrittenRule(
            position, name, f"{rule_file.path}:{rule_file.line_of(at)}",
            rule_file.mark_of((*at, "name")), tuple(ctx.errors[errors_before:]),
            tuple(compiled)))
        del ctx.errors[errors_before:]
        if any(rule.actions.redirect is not None for rule in compiled):
            keep.update(rule_file.marks_along((*at, "then", "redirect")))
    fragments = {path: ctx.fragments[path] for path in sorted(ctx.fragments_shown)}
    ctx.fragments_shown = None
    return FileRules(rule_file.path, section_errors, tuple(written),
                     RuleFile(rule_file.path, MappingProxyType({}), MappingProxyType(keep)),
                     MappingProxyType(fragments))


def rank_rules(ctx: CompileContext, files: Sequence[FileRules]
               ) -> tuple[tuple[Rule, ...], dict[str, Written]]:
    """The files' rules in rank order (priority, then file, then position), each name used
    once; the errors of each file recorded in ctx, in the order they were written."""
    compiled: list[tuple[tuple[int, int, int], _Compiled]] = []
    written: dict[str, Written] = {}
    seen: dict[str, str] = {}
    for file_index, file_rules in enumerate(files):
        ctx.errors.extend(file_rules.errors)
        for entry in file_rules.written:
            if entry.name is not None and entry.name in seen:
                mark = entry.name_mark
                ctx.errors.append(RuleError(
                    f"rule '{entry.name}': the name is already used by the rule at "
                    f"{seen[entry.name]}", source=file_rules.path,
                    line=mark[0] if mark else None, column=mark[1] if mark else None))
                continue
            if entry.name is not None:
                seen[entry.name] = entry.where
            ctx.errors.extend(entry.errors)
            at: KeyPath = ("rules", entry.position)
            for rule in entry.compiled:
                compiled.append(((-rule.priority, file_index, entry.position), rule))
                written[rule.name] = Written(file_rules.marks, at)
    compiled.sort(key=lambda item: item[0])
    return tuple(Rule(name=rule.name, condition=rule.condition, rank=rank,
                      priority=rule.priority, source=rule.source, slots=rule.actions.slots,
                      redirect=rule.actions.redirect, headers=rule.actions.headers,
                      cookies=rule.actions.cookies, written=rule.written)
                 for rank, (_, rule) in enumerate(compiled)), written


def _rule(ctx: CompileContext, rule_file: RuleFile, raw: Any, at: KeyPath
          ) -> tuple[str | None, list[_Compiled]]:
    """The rule's name and the rule (one per value of a slot filled `by:` a field), or none
    if it is invalid."""
    if not isinstance(raw, dict):
        ctx.fail(rule_file, f"a rule is a mapping (name, when, then), got {kind_of(raw)}", at,
                 None)
        return None, []
    name = raw.get("name")
    problem = name_problem("rule", name)
    if problem is not None or not isinstance(name, str):
        ctx.fail(rule_file, problem or "", (*at, "name"), None)
        return None, []
    label = f"rule '{name}'"
    where = f"{rule_file.path}:{rule_file.line_of(at)}"
    errors_before = len(ctx.errors)
    for key in raw:
        if key not in RULE_KEYS:
            # A slot written beside then: rather than under it is an indentation mistake.
            under_then = (f"; {key!r} is a slot: indent it under then:" if key in ctx.slots
                          else "; a rule's visitors are chosen by when: (as an "
                               "experiment's by audience:)" if key == "audience"
                          else suggest(str(key), RULE_KEYS))
            ctx.fail(rule_file, f"unknown key {key!r}; a rule has "
                     + ", ".join(RULE_KEYS) + under_then,
                     (*at, str(key)), label, on_key=True)
    parts = _condition_parts(ctx, rule_file, raw, at, label, name)
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        ctx.fail(rule_file, f"priority is a whole number from {-MAX_PRIORITY:,} to "
                 f"{MAX_PRIORITY:,} (higher goes first)", (*at, "priority"), label)
    then = raw.get("then")
    if not isinstance(then, dict) or not then:
        said = ("every rule needs `then`: what it shows, per slot" if then is None else
                "then: {} changes nothing: name a slot and what it shows, e.g. "
                "{hero: fragments/sale.html}" if then == {} else
                f"then is a mapping of slots to what they show, not {kind_of(then)}")
        ctx.fail(rule_file, said, (*at, "then") if "then" in raw else at, label)
        return name, []
    rules = []
    for suffix, more, shown in _by_field(ctx, rule_file, then, (*at, "then"), label):
        actions = compile_then(ctx, rule_file, shown, (*at, "then"), label)
        if actions is None or len(ctx.errors) > errors_before:
            return name, []
        every = [*parts, *more]
        condition = every[0] if len(every) == 1 else AllOf(tuple(every))
        rules.append(_Compiled(name + suffix, condition, int(priority), where, actions, name))
    return name, rules


def _by_field(ctx: CompileContext, rule_file: RuleFile, then: dict[Any, Any], at: KeyPath,
              label: str) -> list[tuple[str, list[Condition], dict[Any, Any]]]:
    """A slot written `{by: FIELD, variants: {VALUE: content, ...}}` shows the content of
    the visitor's value of FIELD: one rule `NAME.VALUE` a value, with `FIELD: VALUE` added
    to its conditions. Without such a slot, the rule as written."""
    by_slots = [slot for slot, spec in then.items() if isinstance(spec, dict) and "by" in spec]
    if not by_slots:
        return [("", [], then)]
    slot = by_slots[0]
    spec = then[slot]
    slot_at: KeyPath = (*at, str(slot))
    if len(by_slots) > 1 or set(spec) != {"by", "variants"} or not isinstance(spec["by"], str) \
            or not isinstance(spec["variants"], dict) or not spec["variants"]:
        ctx.fail(rule_file, "a slot filled by a field is {by: profile.predicted_top, "
                 "variants: {running: fragments/running.html, ...}}, one such slot a rule",
                 slot_at, label)
        return []
    out = []
    for value, content in spec["variants"].items():
        value_at: KeyPath = (*slot_at, "variants", str(value))
        try:
            condition = compile_condition(ctx, rule_file, {spec["by"]: value}, value_at, label)
        except Invalid as exc:
            ctx.reject(rule_file, exc, label)
            return []
        except Reported:
            return []
        out.append((f".{value}", [condition], {**then, slot: content}))
    return out


def _condition_parts(ctx: CompileContext, rule_file: RuleFile, raw: dict[Any, Any],
                     at: KeyPath, label: str, name: str) -> list[Condition]:
    builders: dict[str, Callable[[], Condition]] = {
        "when": lambda: compile_condition(ctx, rule_file, raw["when"], (*at, "when"), label),
        "schedule": lambda: compile_schedule(raw["schedule"], (*at, "schedule")),
        "traffic": lambda: _traffic(raw["traffic"], name, (*at, "traffic")),
    }
    parts: list[Condition] = []
    for key, build in builders.items():
        if key not in raw:
            continue
        try:
            parts.append(build())
        except Invalid as exc:
            ctx.reject(rule_file, exc, label)
        except Invalids as several:   # (each mistake of a schedule)
            for one in several.errors:
                ctx.reject(rule_file, one, label)
        except Reported:
            pass
    return parts


def _date(value: Any, at: KeyPath) -> date:
    if isinstance(value, datetime):   # (YAML reads 2026-12-01T10:00:00 so)
        if value.tzinfo is None and value.time() == datetime.min.time():
            return value.date()   # midnight: the day itself
        raise _timed(str(value), value.date(), at)
    if isinstance(value, date):
        return value
    text = str(value)
    try:
        if not _DAY.fullmatch(text):   # (date.fromisoformat reads 20261224 and 2026-W52-4)
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        day = _DATE_AND_TIME.match(text)
        if day is not None:
            raise _timed(text, day.group(1), at) from exc
        reason = f" ({exc})" if _DAY.fullmatch(text) else ""   # (2026-11-31)
        raise Invalid(f"{value!r} is not a date{reason}; write a day as YYYY-MM-DD, e.g. "
                      "2026-12-24", at) from exc


def _timed(value: str, day: object, at: KeyPath) -> Invalid:
    return Invalid(f"{value} has a time of day, and a schedule's start and end are days: "
                   f'write {day}, and the hours as hours: "10:00-18:00"', at)


def compile_schedule(raw: Any, at: KeyPath, kind: str = "rule") -> Schedule:
    """A rule's or an experiment's (`kind`) schedule; Invalids naming each of its
    mistakes."""
    if not isinstance(raw, dict) or not raw:
        raise Invalid("schedule is a mapping: start, end, days, hours", at)
    errors = [Invalid(f"unknown schedule key {key!r}; expected start, end, days, hours"
                      + suggest(key, _SCHEDULE_KEYS), (*at, key))
              for key in sorted(str(key) for key in raw if key not in _SCHEDULE_KEYS)]
    readers: dict[str, Callable[[Any, KeyPath], Any]] = {
        "start": _date, "end": _date, "hours": _hours, "days": _days}
    read: dict[str, Any] = {}
    for key, reader in readers.items():
        if key in raw:
            try:
                read[key] = reader(raw[key], (*at, key))
            except Invalid as exc:
                errors.append(exc)
            except Invalids as several:   # (every wrong day of a list)
                errors += several.errors
    start, end = read.get("start"), read.get("end")
    if start and end and start > end:
        errors.append(Invalid("the schedule ends before it starts", (*at, "end")))
    elif start and end and read.get("days") and not _any_day(start, end, read["days"]):
        named = ", ".join(day for day in WEEKDAYS if day in read["days"])
        errors.append(Invalid(f"no date from {start} to {end} falls on {named}, so the {kind} "
                              "would never be on", (*at, "days")))
    if errors:
        raise Invalids(errors)
    return Schedule(start=start, end=end, days=read.get("days", frozenset()),
                    hours=read.get("hours"))


def _any_day(start: date, end: date, days: frozenset[str]) -> bool:
    """Whether a date from `start` to `end` falls on one of `days`."""
    return any(WEEKDAYS[(start + timedelta(days=n)).weekday()] in days
               for n in range(min((end - start).days + 1, 7)))


def _days(raw: Any, at: KeyPath) -> frozenset[str]:
    if not isinstance(raw, (str, list)):
        raise Invalid("days is a day (mon..sun, weekdays, weekend) or a list of them", at)
    if raw == []:
        raise Invalid("days: [] names no day, so the rule would never be on; for every day, "
                      "leave days out", at)
    def named(i: int, day: Any) -> tuple[str, ...]:
        days = days_named(str(day))
        if not days:
            raise Invalid(f"unknown day {as_written(day)}; expected {DAYS_EXPECTED}"
                          + suggest(str(day), (*WEEKDAYS, *DAY_GROUPS, *FULL_DAY_NAMES)),
                          (*at, i))
        return days

    return frozenset(day for days in each(named, [raw] if isinstance(raw, str) else raw)
                     for day in days)


def _hours(raw: Any, at: KeyPath) -> tuple[int, int]:
    match = _HOURS.match(str(raw).strip())
    if not match:
        raise Invalid('hours are written "18:00-23:00"', at)
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    low, high = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or low > 24 * 60 or high > 24 * 60:
        raise Invalid(f"{raw!r} is not a time range (from 00:00 to 24:00)", at)
    if low == high:
        raise Invalid(f"hours {raw!r} start where they end: for all day, leave hours out", at)
    return low, high


def _traffic(raw: Any, name: str, at: KeyPath) -> Traffic:
    percent = percentage(raw, "traffic", at)
    if not 0 < percent <= 100:
        raise Invalid("traffic is a share of visitors above 0 and up to 100 percent, got "
                      + as_written(raw), at)
    return Traffic(percent=percent, salt=f"traffic:{name}")
