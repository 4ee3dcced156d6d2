"""Variant templates: HTML with `{{ geo.city | default: "your city" }}` placeholders.

Parsed when rules load (an unknown field, or a field where visitor data must never go, is
an error then, never at request time); rendering only looks values up and escapes each
for where it sits:

- in HTML text, a comment or a quoted attribute value: HTML-escaped (& < > " ');
- at the start of a URL attribute (href, src, action, formaction...): kept only if the
  URL is relative or http(s) (else the default is used), then HTML-escaped;
- in a `text:` variant: left as it is, because the page writer escapes the whole text.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..classify.visitor import Visitor, field_getter
from .fields import lookup, normalize
from .html_context import MARK, URL_ATTRIBUTES, attribute_problem, is_safe_url, spots, url_fixed

_PLACEHOLDER: Final = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_EXPRESSION: Final = re.compile(
    r"""^(?P<field>[a-z_][a-z0-9_.\-]*)\s*(?:\|\s*default\s*:\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'))?$""")

# How a placeholder's value is written: HTML-escaped; checked as a URL, then escaped;
# or as it is (a text variant: the page writer escapes it).
Escape = Literal["html", "url", "none"]
# What the whole template is: HTML, plain text, or the value of the attribute named.
TemplateKind = Literal["html", "text", "attribute"]


@dataclass(frozen=True)
class Placeholder:
    field: str
    default: str
    escape: Escape = "html"
    url_start: str = ""       # for "url": the attribute value's literal text before it
    read: Callable[[Visitor], Any] = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "read", field_getter(self.field))


@dataclass(frozen=True)
class Template:
    """Literal parts and placeholders, in order."""

    parts: tuple[str | Placeholder, ...]
    # Derived when built: the fields it prints, and whether it prints none.
    fields: frozenset[str] = dataclasses.field(init=False, compare=False, repr=False)
    is_static: bool = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        fields = frozenset(p.field for p in self.parts if isinstance(p, Placeholder))
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "is_static", not fields)

    @classmethod
    def parse(cls, text: str, *, kind: TemplateKind = "html", attribute: str = "") -> Template:
        """Raises ValueError naming the first bad placeholder, or a placeholder where
        visitor data may not go (a script, an event handler, a tag)."""
        pieces: list[str | tuple[str, str, str]] = []   # literal text, or (source, field, default)
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            if match.start() > position:
                pieces.append(text[position:match.start()])
            pieces.append(_expression(match.group(0), match.group(1)))
            position = match.end()
        if position < len(text):
            pieces.append(text[position:])
        found = [piece for piece in pieces if isinstance(piece, tuple)]
        if not found:
            return cls(tuple(p for p in pieces if isinstance(p, str)))
        escapes = _escapes(pieces, kind, attribute)
        parts: list[str | Placeholder] = []
        for piece in pieces:
            if isinstance(piece, str):
                parts.append(piece)
                continue
            escape, url_start = escapes.pop(0)
            _, field, default = piece
            if escape == "url" and not is_safe_url(url_start + default):
                raise ValueError(f"placeholder {piece[0]!r}: the default {default!r} is not "
                                 "a relative or http(s) URL")
            parts.append(Placeholder(field, default, escape, url_start))
        return cls(tuple(parts))

    def render(self, visitor: Visitor) -> str:
        """The template with each placeholder's value written as its place needs."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.read(visitor)
            if value in (None, ""):
                text = part.default
            elif isinstance(value, (list, tuple)):
                text = ", ".join(str(v) for v in value)
            else:
                text = str(value)
            if part.escape == "none":
                out.append(text)
                continue
            if part.escape == "url" and not is_safe_url(part.url_start + text):
                text = part.default   # never javascript: or data: from a visitor
            out.append(html.escape(text, quote=True))
        return "".join(out)


def _expression(source: str, inside: str) -> tuple[str, str, str]:
    expression = _EXPRESSION.match(inside)
    if expression is None:
        raise ValueError(f"cannot read placeholder {source!r}; write "
                         '{{ geo.city }} or {{ geo.city | default: "your city" }}')
    spec, why = lookup(expression["field"])
    if spec is None:
        raise ValueError(f"placeholder {source!r}: {why}")
    default = expression["dq"] if expression["dq"] is not None else expression["sq"]
    return source, normalize(expression["field"]), default or ""


def _escapes(pieces: list[str | tuple[str, str, str]], kind: TemplateKind,
             attribute: str) -> list[tuple[Escape, str]]:
    """How each placeholder is escaped (and, for a URL, the literal text before it)."""
    count = sum(isinstance(p, tuple) for p in pieces)
    if kind == "text":
        return [("none", "")] * count
    marked = "".join(p if isinstance(p, str) else MARK for p in pieces)
    if kind == "attribute":
        return [_in_attribute(attribute.lower(), marked[:i])
                for i, char in enumerate(marked) if char == MARK]
    return [("html", "") if spot.place == "text" else _in_attribute(spot.attribute, spot.before)
            for spot in spots(marked)]


def _in_attribute(name: str, before: str) -> tuple[Escape, str]:
    problem = attribute_problem(name)
    if problem is not None:
        raise ValueError(f"a visitor field cannot go here: {problem}")
    if name not in URL_ATTRIBUTES:
        return "html", ""
    if url_fixed(before):
        literal = html.unescape(before.split(MARK, 1)[0])
        if not is_safe_url(literal):
            raise ValueError(f"a visitor field cannot go into a {literal.split(':')[0]}: "
                             f"URL ({name}); only relative and http(s) URLs take visitor data")
        return "html", ""
    if MARK in before:
        raise ValueError(f"two visitor fields start the {name} URL; write a literal '/', "
                         "'?' or '#' between them")
    return "url", html.unescape(before)
