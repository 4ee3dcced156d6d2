"""Variant templates: HTML with `{{ geo.city | default: "your city" }}` placeholders.

Parsed when rules load (an unknown field is an error then, never at request time);
rendering only looks values up and escapes them for HTML text or attribute values.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from ..classify.visitor import Visitor
from .fields import lookup, normalize

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_EXPRESSION = re.compile(
    r"""^(?P<field>[a-z_][a-z0-9_.\-]*)\s*(?:\|\s*default\s*:\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'))?$""")


@dataclass(frozen=True)
class Placeholder:
    field: str
    default: str


@dataclass(frozen=True)
class Template:
    """Literal HTML parts and placeholders, in order."""

    parts: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Raises ValueError naming the first bad placeholder."""
        parts: list[str | Placeholder] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            if match.start() > position:
                parts.append(text[position:match.start()])
            expression = _EXPRESSION.match(match.group(1))
            if expression is None:
                raise ValueError(f"cannot read placeholder {match.group(0)!r}; write "
                                 '{{ geo.city }} or {{ geo.city | default: "your city" }}')
            spec, why = lookup(expression["field"])
            if spec is None:
                raise ValueError(f"placeholder {match.group(0)!r}: {why}")
            default = expression["dq"] if expression["dq"] is not None else expression["sq"]
            parts.append(Placeholder(normalize(expression["field"]), default or ""))
            position = match.end()
        if position < len(text):
            parts.append(text[position:])
        return cls(tuple(parts))

    @property
    def fields(self) -> set[str]:
        return {part.field for part in self.parts if isinstance(part, Placeholder)}

    @property
    def is_static(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    def render(self, visitor: Visitor) -> str:
        """The HTML with each placeholder's value escaped (safe in text and in quoted
        attribute values alike)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = visitor.field(part.field)
            if value in (None, ""):
                value = part.default
            elif isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
            out.append(html.escape(str(value), quote=True))
        return "".join(out)
