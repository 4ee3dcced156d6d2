"""Values written on one line of a rule file (plain, quoted, `[...]`, `{...}` and the
header of a `|` block) and the (line, column) mark of each, for the block reader
(quick_yaml), which reads the lines they stand on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from .yaml_scalars import COMMENT, Decline, PlainValues, only_comment_after, quoted, skip

KEY: Final = "\0key"   # marks[(*path, KEY)] is where the key of the value at `path` was written
KeyPath = tuple[str | int, ...]
Marks = dict[KeyPath, tuple[int, int]]

# Past these the file is reported as too large (loader._PlainBuilder says so).
MAX_VALUES: Final = 1_000_000
MAX_DEPTH: Final = 100

# A literal block (`|`, `|-`, `|+`; no indentation digit), then nothing or a comment.
_LITERAL_HEADER: Final = re.compile(r"\|([-+]?)(?: +#.*| *)$")
_BLOCK_VALUE_END: Final = re.compile(r":(?: |$)")          # a second `key:` in a plain value
# A chunk of a plain value inside [...] or {...}: it ends at a space, at , ? [ ] { }, and at
# a colon followed by a space or one of , [ ] { } (PyYAML's scan_plain in the flow context).
# Possessive (++), as yaml_scalars' quoted values: no memory kept for each character.
_FLOW_CHUNK: Final = re.compile(r"(?:[^\s,?\[\]{}:]|:(?![\s,\[\]{}]|$))++")
NOT_PLAIN_START: Final = frozenset("-?:,[]{}#&*!|>'\"%@`")
_NOT_FLOW_PLAIN_START: Final = frozenset("?:,[]{}#&*!|>'\"%@`")


@dataclass(frozen=True)
class Repeated:
    """The first key written twice in one mapping (the full reader stops at it too)."""

    key: str
    line: int
    column: int


class LineReader:
    """One file's reading: its marks, the line being read, and its values on one line."""

    def __init__(self) -> None:
        self.marks: Marks = {}
        self.plain = PlainValues()   # what this file's plain values mean
        self.left = MAX_VALUES
        self.line = 0   # the line being read, from 1
        self.repeated: Repeated | None = None
        self.literal: str | None = None   # after `key: |`: its chomping ("", "-" or "+")

    def mark(self, at: KeyPath, column: int) -> None:
        self.left -= 1
        if self.left < 0 or len(at) > MAX_DEPTH:
            raise Decline
        self.marks[at] = (self.line, column + 1)

    def key(self, out: dict[Any, Any], raw: Any, at: KeyPath, column: int
            ) -> tuple[Any, KeyPath]:
        """Key `raw` of the mapping `out` (at `at`) as the mapping holds it, and the path
        of its value."""
        key: Any
        if type(raw) is str:
            key = name = raw
        else:
            key = raw if isinstance(raw, (int, float, bool)) or raw is None else str(raw)
            name = str(key)
        if key in out and self.repeated is None:   # reported once the whole file is read
            self.repeated = Repeated(name, self.line, column + 1)
        self.marks[(*at, name, KEY)] = (self.line, column + 1)
        return key, (*at, name)

    def inline(self, line: str, start: int, at: KeyPath) -> Any:
        """A value written on the rest of the line from `start` (which is not blank)."""
        value: Any   # (a string when quoted, a list or mapping in brackets)
        first = line[start]
        if first in "'\"":
            self.mark(at, start)
            value, end = quoted(line, start)
            only_comment_after(line, end)
            return value
        if first in "[{":
            value, end = self.flow(line, start, at)
            only_comment_after(line, end)
            return value
        if first == "|":
            header = _LITERAL_HEADER.match(line, start)
            if header is None:
                raise Decline
            self.mark(at, start)
            self.literal = header.group(1)
            return None   # the text is on the lines below: _read fills it in
        if first in NOT_PLAIN_START and (first not in "-?:" or line[start + 1:start + 2]
                                          in ("", " ")):
            raise Decline
        text = line[start:]
        comment = COMMENT.search(text)
        if comment:
            text = text[:comment.start()]
        text = text.rstrip(" ")
        if _BLOCK_VALUE_END.search(text):
            raise Decline
        self.mark(at, start)
        return self.plain(text)

    def flow(self, line: str, start: int, at: KeyPath) -> tuple[Any, int]:
        """A [...] or {...} closed on the same line, and where it ends."""
        self.mark(at, start)
        closing = "]" if line[start] == "[" else "}"
        pos = skip(line, start + 1)
        if line[pos] == closing:
            return ([] if closing == "]" else {}), pos + 1
        items: list[Any] = []
        mapping: dict[Any, Any] = {}
        while True:
            if closing == "]":
                value, pos = self.flow_node(line, pos, (*at, len(items)))
                items.append(value)
            else:
                key_start = pos
                raw: Any
                if line[pos] in "'\"":
                    raw, pos = quoted(line, pos)
                else:
                    text, pos = self.flow_plain(line, pos)
                    raw = self.plain(text)
                if line[pos] != ":" or line[pos + 1] != " ":
                    raise Decline
                pos = skip(line, pos + 1)
                if line[pos] in ",}":
                    raise Decline   # a key without a value
                key, path = self.key(mapping, raw, at, key_start)
                mapping[key], pos = self.flow_node(line, pos, path)
            pos = skip(line, pos)
            if line[pos] == ",":
                pos = skip(line, pos + 1)
                if line[pos] in "]}":
                    raise Decline   # a trailing comma
                continue
            if line[pos] == closing:
                return (items if closing == "]" else mapping), pos + 1
            raise Decline

    def flow_node(self, line: str, pos: int, at: KeyPath) -> tuple[Any, int]:
        first = line[pos]
        if first in "[{":
            return self.flow(line, pos, at)
        self.mark(at, pos)
        if first in "'\"":
            return quoted(line, pos)
        text, end = self.flow_plain(line, pos)
        return self.plain(text), end

    def flow_plain(self, line: str, pos: int) -> tuple[str, int]:
        first = line[pos]
        if first in _NOT_FLOW_PLAIN_START or first == "-" and line[pos + 1:pos + 2] in (
                "", " ", ",", "[", "]", "{", "}"):
            raise Decline
        start = end = pos
        while True:
            chunk = _FLOW_CHUNK.match(line, pos)
            if chunk is None or chunk.end() == pos:
                break
            end = chunk.end()
            pos = skip(line, end)
            if pos < len(line) and line[pos] in "#?":
                raise Decline   # a comment inside [...] or {...}, or a ? key
            if pos == end:
                break
        if end == start:
            raise Decline
        return line[start:end], end
