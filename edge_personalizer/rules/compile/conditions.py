"""`when`, `audience` and segment clauses -> Condition callables; every mistake reported
with where it was written."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Final

import re2

from ..conditions import (
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
    Segment,
    Text,
)
from ..fields import FieldSpec, as_written, lookup, normalize, suggest
from ..loader import KeyPath, RuleFile
from .context import (
    CompileContext,
    Invalid,
    Invalids,
    Reported,
    as_float,
    each,
    frozen,
    kind_of,
)
from .never import never as never_holds

OPERATORS: Final = ("equals", "in", "not", "gt", "gte", "lt", "lte", "between", "contains",
                    "prefix", "suffix", "matches", "exists")
_LOGIC: Final = ("all", "any", "not", "segment")
_NUMERIC: Final = ("gt", "gte", "lt", "lte", "between")
_TEXTUAL: Final = ("contains", "prefix", "suffix", "matches")
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.encoding = re2.Options.Encoding.UTF8


def compile_condition(ctx: CompileContext, rule_file: RuleFile, raw: Any, at: KeyPath,
                      owner: str) -> Condition:
    """A mapping of clauses, all of which must hold. Each bad clause is reported (so one
    run finds them all); then Reported stops the caller."""
    if raw == {} or raw is None:   # ({} or `when:` with nothing after it)
        nested = not at or at[-1] not in ("when", "audience")   # inside not:, any: or all:
        fix = ("write one, e.g. {referral.source: facebook}" if nested
               else "to match every visitor, leave it out"
               if owner.startswith(("rule", "experiment"))
               else "write one, e.g. {request.path: /checkout/thanks}" if owner.startswith("goal")
               else "write one, e.g. {referral.source: facebook}")
        said = "{} holds no condition" if raw == {} else f"{at[-1] if at else 'it'} is empty"
        raise Invalid(f"{said}; {fix}", at)
    if not isinstance(raw, dict):
        raise Invalid("conditions are a mapping of fields to values, e.g. "
                      "{geo.country: GB, device.type: mobile}", at)
    parts: list[Condition] = []
    failed = False
    for key, value in raw.items():
        try:
            parts.append(_clause(ctx, rule_file, str(key), value, (*at, str(key)), owner))
        except Invalid as exc:
            ctx.reject(rule_file, exc, owner)
            failed = True
        except Invalids as several:   # (every wrong value of a list)
            for error in several.errors:
                ctx.reject(rule_file, error, owner)
            failed = True
        except Reported:
            failed = True
    if failed:
        raise Reported()
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _clause(ctx: CompileContext, rule_file: RuleFile, key: str, value: Any, at: KeyPath,
            owner: str) -> Condition:
    if key in ("all", "any"):
        if value == []:
            raise Invalid(f"{key}: [] holds no condition; write them in it, or leave {key} "
                          "out", at)
        if not isinstance(value, list):
            raise Invalid(f"{key} takes a list of conditions", at)
        children = tuple(each(lambda i, item: compile_condition(ctx, rule_file, item,
                                                                (*at, i), owner), value))
        return AllOf(children) if key == "all" else AnyOf(children)
    if key == "not":
        return Not(compile_condition(ctx, rule_file, value, at, owner))
    if key == "segment":
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) for n in names):
            raise Invalid("segment takes a segment name or a list of names", at)
        found = tuple(each(lambda i, name: segment(
            ctx, name, (*at, i) if isinstance(value, list) else at), names))
        return found[0] if len(found) == 1 else AnyOf(found)
    name = normalize(key)
    written = (name, frozen(value) if isinstance(value, (dict, list)) else (type(value), value))
    known = ctx.clauses.get(written)
    if known is None:   # a clause written the same way again is the same condition
        known = ctx.clauses[written] = _field_condition(ctx, name, value, at)
    return known


def segment(ctx: CompileContext, name: str, at: KeyPath) -> Segment:
    """The named segment, compiled on first use (a circle of segments is an error)."""
    if name in ctx.segments:
        return ctx.segments[name]
    source = ctx.segment_sources.get(name)
    if source is None:
        known = sorted(ctx.segment_sources)
        raise Invalid(f"unknown segment {name!r}" + (
            suggest(name, known) or f" (the segments: section names "
                                    f"{', '.join(known[:12]) or 'none'})"), at)
    if name in ctx.compiling:
        circle = " -> ".join([*ctx.compiling[ctx.compiling.index(name):], name])
        raise Invalid(f"segments refer to each other in a circle: {circle}", at)
    owner = f"segment '{name}'"
    ctx.compiling.append(name)
    try:
        compiled = Segment(name, compile_condition(ctx, source.rule_file, source.when,
                                                   source.at, owner))
    except Invalid as exc:
        ctx.reject(source.rule_file, exc, owner)
        compiled = Segment(name, AnyOf(()))   # reported; never matches
    except Reported:
        compiled = Segment(name, AnyOf(()))
    finally:
        ctx.compiling.pop()
    ctx.segments[name] = compiled
    return compiled


def _field_condition(ctx: CompileContext, name: str, value: Any, at: KeyPath) -> Condition:
    spec, why = lookup(name)
    if spec is None:
        if name in OPERATORS:
            why = (f"{name!r} is an operator: it goes under a field, e.g. "
                   f"{{profile.visits: {{{name}: ...}}}}")
        elif "." not in name and suggest(name, _LOGIC):
            why = f"unknown field {name!r}" + suggest(name, _LOGIC)
        raise Invalid(why, at, on_key=True)
    if name.startswith("profile.interests.") and ctx.interests:
        _check_interest(ctx, name[len("profile.interests."):], at)
    if name.startswith("profile.predicted"):
        if not ctx.interests:
            raise Invalid(f"{name} predicts interests: define them in an interests: section",
                          at, on_key=True)
        if name.startswith("profile.predicted."):
            _check_interest(ctx, name[len("profile.predicted."):], at)
        elif name == "profile.predicted_top":
            for category in [value] if isinstance(value, str) else \
                    value if isinstance(value, list) else []:
                _check_interest(ctx, str(category), at, on_key=False)
    return FieldIs(name, _matcher(spec, name, value, at))


def _check_interest(ctx: CompileContext, category: str, at: KeyPath, *,
                    on_key: bool = True) -> None:
    if category not in ctx.interests:
        raise Invalid(f"unknown interest {category!r}; the interests section defines "
                      + ", ".join(sorted(ctx.interests)) + suggest(category, ctx.interests),
                      at, on_key=on_key)


def _matcher(spec: FieldSpec, name: str, value: Any, at: KeyPath, *,
             negated: bool = False) -> Matcher:
    """What `value` asks of the field; refused when no value meets it (or, under `not:`,
    when every value does)."""
    matchers = _matchers(spec, name, value, at)
    never = never_holds(spec, name, matchers, negated=negated)
    if never is not None:
        raise Invalid(never, at)
    return matchers[0] if len(matchers) == 1 else AllMatchers(matchers)


def _matchers(spec: FieldSpec, name: str, value: Any, at: KeyPath) -> tuple[Matcher, ...]:
    if isinstance(value, dict):
        if not value:
            raise Invalid(f"{name}: empty condition", at)
        matchers = tuple(_operator(spec, name, str(op), v, (*at, str(op)))
                         for op, v in value.items())
    elif isinstance(value, list):
        if not value:
            raise Invalid(f"{name}: empty list", at)
        matchers = (_one_of(spec, name, value, at),)
    elif spec.type == "list":
        matchers = (Text("contains", _text(value, name, at).casefold()),)
    else:
        matchers = (_equal_to(spec, name, value, at),)
    return matchers


def _equal_to(spec: FieldSpec, name: str, value: Any, at: KeyPath) -> Matcher:
    """`value`, or any of the values it stands for (time.weekday: weekend)."""
    values = _values(spec, name, value, at)
    if len(values) == 1:
        return Equals(values[0], value)
    return OneOf(frozenset(values), (value,))


def _operator(spec: FieldSpec, name: str, op: str, value: Any, at: KeyPath) -> Matcher:
    build = _OPERATOR_BUILDERS.get(op)
    if build is None:
        raise Invalid(f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}"
                      + suggest(op, OPERATORS), at, on_key=True)
    if op in _NUMERIC and spec.type != "number":
        raise Invalid(f"{op} compares numbers; {name} is {spec.type}", at)
    if op in _TEXTUAL and spec.type not in ("string", "list"):
        raise Invalid(f"{op} works on text; {name} is {spec.type}", at)
    return build(spec, name, op, value, at)


def _values(spec: FieldSpec, name: str, value: Any, at: KeyPath) -> tuple[Any, ...]:
    """The values a field can be compared with that `value` stands for: itself (see
    _value), or what the field reads it as (time.weekday: monday is mon, weekend sat
    and sun)."""
    if spec.named is None or isinstance(value, (dict, list, bool)) or value is None:
        return (_value(spec, name, value, at),)
    values = spec.named(str(value))
    if not values:
        raise Invalid(f"unknown {name} {as_written(value)}; expected {spec.named_help}"
                      + suggest(str(value), (*spec.values, *spec.spellings)), at)
    return values


def _value(spec: FieldSpec, name: str, value: Any, at: KeyPath) -> Any:
    """A value a field can be compared with, folded for case-insensitive comparison."""
    if isinstance(value, (dict, list)) or value is None:
        raise Invalid(f"{name}: expected a value, got {kind_of(value)}", at)
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise Invalid(f"{name} is true or false, got {as_written(value)}", at)
        return value
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(as_float(value)):
            raise Invalid(f"{name} is a number, got {_not_a_number(value)}", at)
        if (spec.span is not None and not spec.span[0] <= value <= spec.span[1]) \
                or (spec.whole and value % 1):
            raise Invalid(f"{name} is {spec.span_words()}, got {as_written(value)}", at)
        return value
    text = str(value)
    if spec.values:
        if text.casefold() not in spec.folded:
            raise Invalid(f"unknown {name} {as_written(text)}; expected "
                          + ", ".join(spec.values) + suggest(text, spec.values), at)
    if spec.form:
        if not re.fullmatch(spec.form, text):
            raise Invalid(f"{name} {as_written(text)}: {spec.form_help}", at)
        meant = dict(spec.mistakes).get(text.casefold())
        if meant is not None:
            raise Invalid(f"{name} {text!r} is no such code; did you mean {meant!r}?", at)
        wrong = spec.check(text) if spec.check is not None else None
        if wrong is not None:
            raise Invalid(f"{name} {text!r} is {wrong}", at)
    return text.casefold()


def _number(value: Any, op: str, at: KeyPath) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(as_float(value)):
        raise Invalid(f"{op} takes a number, got {_not_a_number(value)}", at)
    return float(value)


def _not_a_number(value: Any) -> str:
    """What was written where a number belongs: YAML's .nan and .inf are floats, but no
    number a visitor's value can be compared with."""
    if isinstance(value, float) and math.isnan(value):
        return ".nan (not a number)"
    if isinstance(value, float) and math.isinf(value):
        return f"{'' if value > 0 else '-'}.inf (infinity, no number)"
    if isinstance(value, int) and not isinstance(value, bool) \
            and not math.isfinite(as_float(value)):
        return "a number beyond ±1.8e308, too large to compare"
    return f"{kind_of(value)} {as_written(value)}"


def _text(value: Any, op: str, at: KeyPath) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
        said = "empty text" if value == "" else kind_of(value)
        raise Invalid(f"{op} takes text (a number is read as its digits), got {said}", at)
    return str(value)


def _one_of(spec: FieldSpec, name: str, value: Any, at: KeyPath) -> Matcher:
    if not isinstance(value, list) or not value:
        raise Invalid("in takes a list of values", at)
    choices = each(lambda i, written: _values(spec, name, written, (*at, i)), value)
    return OneOf(frozenset(c for values in choices for c in values), tuple(dict.fromkeys(value)))


def _between(spec: FieldSpec, name: str, value: Any, at: KeyPath) -> Matcher:
    if not isinstance(value, list) or len(value) != 2:
        raise Invalid("between takes two numbers: [low, high]", at)
    low, high = _number(value[0], "between", at), _number(value[1], "between", at)
    if low > high:
        raise Invalid(f"between [{low:g}, {high:g}]: the low end is above the high end", at)
    if spec.span is not None and not spec.span[0] <= low <= high <= spec.span[1]:
        raise Invalid(f"{name} is {spec.span_words()}, so between [{low:g}, {high:g}] "
                      "reaches past it", at)
    return Between(low, high)


def _regex(value: Any, at: KeyPath) -> Matcher:
    source = _text(value, "matches", at)
    try:
        pattern = re2.compile(source.encode(), _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        raise Invalid(f"matches: not a usable regular expression ({detail}); "
                      "lookarounds and back-references are not supported", at) from exc
    return Matches(source, pattern)


def _exists(value: Any, at: KeyPath) -> Matcher:
    if not isinstance(value, bool):
        raise Invalid("exists takes true or false", at)
    return Exists(value)


_Builder = Callable[[FieldSpec, str, str, Any, KeyPath], Matcher]
_OPERATOR_BUILDERS: Final[MappingProxyType[str, _Builder]] = MappingProxyType({
    "equals": lambda spec, name, op, value, at: _equal_to(spec, name, value, at),
    "in": lambda spec, name, op, value, at: _one_of(spec, name, value, at),
    "not": lambda spec, name, op, value, at: NotMatcher(_matcher(spec, name, value, at,
                                                                 negated=True)),
    **{op: (lambda spec, name, op, value, at: Compare(op, _number(value, op, at)))
       for op in ("gt", "gte", "lt", "lte")},
    "between": lambda spec, name, op, value, at: _between(spec, name, value, at),
    **{op: (lambda spec, name, op, value, at: Text(op, _text(value, op, at).casefold()))
       for op in ("contains", "prefix", "suffix")},
    "matches": lambda spec, name, op, value, at: _regex(value, at),
    "exists": lambda spec, name, op, value, at: _exists(value, at),
})
