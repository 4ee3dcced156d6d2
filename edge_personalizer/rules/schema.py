"""The JSON Schema of rule files, generated from the definitions the compiler uses.

Editors (VS Code's YAML extension, JetBrains) use it to autocomplete field names and
underline mistakes while a marketer types. `edge-personalizer schema` prints it.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from .compile import OPERATORS
from .compile.actions import FORBIDDEN_HEADERS
from .compile.context import NAME, UNPRINTABLE
from .compile.experiments import (
    MAX_BURN_IN,
    MAX_CELLS_SPAN,
    MAX_WEIGHT,
    MIN_WEIGHT,
    UPDATE_EVERY_SPAN,
)
from .compile.rules import MAX_PRIORITY
from .durations import UNITS
from .fields import FIELDS, PREFIXES, FieldSpec, any_case, no_date
from .goals import MAX_WINDOW
from .model import CDN_CACHE_CONTROLS, PAGE_ACTIONS, SLOT_ACTIONS
from .schema_patterns import DATE, duration, share

SCHEMA_ID = "https://edge-personalizer.dev/schema/rules.json"


# The largest number the compiler reads (a float's): YAML reads an int of any size, and
# one of 400 digits is refused as .inf is
_LARGEST = sys.float_info.max


def _number(low: float | None = None, high: float | None = None,
            **bounds: float) -> dict[str, Any]:
    """A number from `low` to `high` (within ±_LARGEST where None), with other `bounds`."""
    return {"type": "number", "minimum": -_LARGEST if low is None else low,
            "maximum": _LARGEST if high is None else high, **bounds}


def _value_schema(spec: FieldSpec) -> dict[str, Any]:
    if spec.type == "number":
        low, high = _span(spec)
        return {**_number(low, high), **({"multipleOf": 1} if spec.whole else {})}
    if spec.type == "boolean":
        return {"type": "boolean"}
    if spec.values:
        # Editors offer the enum; the compiler takes any case (and the other spellings)
        written = "|".join([*map(any_case, spec.values), *filter(None, [spec.spelling_form])])
        return {"anyOf": [{"enum": [*spec.values, *spec.spellings]},
                          {"type": "string", "pattern": f"^(?:{written})$"}]}
    if spec.form:
        written_form = DATE if spec.check is no_date else spec.form   # (no 2026-02-30)
        form: dict[str, Any] = {"type": "string", "pattern": f"^(?:{written_form})$"}
        if spec.mistakes:   # values of the form that are no such code (uk: GB)
            mistaken = "|".join(any_case(wrong) for wrong, _ in spec.mistakes)
            form["not"] = {"pattern": f"^(?:{mistaken})$"}
        return form
    if spec.type == "list":   # (a tag it holds: text, or a number read as its digits)
        return {"type": ["string", "number"], "minLength": 1}
    return {"type": ["string", "number", "boolean"]}   # (true is read as the text "true")


def _span(spec: FieldSpec) -> tuple[float | None, float | None]:
    """A number field's least and greatest values, None where it has no bound."""
    low, high = spec.span if spec.span is not None else (-math.inf, math.inf)
    return (low if math.isfinite(low) else None), (high if math.isfinite(high) else None)


def _matcher_schema(spec: FieldSpec) -> dict[str, Any]:
    value = _value_schema(spec)
    values = {"type": "array", "items": value, "minItems": 1}
    operators: dict[str, Any] = {
        "equals": value, "in": values, "exists": {"type": "boolean"},
        # (under not: not: again, checked to its operators' names)
        "not": {"anyOf": [value, values, {"type": "object", "minProperties": 1,
                                          "propertyNames": {"enum": list(OPERATORS)}}]},
    }
    if spec.type == "number":
        low, high = _span(spec)
        # A bound past the field's values leaves none that meets it ({gte: 24} of an hour)
        for op, key, limit in (("gt", "exclusiveMaximum", high), ("gte", "maximum", high),
                               ("lt", "exclusiveMinimum", low), ("lte", "minimum", low)):
            operators[op] = _number(**({} if limit is None else {key: limit}))
        # Both ends within the field's values (between [18, 25] of an hour reaches past it)
        operators["between"] = {"type": "array", "items": _number(low, high),
                                "minItems": 2, "maxItems": 2}
    elif spec.type in ("string", "list"):   # text: a number is read as its digits
        operators.update({op: {"type": ["string", "number"], "minLength": 1}
                          for op in ("contains", "prefix", "suffix", "matches")})
    compared = {"type": "object", "properties": operators, "additionalProperties": False,
                "minProperties": 1}
    operators["not"] = {"anyOf": [value, values, {**compared, "properties": {
        **operators, "not": operators["not"]}}]}
    return {"description": spec.description or spec.name, "anyOf": [value, values, compared]}


def _conditions() -> dict[str, Any]:
    properties: dict[str, Any] = {name: _matcher_schema(spec) for name, spec in FIELDS.items()}
    properties.update({
        "all": {"type": "array", "items": {"$ref": "#/$defs/conditions"}, "minItems": 1},
        "any": {"type": "array", "items": {"$ref": "#/$defs/conditions"}, "minItems": 1},
        "not": {"$ref": "#/$defs/conditions"},
        "segment": {"anyOf": [{"type": "string"},
                              {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
    })
    patterns = {"^" + prefix.replace(".", "\\.") + ".+$": _matcher_schema(spec)
                for prefix, spec in PREFIXES.items()}
    return {"type": "object", "properties": properties, "patternProperties": patterns,
            "additionalProperties": False, "minProperties": 1}


def _two_contents() -> dict[str, Any]:
    """One of html, file and text is a slot's content (or an experiment variant's): not two."""
    return {"anyOf": [{"required": list(pair)} for pair in
                      (("html", "file"), ("html", "text"), ("file", "text"))]}


def _action_is(*actions: str) -> dict[str, Any]:
    return {"required": ["action"], "properties": {"action": {"enum": list(actions)}}}


def _variant() -> dict[str, Any]:
    text = {"type": ["string", "number"]}   # (a number is shown as its digits)
    return {"anyOf": [
        {"type": "string", "description": "a fragment file (x.html) or inline HTML"},
        {"type": "object", "additionalProperties": False, "properties": {
            "action": {"enum": list(SLOT_ACTIONS)}, "html": text, "file": {"type": "string"},
            "text": text, "attribute": {"type": "string", "pattern": f"^{_TOKEN}$"},
            "value": text, "class": {"type": "string", "pattern": "\\S"}},
         "not": _two_contents(), "allOf": [
             # What each action needs, as the compiler asks it
             {"if": _action_is("add_class", "remove_class"), "then": {"required": ["class"]}},
             {"if": _action_is("set_attribute", "remove_attribute"),
              "then": {"required": ["attribute"]}},
             {"if": _action_is("set_attribute"), "then": {"required": ["value"]}},
             {"if": _action_is("remove", "add_class", "remove_class", "set_attribute",
                               "remove_attribute"), "else": {"anyOf": [
                 {"required": ["html"]}, {"required": ["file"]}, {"required": ["text"]}]}},
         ]},
    ]}


def _by_field() -> dict[str, Any]:
    """A slot filled by a field's value: {by: profile.predicted_top, variants: {...}}."""
    return {"type": "object", "required": ["by", "variants"], "additionalProperties": False,
            "properties": {"by": {"type": "string"}, "variants": {
                "type": "object", "minProperties": 1,
                "additionalProperties": {"$ref": "#/$defs/variant"}}}}


def _field_name() -> dict[str, Any]:
    """A visitor field's name (per:, by:): one of FIELDS, or a prefix and a name."""
    prefixes = "|".join(prefix.replace(".", "\\.") for prefix in PREFIXES)
    return {"anyOf": [{"enum": list(FIELDS)},
                      {"type": "string", "pattern": f"^(?:{prefixes}).+$"}]}


def _experiment_checks() -> list[dict[str, Any]]:
    """What an experiment's keys ask of each other, as the compiler checks them."""
    bandit: dict[str, Any] = {"required": ["allocation"],
                              "properties": {"allocation": {"const": "bandit"}}}
    # Each variant keeps the floor: all of them together at most 100 percent of visitors
    floors = [{"if": {"required": ["variants"],
                      "properties": {"variants": {"minProperties": count}}},
               "then": {"properties": {"bandit": {"properties": {
                   "floor": {"maximum": 100 / count}}}}}}
              for count in range(3, _MOST_VARIANTS_CHECKED + 1)]
    return [
        {"anyOf": [{"required": ["slot"]}, {"required": ["slots"]}]},
        {"if": {"required": ["bandit"]}, "then": bandit},   # bandit settings need a bandit
        {"if": bandit, "then": {"required": ["goals"], "properties": {"goals": {
            "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1}]}}}},
        *floors,
    ]


# Up to how many variants the schema checks the bandit's floor for (beyond, the compiler)
_MOST_VARIANTS_CHECKED = 20


# RFC 7230's token: a header's or a cookie's name, an attribute's
_TOKEN = "[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_TEMPLATE = "\\{\\{|\\{%"   # values are sent as written, never a template


def _pairs(value_chars: str, refused_names: list[str]) -> dict[str, Any]:
    """headers: or cookies: names (tokens, but `refused_names`, patterns) and values (of
    `value_chars`; true and numbers as written)."""
    return {"type": "object", "minProperties": 1, "propertyNames": {
        "pattern": f"^{_TOKEN}$", "not": {"anyOf": [{"pattern": refused}
                                                    for refused in refused_names]}},
            "additionalProperties": {"anyOf": [
                {"type": "string", "pattern": f"^[{value_chars}]*$", "not": {"pattern": _TEMPLATE}},
                {"type": ["number", "boolean"]}]}}


def _headers() -> dict[str, Any]:
    kept = [*FORBIDDEN_HEADERS, *(name.decode() for name in CDN_CACHE_CONTROLS)]
    return _pairs("\\t\\x20-\\x7e\\u0080-\\u00ff", [
        "^(?:" + "|".join(any_case(name) for name in sorted(kept)) + ")$", "^[xX]-[eE][pP]-"])


def _cookies() -> dict[str, Any]:
    # RFC 6265 cookie-octets; ep_... names are the product's
    return _pairs("\\x21\\x23-\\x2b\\x2d-\\x3a\\x3c-\\x5b\\x5d-\\x7e", ["^[eE][pP]_"])


# What str.strip() takes off a name beside the control characters: the spaces of Unicode
_SPACES = "\\x20\\xa0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000"


def _free_name() -> dict[str, Any]:
    """A name written freely (a segment's, an interest's): not blank, with no character of
    UNPRINTABLE."""
    return {"pattern": f"[^{_SPACES}{UNPRINTABLE}]", "not": {"pattern": f"[{UNPRINTABLE}]"}}


_DATE = f"^{DATE}$"
_TIME = r"(([01]?\d|2[0-3]):[0-5]\d|24:00)"
# A path (not //host) or an absolute http(s) URL, on one line, with no space or backslash
_REDIRECT_TO = r"^\s*(/(?!/)|https?://)[\x21-\x5b\x5d-\x7e\u0080-\u00ff]*\s*$"


def build_schema() -> dict[str, Any]:
    day = _value_schema(FIELDS["time.weekday"])   # schedules read days as time.weekday
    rule_properties: dict[str, Any] = {
        "name": {"type": "string", "pattern": NAME.pattern},
        "description": {"type": "string"},
        "when": {"$ref": "#/$defs/conditions"},
        "then": {"type": "object", "minProperties": 1, "properties": {
            "redirect": {"anyOf": [{"type": "string", "pattern": _REDIRECT_TO}, {
                "type": "object", "required": ["to"], "additionalProperties": False,
                "properties": {"to": {"type": "string", "pattern": _REDIRECT_TO},
                               "status": {"enum": [301, 302, 303, 307, 308]},
                               "keep_query": {"type": "boolean"}}}]},
            "headers": _headers(), "cookies": _cookies()},
            "additionalProperties": {"anyOf": [{"$ref": "#/$defs/variant"}, _by_field()]}},
        "priority": {"type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY},
        "schedule": {"type": "object", "additionalProperties": False, "minProperties": 1,
                     "properties": {
                         "start": {"type": "string", "format": "date", "pattern": _DATE},
                         "end": {"type": "string", "format": "date", "pattern": _DATE},
                         "days": {"anyOf": [day, {"type": "array", "items": day,
                                                  "minItems": 1}]},
                         "hours": {"type": "string",
                                   "pattern": f"^\\s*{_TIME}\\s*-\\s*{_TIME}\\s*$"}}},
        "traffic": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                              {"type": "string", "pattern": share(zero=False, hundred=True)}]},
    }
    experiment_properties: dict[str, Any] = {
        "name": {"type": "string", "pattern": NAME.pattern},
        "description": {"type": "string"}, "slot": {"type": "string"},
        "slots": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                 "minItems": 1}]},
        "audience": {"$ref": "#/$defs/conditions"},
        "schedule": rule_properties["schedule"], "paused": {"type": "boolean"},
        "holdout": {"anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": 100},
                              {"type": "string", "pattern": share(zero=True, hundred=False)}]},
        "variants": {"type": "object", "minProperties": 2, "propertyNames": {
            # X-EP-Variant writes slot=variant, comma-separated; holdout is kept
            "pattern": f"^(?!holdout$)[^,=;{_SPACES}{UNPRINTABLE}]"
                       f"([^,=;{UNPRINTABLE}]*[^,=;{_SPACES}{UNPRINTABLE}])?$"},
            "additionalProperties": {
            "type": "object", "not": _two_contents(),
            "properties": {"weight": {"type": "number", "minimum": MIN_WEIGHT,
                                      "maximum": MAX_WEIGHT}}}},
        "goals": {"anyOf": [{"type": "string"},
                            {"type": "array", "items": {"type": "string"}}]},
        "allocation": {"enum": ["fixed", "bandit"]},
        "per": {"anyOf": [{"const": "segment"}, _field_name(),
                          {"type": "array", "minItems": 1, "items": _field_name()}]},
        "bandit": {"type": "object", "additionalProperties": False, "properties": {
            "burn_in": {"type": "integer", "minimum": 0, "maximum": MAX_BURN_IN},
            "floor": {"type": "number", "minimum": 0, "maximum": 50},
            "update_every": {"anyOf": [
                {"type": "number", "minimum": UPDATE_EVERY_SPAN[0],
                 "maximum": UPDATE_EVERY_SPAN[1]},
                {"type": "string", "pattern": duration(
                    UNITS, least=UPDATE_EVERY_SPAN[0], most=UPDATE_EVERY_SPAN[1])}]},
            "metric": {"enum": ["conversion", "value"]},
            "max_cells": {"type": "integer", "minimum": MAX_CELLS_SPAN[0],
                          "maximum": MAX_CELLS_SPAN[1]}}},
    }
    goal_properties: dict[str, Any] = {
        "when": {"$ref": "#/$defs/conditions"},
        "status": {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599},
                             {"type": "array", "minItems": 1, "items": {
                                 "type": "integer", "minimum": 100, "maximum": 599}}]},
        "value": {"type": "object", "minProperties": 1, "maxProperties": 1,
                  "additionalProperties": False,
                  "properties": {"query": {"type": "string"}, "header": {"type": "string"}}},
        "window": {"type": "string",
                   "pattern": duration(UNITS, least=0, most=MAX_WINDOW)},
        "beacon": {"type": "boolean"},
        "description": {"type": "string"},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "edge-personalizer rule file",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "slots": {"type": "object", "additionalProperties": {
                "anyOf": [{"type": "null"}, {
                    "type": "object", "additionalProperties": False,
                    "not": {"required": ["tag", "selector"]},
                    "properties": {"selector": {"type": "string"},
                                   "tag": {"type": "string",
                                           "pattern": "^[A-Za-z][A-Za-z0-9-]*$"},
                                   "description": {"type": "string"}}}]}},
            "interests": {"type": "object", "propertyNames": _free_name(), "additionalProperties": {
                "type": "array", "items": {"type": "string", "pattern": "^/"}, "minItems": 1}},
            "segments": {"type": "object", "propertyNames": _free_name(),
                         "additionalProperties": {
                "type": "object", "required": ["when"], "additionalProperties": False,
                "properties": {"when": {"$ref": "#/$defs/conditions"},
                               "description": {"type": "string"}}}},
            "rules": {"type": "array", "items": {
                "type": "object", "required": ["name", "then"], "additionalProperties": False,
                "properties": rule_properties}},
            "experiments": {"type": "array", "items": {
                "type": "object", "required": ["name", "variants"],
                "additionalProperties": False, "properties": experiment_properties,
                "allOf": _experiment_checks()}},
            "goals": {"type": "object", "propertyNames": {
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}, "additionalProperties": {
                "anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": False,
                                              "properties": goal_properties}]}},
        },
        "$defs": {"conditions": _conditions(), "variant": _variant(),
                  "operators": {"enum": list(OPERATORS)},
                  "page_actions": {"enum": list(PAGE_ACTIONS)}},
    }
