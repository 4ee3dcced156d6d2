"""Plain data from the rule files -> an immutable RuleSet, or every error at once.

Each error names file, line, column and rule, says what is wrong, and suggests the likely
intended word for a misspelling. Fragment files are read here, so deciding for a visitor
does no I/O.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import re2

from ..errors import RuleError
from .conditions import (
    AllMatchers,
    AllOf,
    AnyOf,
    Between,
    Compare,
    Condition,
    Equals,
    Exists,
    FieldIs,
    Matcher,
    Matches,
    Not,
    NotMatcher,
    OneOf,
    Schedule,
    Segment,
    Text,
    Traffic,
    fields_read,
)
from .fields import FieldSpec, lookup, normalize, suggest, vary_headers
from .goals import GoalInvalid, compile_goal
from .loader import Path_, RuleFile, RuleFiles
from .model import (
    INJECTIONS,
    PAGE_ACTIONS,
    SLOT_ACTIONS,
    Content,
    Experiment,
    Goal,
    Redirect,
    Rule,
    RuleSet,
    Slot,
)
from .template import Template

RULE_KEYS = ("name", "when", "then", "priority", "schedule", "traffic", "description")
EXPERIMENT_KEYS = ("name", "slot", "slots", "audience", "holdout", "variants", "goals",
                   "description")
OPERATORS = ("equals", "in", "not", "gt", "gte", "lt", "lte", "between", "contains",
              "prefix", "suffix", "matches", "exists")
_LOGIC = ("all", "any", "not", "segment")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS = {"weekdays": WEEKDAYS[:5], "weekend": WEEKDAYS[5:]}
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_FORBIDDEN_HEADERS = frozenset({"connection", "content-length", "transfer-encoding", "host",
                                "set-cookie", "keep-alive", "upgrade", "te", "trailer"})
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_NAME_ISSUE = "names are letters, digits, '-' and '_'"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Invalid(Exception):
    """One error inside a compile step; the step is skipped, compiling goes on."""

    def __init__(self, message: str, at: Path_, *, on_key: bool = False) -> None:
        self.message = message
        self.at = at
        self.on_key = on_key


class _Reported(Exception):
    """Errors already recorded; the enclosing step stops without adding another."""


@dataclass
class _Context:
    directory: Path
    errors: list[RuleError] = field(default_factory=list)
    slots: dict[str, Slot] = field(default_factory=dict)
    interests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    segment_sources: dict[str, tuple[RuleFile, Path_, Any]] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    compiling: list[str] = field(default_factory=list)
    goals: dict[str, Goal] = field(default_factory=dict)

    def fail(self, rule_file: RuleFile, message: str, at: Path_, owner: str | None,
             *, on_key: bool = False) -> None:
        self.errors.append(rule_file.error(message, at, owner=owner, on_key=on_key))

    def reject(self, rule_file: RuleFile, exc: _Invalid, owner: str | None) -> None:
        self.fail(rule_file, exc.message, exc.at, owner, on_key=exc.on_key)


def _walk(rule_files: RuleFiles, section: str) -> Iterator[tuple[RuleFile, Any]]:
    for rule_file in rule_files.files:
        if section in rule_file.sections:
            yield rule_file, rule_file.sections[section]


def compile_rules(rule_files: RuleFiles) -> tuple[RuleSet, list[RuleError]]:
    """Compile every file; the RuleSet is only meant to serve when the error list is empty."""
    ctx = _Context(rule_files.directory)
    _collect_slots(ctx, rule_files)
    _collect_interests(ctx, rule_files)
    _collect_segments(ctx, rule_files)
    for name in list(ctx.segment_sources):
        _segment(ctx, name, None, None, ())
    _compile_goals(ctx, rule_files)
    rules = _compile_all_rules(ctx, rule_files)
    experiments = _compile_experiments(ctx, rule_files, rules)
    index, unindexed = _index(rules)
    fields: set[str] = set()
    for condition in [*(r.condition for r in rules), *(e.audience for e in experiments)]:
        fields |= fields_read(condition)
    for rule in rules:
        for content in rule.slots.values():
            if content.template is not None:
                fields |= content.template.fields
    for experiment in experiments:
        if len(experiment.weights) > 1:
            fields.add("profile.visitor_id")
    ruleset = RuleSet(
        version=rule_files.version, rules=rules, slots=MappingProxyType(dict(ctx.slots)),
        experiments=experiments, interests=MappingProxyType(dict(ctx.interests)),
        index=index, unindexed=unindexed,
        loaded_at=rule_files.loaded_at, file_count=len(rule_files.files),
        fields=frozenset(fields), vary=tuple(vary_headers(fields)),
        goals=MappingProxyType(dict(ctx.goals)))
    return ruleset, ctx.errors


# Sections


def _mapping(ctx: _Context, rule_file: RuleFile, value: Any, at: Path_,
             what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        ctx.fail(rule_file, f"{what} is a mapping (name: ...), got {_kind(value)}", at, None)
        return {}
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {dict: "a mapping", list: "a list", str: "text", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _collect_slots(ctx: _Context, rule_files: RuleFiles) -> None:
    for rule_file, section in _walk(rule_files, "slots"):
        for name, spec in _mapping(ctx, rule_file, section, ("slots",), "slots").items():
            at: Path_ = ("slots", name)
            if name in ctx.slots:
                ctx.fail(rule_file, f"slot {name!r} is defined twice", at, None)
                continue
            if name in (*INJECTIONS, *PAGE_ACTIONS):
                ctx.fail(rule_file, f"{name!r} is reserved for a page action; name the slot "
                         "differently", at, None, on_key=True)
                continue
            if not _NAME.match(str(name)):
                ctx.fail(rule_file, f"slot name {name!r}: {_NAME_ISSUE}", at, None)
                continue
            selector = f'[data-ep-slot="{name}"]'
            if spec is not None:
                if not isinstance(spec, dict) or set(spec) - {"selector", "tag", "description"}:
                    ctx.fail(rule_file, "a slot is {} (the data-ep-slot marker), {tag: div} "
                             '(the marker on that element: faster) or {selector: "css"}',
                             at, None)
                    continue
                if "tag" in spec:
                    tag = spec["tag"]
                    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", tag):
                        ctx.fail(rule_file, "tag is an element name such as div or section",
                                 (*at, "tag"), None)
                        continue
                    selector = f'{tag.lower()}[data-ep-slot="{name}"]'
                if "selector" in spec:
                    if not isinstance(spec["selector"], str) or not spec["selector"].strip():
                        ctx.fail(rule_file, "selector must be a CSS selector", (*at, "selector"),
                                 None)
                        continue
                    selector = spec["selector"].strip()
            ctx.slots[str(name)] = Slot(str(name), selector)


def _collect_interests(ctx: _Context, rule_files: RuleFiles) -> None:
    for rule_file, section in _walk(rule_files, "interests"):
        for name, patterns in _mapping(ctx, rule_file, section, ("interests",),
                                       "interests").items():
            at: Path_ = ("interests", name)
            if name in ctx.interests:
                ctx.fail(rule_file, f"interest {name!r} is defined twice", at, None)
            elif not isinstance(patterns, list) or not patterns or not all(
                    isinstance(p, str) and p.startswith("/") for p in patterns):
                ctx.fail(rule_file, "an interest is a list of path patterns such as "
                         '["/running", "/running/*"]', at, None)
            else:
                ctx.interests[str(name)] = tuple(patterns)


def _collect_segments(ctx: _Context, rule_files: RuleFiles) -> None:
    for rule_file, section in _walk(rule_files, "segments"):
        for name, spec in _mapping(ctx, rule_file, section, ("segments",), "segments").items():
            at: Path_ = ("segments", name)
            if name in ctx.segment_sources:
                ctx.fail(rule_file, f"segment {name!r} is defined twice", at, None)
            elif not isinstance(spec, dict) or set(spec) - {"when", "description"} \
                    or "when" not in spec:
                ctx.fail(rule_file, "a segment is {when: {...conditions...}}", at, None)
            else:
                ctx.segment_sources[str(name)] = (rule_file, (*at, "when"), spec["when"])


def _segment(ctx: _Context, name: str, rule_file: RuleFile | None, rule: str | None,
             at: Path_) -> Segment:
    if name in ctx.segments:
        return ctx.segments[name]
    source = ctx.segment_sources.get(name)
    if source is None:
        raise _Invalid(f"unknown segment {name!r}" + suggest(name, ctx.segment_sources), at)
    if name in ctx.compiling:
        cycle = " -> ".join([*ctx.compiling[ctx.compiling.index(name):], name])
        raise _Invalid(f"segments refer to each other in a circle: {cycle}", at)
    seg_file, seg_at, raw = source
    ctx.compiling.append(name)
    try:
        segment = Segment(name, _condition(ctx, seg_file, raw, seg_at, f"segment '{name}'"))
    except _Invalid as exc:
        ctx.reject(seg_file, exc, f"segment '{name}'")
        segment = Segment(name, AnyOf(()))   # reported; never matches
    except _Reported:
        segment = Segment(name, AnyOf(()))
    finally:
        ctx.compiling.pop()
    ctx.segments[name] = segment
    return segment


# Conditions


def _condition(ctx: _Context, rule_file: RuleFile, raw: Any, at: Path_,
               owner: str) -> Condition:
    if not isinstance(raw, dict) or not raw:
        raise _Invalid("conditions are a mapping of fields to values, e.g. "
                       "{geo.country: GB, device.type: mobile}", at)
    parts: list[Condition] = []
    failed = False
    for key, value in raw.items():
        try:
            parts.append(_clause(ctx, rule_file, str(key), value, (*at, key), owner))
        except _Invalid as exc:   # report it, and go on to find the clause's other errors
            ctx.reject(rule_file, exc, owner)
            failed = True
        except _Reported:
            failed = True
    if failed:
        raise _Reported()
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _clause(ctx: _Context, rule_file: RuleFile, key: str, value: Any, key_at: Path_,
            owner: str) -> Condition:
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise _Invalid(f"{key} takes a list of conditions", key_at)
        children = tuple(_condition(ctx, rule_file, item, (*key_at, i), owner)
                         for i, item in enumerate(value))
        return AllOf(children) if key == "all" else AnyOf(children)
    if key == "not":
        return Not(_condition(ctx, rule_file, value, key_at, owner))
    if key == "segment":
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) for n in names):
            raise _Invalid("segment takes a segment name or a list of names", key_at)
        found = tuple(_segment(ctx, n, rule_file, owner, key_at) for n in names)
        return found[0] if len(found) == 1 else AnyOf(found)
    return _field_condition(ctx, normalize(key), value, key_at)


def _field_condition(ctx: _Context, name: str, value: Any, at: Path_) -> Condition:
    spec, why = lookup(name)
    if spec is None:
        if name in OPERATORS:
            why = (f"{name!r} is an operator: it goes under a field, e.g. "
                   f"{{profile.visits: {{{name}: ...}}}}")
        elif "." not in name and suggest(name, _LOGIC):
            why = f"unknown field {name!r}" + suggest(name, _LOGIC)
        raise _Invalid(why, at, on_key=True)
    if name.startswith("profile.interests.") and ctx.interests:
        category = name[len("profile.interests."):]
        if category not in ctx.interests:
            raise _Invalid(f"unknown interest {category!r}; the interests section defines "
                           + ", ".join(sorted(ctx.interests)) + suggest(category, ctx.interests),
                           at, on_key=True)
    return FieldIs(name, _matcher(spec, name, value, at))


def _check_value(spec: FieldSpec, name: str, value: Any, at: Path_) -> Any:
    """A value a field can be compared with, folded for case-insensitive comparison."""
    if isinstance(value, (dict, list)) or value is None:
        raise _Invalid(f"{name}: expected a value, got {_kind(value)}", at)
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise _Invalid(f"{name} is true or false, got {value!r}", at)
        return value
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"{name} is a number, got {_kind(value)} {value!r}", at)
        return value
    text = str(value)
    if spec.values:
        allowed = {v.casefold(): v for v in spec.values}
        if text.casefold() not in allowed:
            raise _Invalid(f"unknown {name} {text!r}; expected "
                           + ", ".join(spec.values) + suggest(text, spec.values), at)
    return text.casefold()


def _number(value: Any, op: str, at: Path_) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _Invalid(f"{op} takes a number, got {_kind(value)}", at)
    return float(value)


def _text(value: Any, op: str, at: Path_) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
        raise _Invalid(f"{op} takes text, got {_kind(value)}", at)
    return str(value)


def _operator(spec: FieldSpec, name: str, op: str, value: Any, at: Path_) -> Matcher:
    numeric_ops = ("gt", "gte", "lt", "lte", "between")
    if op in numeric_ops and spec.type != "number":
        raise _Invalid(f"{op} compares numbers; {name} is {spec.type}", at)
    if op in ("prefix", "suffix", "matches") and spec.type not in ("string", "list"):
        raise _Invalid(f"{op} works on text; {name} is {spec.type}", at)
    if op == "equals":
        return Equals(_check_value(spec, name, value, at))
    if op == "in":
        if not isinstance(value, list) or not value:
            raise _Invalid("in takes a list of values", at)
        return OneOf(frozenset(_check_value(spec, name, v, (*at, i)) for i, v in enumerate(value)))
    if op == "not":
        return NotMatcher(_matcher(spec, name, value, at))
    if op in ("gt", "gte", "lt", "lte"):
        return Compare(op, _number(value, op, at))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise _Invalid("between takes two numbers: [low, high]", at)
        low, high = _number(value[0], op, at), _number(value[1], op, at)
        if low > high:
            raise _Invalid(f"between [{low:g}, {high:g}]: the low end is above the high end", at)
        return Between(low, high)
    if op in ("contains", "prefix", "suffix"):
        text = _text(value, op, at)
        if op == "contains" and spec.type == "list":
            return Text(op, text.casefold())
        return Text(op, text.casefold())
    if op == "matches":
        source = _text(value, op, at)
        try:
            pattern = re2.compile(source, _RE2_OPTIONS)
        except re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
                else str(exc)
            raise _Invalid(f"matches: not a usable regular expression ({detail}); "
                           "lookarounds and back-references are not supported", at) from exc
        return Matches(source, pattern)
    if op == "exists":
        if not isinstance(value, bool):
            raise _Invalid("exists takes true or false", at)
        return Exists(value)
    raise _Invalid(f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}"
                   + suggest(op, OPERATORS), at, on_key=True)


def _matcher(spec: FieldSpec, name: str, value: Any, at: Path_) -> Matcher:
    if isinstance(value, dict):
        if not value:
            raise _Invalid(f"{name}: empty condition", at)
        matchers = tuple(_operator(spec, name, str(op), v, (*at, op)) for op, v in value.items())
        return matchers[0] if len(matchers) == 1 else AllMatchers(matchers)
    if isinstance(value, list):
        if not value:
            raise _Invalid(f"{name}: empty list", at)
        return OneOf(frozenset(_check_value(spec, name, v, (*at, i))
                               for i, v in enumerate(value)))
    if spec.type == "list":
        return Text("contains", _text(value, name, at).casefold())
    return Equals(_check_value(spec, name, value, at))


# Rules


def _compile_all_rules(ctx: _Context, rule_files: RuleFiles) -> tuple[Rule, ...]:
    compiled: list[tuple[int, int, int, Rule]] = []
    seen: dict[str, str] = {}
    for file_index, (rule_file, section) in enumerate(_walk(rule_files, "rules")):
        if not isinstance(section, list):
            ctx.fail(rule_file, f"rules is a list of rules (- name: ...), got {_kind(section)}",
                     ("rules",), None)
            continue
        for position, raw in enumerate(section):
            at: Path_ = ("rules", position)
            rule = _rule(ctx, rule_file, raw, at, seen)
            if rule is not None:
                compiled.append((-rule.priority, file_index, position, rule))
    compiled.sort(key=lambda item: item[:3])
    return tuple(_with_rank(rule, rank) for rank, (*_, rule) in enumerate(compiled))


def _with_rank(rule: Rule, rank: int) -> Rule:
    return Rule(rule.name, rule.condition, rank, rule.priority, rule.source, rule.slots,
                rule.redirect, rule.headers, rule.cookies)


def _rule(ctx: _Context, rule_file: RuleFile, raw: Any, at: Path_,
          seen: dict[str, str]) -> Rule | None:
    if not isinstance(raw, dict):
        ctx.fail(rule_file, f"a rule is a mapping (name, when, then), got {_kind(raw)}", at,
                 None)
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        ctx.fail(rule_file, f"every rule needs a name ({_NAME_ISSUE})", (*at, "name"), None)
        return None
    label = f"rule '{name}'"
    where = f"{rule_file.path}:{rule_file.marks.get(at, (0, 0))[0]}"
    errors_before = len(ctx.errors)
    if name in seen:
        ctx.fail(rule_file, f"the name is already used by the rule at {seen[name]}",
                 (*at, "name"), label)
        return None
    seen[name] = where
    ok = True
    for key in raw:
        if key not in RULE_KEYS:
            ctx.fail(rule_file, f"unknown key {key!r}; a rule has "
                     + ", ".join(RULE_KEYS[:-1]) + suggest(str(key), RULE_KEYS),
                     (*at, str(key)), label, on_key=True)
            ok = False
    parts: list[Condition] = []
    if "when" in raw:
        parts += _guarded(ctx, rule_file, label, lambda: _condition(
            ctx, rule_file, raw["when"], (*at, "when"), label))
    if "schedule" in raw:
        parts += _guarded(ctx, rule_file, label, lambda: _schedule(raw["schedule"],
                                                                  (*at, "schedule")))
    if "traffic" in raw:
        parts += _guarded(ctx, rule_file, label, lambda: _traffic(raw["traffic"], name,
                                                                 (*at, "traffic")))
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        ctx.fail(rule_file, "priority is a whole number (higher goes first)",
                 (*at, "priority"), label)
        ok = False
    then = raw.get("then")
    if not isinstance(then, dict) or not then:
        ctx.fail(rule_file, "every rule needs `then`: what it shows, per slot",
                 (*at, "then") if "then" in raw else at, label)
        return None
    actions = _then(ctx, rule_file, then, (*at, "then"), label)
    if actions is None or not ok or len(ctx.errors) > errors_before:
        return None
    slots, redirect, headers, cookies = actions
    condition = parts[0] if len(parts) == 1 else AllOf(tuple(parts))
    return Rule(name=name, condition=condition, rank=0, priority=int(priority), source=where,
                slots=MappingProxyType(slots), redirect=redirect, headers=headers,
                cookies=cookies)


def _guarded(ctx: _Context, rule_file: RuleFile, owner: str,
             build: Callable[[], Condition]) -> list[Condition]:
    try:
        return [build()]
    except _Invalid as exc:
        ctx.reject(rule_file, exc, owner)
    except _Reported:
        pass
    return []


def _date(value: Any, at: Path_) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise _Invalid(f"{value!r} is not a date; write 2026-12-24", at) from exc


def _schedule(raw: Any, at: Path_) -> Schedule:
    if not isinstance(raw, dict) or not raw:
        raise _Invalid("schedule is a mapping: start, end, days, hours", at)
    unknown = set(raw) - {"start", "end", "days", "hours"}
    if unknown:
        key = sorted(unknown)[0]
        raise _Invalid(f"unknown schedule key {key!r}; expected start, end, days, hours"
                       + suggest(key, ("start", "end", "days", "hours")), (*at, key))
    start = _date(raw["start"], (*at, "start")) if "start" in raw else None
    end = _date(raw["end"], (*at, "end")) if "end" in raw else None
    if start and end and start > end:
        raise _Invalid("the schedule ends before it starts", (*at, "end"))
    days: set[str] = set()
    raw_days = raw.get("days", [])
    for i, day in enumerate([raw_days] if isinstance(raw_days, str) else raw_days):
        text = str(day).lower()[:3] if str(day).lower() not in _DAY_GROUPS else str(day).lower()
        if text in _DAY_GROUPS:
            days.update(_DAY_GROUPS[text])
        elif text in WEEKDAYS:
            days.add(text)
        else:
            raise _Invalid(f"unknown day {day!r}; expected mon..sun, weekdays or weekend"
                           + suggest(str(day), (*WEEKDAYS, *_DAY_GROUPS)), (*at, "days", i))
    hours = None
    if "hours" in raw:
        match = _HOURS.match(str(raw["hours"]).strip())
        if not match:
            raise _Invalid('hours are written "18:00-23:00"', (*at, "hours"))
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise _Invalid(f"{raw['hours']!r} is not a time range", (*at, "hours"))
        hours = (h1 * 60 + m1, h2 * 60 + m2)
    return Schedule(start, end, frozenset(days), hours)


def _traffic(raw: Any, name: str, at: Path_) -> Traffic:
    text = str(raw).strip().rstrip("%")
    try:
        percent = float(text)
    except ValueError as exc:
        raise _Invalid("traffic is a percentage such as 25 or 25%", at) from exc
    if not 0 < percent <= 100:
        raise _Invalid("traffic is between 0 and 100 percent", at)
    return Traffic(percent, f"traffic:{name}")


# Variants and actions


def _fragment(ctx: _Context, path_text: str, at: Path_) -> tuple[str, str]:
    directory = ctx.directory.resolve()
    path = (directory / path_text).resolve()
    if directory not in path.parents:
        raise _Invalid(f"fragment {path_text!r} is outside the rules directory", at)
    if not path.is_file():
        raise _Invalid(f"fragment file {path_text!r} does not exist (looked for {path})", at)
    try:
        return path.read_text(encoding="utf-8"), path_text
    except (OSError, UnicodeDecodeError) as exc:
        raise _Invalid(f"fragment {path_text!r} cannot be read as UTF-8: {exc}", at) from exc


def _template(text: str, at: Path_) -> Template:
    try:
        return Template.parse(text)
    except ValueError as exc:
        raise _Invalid(str(exc), at) from exc


def _content(ctx: _Context, raw: Any, at: Path_) -> Content:
    if isinstance(raw, str):
        if raw.strip().endswith(".html") and "<" not in raw:
            html, source = _fragment(ctx, raw.strip(), at)
            return Content("inner", _template(html, at), source=source)
        return Content("inner", _template(raw, at), source="inline")
    if not isinstance(raw, dict):
        raise _Invalid("a variant is a fragment file (x.html), inline HTML, or a mapping "
                       "such as {html: ...} or {action: remove}", at)
    known = {"action", "html", "file", "text", "attribute", "value", "class"}
    for key in raw:
        if key not in known:
            raise _Invalid(f"unknown variant key {key!r}; expected one of "
                           + ", ".join(sorted(known)) + suggest(str(key), known), (*at, key),
                           on_key=True)
    sources = [k for k in ("html", "file", "text") if k in raw]
    if len(sources) > 1:
        raise _Invalid("a variant has one of html, file or text", at)
    default_action = "text" if sources == ["text"] else "inner"
    action = raw.get("action", default_action)
    if action not in SLOT_ACTIONS:
        raise _Invalid(f"unknown action {action!r}; expected one of "
                       + ", ".join(SLOT_ACTIONS) + suggest(action, SLOT_ACTIONS), (*at, "action"))
    template, source = None, "inline"
    if "file" in raw:
        html, source = _fragment(ctx, str(raw["file"]), (*at, "file"))
        template = _template(html, (*at, "file"))
    elif "html" in raw or "text" in raw:
        key = "html" if "html" in raw else "text"
        template = _template(str(raw[key]), (*at, key))
    attribute = None
    if action in ("set_attribute", "remove_attribute"):
        attribute = raw.get("attribute")
        if not isinstance(attribute, str) or not _HEADER_NAME.match(attribute):
            raise _Invalid(f"{action} needs attribute: <name>", at)
        if action == "set_attribute":
            if "value" not in raw:
                raise _Invalid("set_attribute needs value: <text>", at)
            template = _template(str(raw["value"]), (*at, "value"))
    elif action in ("add_class", "remove_class"):
        names = raw.get("class")
        if not isinstance(names, str) or not names.strip():
            raise _Invalid(f"{action} needs class: <name>", at)
        template = Template((names.strip(),))
    elif action != "remove" and template is None:
        raise _Invalid(f"action {action} needs html, file or text", at)
    return Content(action, template, attribute, source)


def _redirect(raw: Any, at: Path_) -> Redirect:
    if isinstance(raw, str):
        raw = {"to": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("to"), str) or not raw["to"]:
        raise _Invalid("redirect is a URL or path, or {to: ..., status: 302}", at)
    location = raw["to"].strip()
    if not (location.startswith("/") or location.startswith(("https://", "http://"))) \
            or location.startswith("//"):
        raise _Invalid(f"redirect target {location!r} must be a path (/landing) or an "
                       "absolute http(s) URL", (*at, "to"))
    status = raw.get("status", 302)
    if status not in _REDIRECT_STATUSES:
        raise _Invalid(f"redirect status is one of {', '.join(map(str, _REDIRECT_STATUSES))}",
                       (*at, "status"))
    keep = raw.get("keep_query", True)
    if not isinstance(keep, bool):
        raise _Invalid("keep_query is true or false", (*at, "keep_query"))
    return Redirect(location, int(status), keep)


def _pairs(raw: Any, at: Path_, what: str,
           name_ok: Callable[[str], bool]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or not raw:
        raise _Invalid(f"{what} is a mapping of names to values", at)
    out = []
    for key, value in raw.items():
        if not name_ok(str(key)):
            raise _Invalid(f"{what}: {key!r} cannot be set by a rule", (*at, key))
        if isinstance(value, (dict, list)) or value is None or any(
                c in str(value) for c in "\r\n\0"):
            raise _Invalid(f"{what}: the value of {key!r} must be one line of text", (*at, key))
        out.append((str(key), str(value)))
    return tuple(out)


def _then(ctx: _Context, rule_file: RuleFile, then: dict[str, Any], at: Path_,
          owner: str) -> tuple[dict[str, Content], Redirect | None, tuple[tuple[str, str], ...],
                               tuple[tuple[str, str], ...]] | None:
    slots: dict[str, Content] = {}
    redirect: Redirect | None = None
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[tuple[str, str], ...] = ()
    ok = True
    for key, value in then.items():
        key_at: Path_ = (*at, key)
        try:
            if key == "redirect":
                redirect = _redirect(value, key_at)
            elif key == "headers":
                headers = _pairs(value, key_at, "headers", lambda n: bool(
                    _HEADER_NAME.match(n)) and n.lower() not in _FORBIDDEN_HEADERS)
            elif key == "cookies":
                cookies = _pairs(value, key_at, "cookies", lambda n: bool(_COOKIE_NAME.match(n)))
            elif key in ctx.slots:
                slots[key] = _content(ctx, value, key_at)
            elif key in INJECTIONS:
                content = _content(ctx, value, key_at)
                if content.action != "inner" or content.template is None:
                    raise _Invalid(f"{key} takes HTML (inline or a fragment file) to add",
                                   key_at)
                slots[key] = Content("append", content.template, None, content.source)
            else:
                choices = [*ctx.slots, *PAGE_ACTIONS, *INJECTIONS]
                raise _Invalid(f"unknown slot {key!r}; the slots section defines "
                               + (", ".join(sorted(ctx.slots)) or "none")
                               + " (page actions: redirect, headers, cookies, head, body_end)"
                               + suggest(str(key), choices), key_at, on_key=True)
        except _Invalid as exc:
            ctx.reject(rule_file, exc, owner)
            ok = False
    return (slots, redirect, headers, cookies) if ok else None


# Goals


def _compile_goals(ctx: _Context, rule_files: RuleFiles) -> None:
    for rule_file, section in _walk(rule_files, "goals"):
        if not isinstance(section, dict):
            ctx.fail(rule_file, "goals is a mapping of goal names to what reaches them",
                     ("goals",), None)
            continue
        for name, raw in section.items():
            owner = f"goal '{name}'"
            condition = functools.partial(_goal_condition, ctx, rule_file, owner)
            where = f"{rule_file.path}:{rule_file.marks.get(('goals', name), (0, 0))[0]}"
            try:
                goal = compile_goal(name, raw, condition, where)
            except GoalInvalid as exc:
                ctx.fail(rule_file, str(exc), exc.at, owner, on_key=exc.on_key)
                continue
            except _Invalid as exc:
                ctx.reject(rule_file, exc, owner)
                continue
            except _Reported:
                continue
            if goal.name in ctx.goals:
                ctx.fail(rule_file, f"goal {goal.name!r} is defined twice", ("goals", name),
                         owner, on_key=True)
                continue
            ctx.goals[goal.name] = goal


def _goal_condition(ctx: _Context, rule_file: RuleFile, owner: str, value: Any,
                    at: Path_) -> Condition:
    return _condition(ctx, rule_file, value, at, owner)


# Experiments


def _compile_experiments(ctx: _Context, rule_files: RuleFiles,
                         rules: tuple[Rule, ...]) -> tuple[Experiment, ...]:
    experiments: list[Experiment] = []
    claimed: dict[str, str] = {}
    names: set[str] = set()
    for rule_file, section in _walk(rule_files, "experiments"):
        if not isinstance(section, list):
            ctx.fail(rule_file, "experiments is a list (- name: ...)", ("experiments",), None)
            continue
        for position, raw in enumerate(section):
            at: Path_ = ("experiments", position)
            try:
                experiment = _experiment(ctx, rule_file, raw, at, names)
            except _Invalid as exc:
                name = raw.get("name") if isinstance(raw, dict) else None
                ctx.reject(rule_file, exc, f"experiment '{name}'" if isinstance(name, str)
                           else None)
                continue
            fighting = [s for s in experiment.slots if s in claimed]
            if fighting:
                ctx.fail(rule_file, f"slot {fighting[0]!r} is already tested by experiment "
                         f"{claimed[fighting[0]]!r}: one experiment per slot", (*at, "slot"),
                         f"experiment '{experiment.name}'")
                continue
            for slot in experiment.slots:
                claimed[slot] = experiment.name
            experiments.append(experiment)
    return tuple(experiments)


def _experiment(ctx: _Context, rule_file: RuleFile, raw: Any, at: Path_,
                names: set[str]) -> Experiment:
    if not isinstance(raw, dict):
        raise _Invalid("an experiment is a mapping (name, slot, variants)", at)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _Invalid(f"every experiment needs a name ({_NAME_ISSUE})", (*at, "name"))
    if name in names:
        raise _Invalid(f"experiment {name!r} is defined twice", (*at, "name"))
    names.add(name)
    for key in raw:
        if key not in EXPERIMENT_KEYS:
            raise _Invalid(f"unknown key {key!r}; an experiment has "
                           + ", ".join(EXPERIMENT_KEYS[:-1])
                           + suggest(str(key), EXPERIMENT_KEYS), (*at, str(key)), on_key=True)
    slot_list = raw.get("slots", [raw["slot"]] if "slot" in raw else [])
    if isinstance(slot_list, str):
        slot_list = [slot_list]
    if not slot_list:
        raise _Invalid("an experiment needs slot: <name> (or slots: [...])", at)
    for slot in slot_list:
        if slot not in ctx.slots:
            raise _Invalid(f"unknown slot {slot!r}" + suggest(str(slot), ctx.slots),
                           (*at, "slots" if "slots" in raw else "slot"))
    audience: Condition = AllOf(())
    if "audience" in raw:
        audience = _condition(ctx, rule_file, raw["audience"], (*at, "audience"),
                              f"experiment '{name}'")
    holdout = raw.get("holdout", 0)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) \
            or not 0 <= holdout < 100:
        raise _Invalid("holdout is a percentage from 0 to 99", (*at, "holdout"))
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or len(variants_raw) < 2:
        raise _Invalid("an experiment needs at least two variants (one may be the "
                       "control, with only a weight)", (*at, "variants"))
    weights: list[tuple[str, float]] = []
    variants: dict[str, Mapping[str, Content]] = {}
    for variant, spec in variants_raw.items():
        v_at: Path_ = (*at, "variants", variant)
        if not isinstance(spec, dict):
            raise _Invalid("a variant is a mapping with a weight, e.g. {weight: 50, html: ...}",
                           v_at)
        weight = spec.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise _Invalid("weight is a positive number", (*v_at, "weight"))
        weights.append((str(variant), float(weight)))
        rest = {k: v for k, v in spec.items() if k != "weight"}
        if not rest:
            variants[str(variant)] = MappingProxyType({})          # the control
        elif len(slot_list) == 1 and not set(rest) & set(slot_list):
            variants[str(variant)] = MappingProxyType({slot_list[0]: _content(ctx, rest, v_at)})
        else:
            per_slot = {}
            for slot, content in rest.items():
                if slot not in slot_list:
                    raise _Invalid(f"{slot!r} is not a slot of this experiment "
                                   f"({', '.join(slot_list)})", (*v_at, slot))
                per_slot[slot] = _content(ctx, content, (*v_at, slot))
            variants[str(variant)] = MappingProxyType(per_slot)
    where = f"{rule_file.path}:{rule_file.marks.get(at, (0, 0))[0]}"
    return Experiment(name, tuple(slot_list), audience, float(holdout), tuple(weights),
                      MappingProxyType(variants), where,
                      goals=_experiment_goals(ctx, raw.get("goals"), (*at, "goals")))


def _experiment_goals(ctx: _Context, raw: Any, at: Path_) -> tuple[str, ...]:
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _Invalid("goals is a list of goal names, e.g. [purchase]", at)
    for goal in names:
        if goal not in ctx.goals:
            raise _Invalid(f"unknown goal {goal!r}; declare it under goals:"
                           + suggest(goal, ctx.goals), at)
    return tuple(dict.fromkeys(names))


# Index


_MAX_INDEX_KEYS = 64   # one-of lists multiply keys; past this a field is left out


def _index_keys(rule: Rule) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """The fields a rule needs to equal some value, and every combination of values it
    accepts for them (one-of lists expand)."""
    condition = rule.condition
    children = condition.conditions if isinstance(condition, AllOf) else (condition,)
    fields: dict[str, frozenset[Any]] = {}
    for child in children:
        if not isinstance(child, FieldIs) or child.field in fields:
            continue
        spec, _ = lookup(child.field)
        if spec is None or spec.type == "list":
            continue
        if isinstance(child.matcher, Equals):
            fields[child.field] = frozenset({child.matcher.expected})
        elif isinstance(child.matcher, OneOf):
            fields[child.field] = child.matcher.choices
    while fields and math.prod(len(v) for v in fields.values()) > _MAX_INDEX_KEYS:
        del fields[max(fields, key=lambda f: len(fields[f]))]
    names = tuple(sorted(fields))
    return names, [tuple(values) for values in itertools.product(*(sorted(
        fields[name], key=repr) for name in names))]


def _index(rules: tuple[Rule, ...]) -> tuple[
        Mapping[tuple[str, ...], Mapping[tuple[object, ...], tuple[int, ...]]], tuple[int, ...]]:
    """Rules are filed under every combination of values their equality conditions accept,
    grouped by which fields those are; deciding looks up each group once with the visitor's
    values, so it only tries rules whose every such condition already holds."""
    index: dict[tuple[str, ...], dict[tuple[object, ...], list[int]]] = {}
    unindexed: list[int] = []
    for rule in rules:
        names, keys = _index_keys(rule)
        if not names:
            unindexed.append(rule.rank)
            continue
        group = index.setdefault(names, {})
        for key in keys:
            group.setdefault(key, []).append(rule.rank)
    frozen = {names: MappingProxyType({key: tuple(ranks) for key, ranks in group.items()})
              for names, group in index.items()}
    return MappingProxyType(frozen), tuple(unindexed)
