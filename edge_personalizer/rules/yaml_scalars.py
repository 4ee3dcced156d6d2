"""What a value written on one line of a rule file means, as the full YAML reader decides:
plain values by the rule files' resolvers (RuleFileLoader: 3 is a number, true is true,
2026-12-24 a date), quoted ones by YAML's quoting and escapes. Anything else declines
(Decline).

Rule files read plain values as YAML 1.2 does, not as PyYAML's YAML 1.1: only true and
false are true and false (`geo.country: NO` is Norway, `request.query.promo: off` is
"off"), and only plain decimals are whole numbers (`geo.postal: 02134` is "02134", not
1116 in octal; `12:30` is "12:30", not 750 minutes in base 60; `0x1F` is "0x1F").
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import yaml


class Decline(Exception):
    """Not a shape the line reader handles: the full reader reads the file."""


COMMENT = re.compile(r" +#")                        # a comment after a plain value
# Possessive (*+): a quoted value takes no memory for each of its characters (the regular
# expression engine would keep a place to go back to for each: 130 bytes a character).
_SINGLE = re.compile(r"'((?:[^']|'')*+)'")
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*+)"')
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_ESCAPES = MappingProxyType({
    "0": "\0", "a": "\x07", "b": "\x08", "t": "\x09", "n": "\x0A", "v": "\x0B",
    "f": "\x0C", "r": "\x0D", "e": "\x1B", " ": " ", '"': '"', "/": "/", "\\": "\\",
    "N": "\x85", "_": "\xA0", "L": "\u2028", "P": "\u2029"})

_STR = "tag:yaml.org,2002:str"
_BUILDABLE = frozenset({_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
                        "tag:yaml.org,2002:timestamp"})
_BOOL, _INT, _FLOAT = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                       "tag:yaml.org,2002:float")
_Resolvers = dict[str | None, list[tuple[str, re.Pattern[str]]]]


def _rule_file_resolvers() -> _Resolvers:
    """PyYAML's resolvers with YAML 1.2's booleans and numbers in place of YAML 1.1's."""
    table: _Resolvers = {
        first: [(tag, pattern) for tag, pattern in entries if tag not in (_BOOL, _INT, _FLOAT)]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    for tag, pattern, firsts in (
            (_BOOL, r"(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
            (_INT, r"[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
            (_FLOAT, r"(?:(?:[-+]?[0-9]+\.[0-9]*|[-+]?\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789")):
        for first in firsts:
            table.setdefault(first, []).append((tag, re.compile(pattern)))
    return table


class RuleFileLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading plain values as rule files mean them (see above)."""

    yaml_implicit_resolvers = _rule_file_resolvers()


_RESOLVERS = RuleFileLoader.yaml_implicit_resolvers
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class PlainValues:
    """What plain values mean, for one file's reading: the same keys and values come back
    rule after rule, and are worked out once (bounded)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._known: dict[str, Any] = {}
        self._max_entries = max_entries

    def __call__(self, text: str) -> Any:
        try:
            return self._known[text]
        except KeyError:
            pass
        value = plain_value(text)
        if len(self._known) >= self._max_entries:
            self._known.clear()
        self._known[text] = value
        return value


def implicit_tag(text: str) -> str:
    """The kind YAML takes a plain value written `text` for, untagged (2026-12-24: a date)."""
    for candidate, pattern in _RESOLVERS.get(text[:1] if text else "", []):
        if pattern.match(text):
            return candidate
    return _STR


def plain_value(text: str) -> Any:
    """What a plain (unquoted) value means, exactly as the full reader decides it."""
    tag = implicit_tag(text)
    if tag not in _BUILDABLE:   # << (merge), = (value) and the like
        raise Decline
    if tag == _STR:
        value: Any = text
    else:
        try:
            value = _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, text), deep=True)
        except Exception:   # (2026-11-31) the text written, as the full reader keeps it
            value = text
    return value


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) > 1:
        number = int(code[1:], 16)
        if number > 0x10FFFF:
            raise Decline
        return chr(number)
    if code not in _ESCAPES:
        raise Decline
    return _ESCAPES[code]


def quoted(line: str, at: int) -> tuple[str, int]:
    """The quoted value starting at `at` (closed on the same line) and where it ends."""
    if line[at] == "'":
        match = _SINGLE.match(line, at)
        if match is None:
            raise Decline
        return match.group(1).replace("''", "'"), match.end()
    match = _DOUBLE.match(line, at)
    if match is None:
        raise Decline
    inner = match.group(1)
    return (_ESCAPE.sub(_unescape, inner) if "\\" in inner else inner), match.end()


def only_comment_after(line: str, at: int) -> None:
    """Declines unless line[at:] is blank or a comment."""
    rest = line[at:]
    if rest.strip(" ") and not COMMENT.match(rest):
        raise Decline


def skip(line: str, pos: int) -> int:
    """The first position from `pos` that is not a space."""
    while pos < len(line) and line[pos] == " ":
        pos += 1
    return pos
