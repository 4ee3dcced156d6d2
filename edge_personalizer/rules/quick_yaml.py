"""A fast reader for the shapes rule files are written in, with the line of every value.

Rule files are block mappings and lists of one-line values (plain, quoted, or small
`{...}` / `[...]` collections on one line) and `|` blocks of HTML. This reads exactly
those, line by line, and gives the same values and the same (line, column) marks as the
full YAML reader does (the same PyYAML rules decide what a plain value is: 3 is a number,
yes is true, 2026-12-24 a date). Anything else — a `>` block, an anchor, a tag, a value
continued on the next line, a mistake — makes it decline (None), and the full reader,
which says what is wrong and where, reads the file instead. About ten times faster than
composing YAML nodes in Python, and faster than libyaml's own parse through PyYAML.

Here: the lines, their indentation, block mappings and lists, `|` blocks. The values
written on one line are read by yaml_line, what a plain or quoted value means by
yaml_scalars.
"""

from __future__ import annotations

import re
from typing import Any, Final

from .yaml_line import (
    KEY,
    MAX_DEPTH,
    MAX_VALUES,
    NOT_PLAIN_START,
    KeyPath,
    LineReader,
    Marks,
    Repeated,
)
from .yaml_scalars import Decline, quoted, skip

__all__ = ["KEY", "MAX_DEPTH", "MAX_VALUES", "Marks", "Repeated", "read"]


# Characters this reader leaves to the full one: those YAML refuses anywhere (PyYAML's
# Reader.NON_PRINTABLE), tabs, and every line break but \n (\r, NEL, U+2028, U+2029), and
# the byte order mark (skipped at the start of a file).
_UNREAD: Final = re.compile("[^\n\x20-\x7E\xA0-\u2027\u202A-\uD7FF\uE000-\uFEFE\uFF00-\uFFFD"
                            "\U00010000-\U0010ffff]")
_KEY_END: Final = re.compile(r":(?= |$)")                  # the colon after a plain key
# The usual line: a plain key without colon or #, its colon, and the rest of the line.
_KEY_VALUE: Final = re.compile(r"([^\s'\"#\[\]{},&*!|>%@`?:-][^:#]*?) *(:)(?: +|$)(.*)")
# The usual plain value: no colon, no # (no comment), nothing that starts something else.
_PLAIN_SIMPLE: Final = re.compile(r"[^\s'\"#\[\]{},&*!|>%@`?:-][^:#]*$")


class _Block:
    """An open block mapping or list: its column, the value, and where it is."""

    __slots__ = ("indent", "value", "at", "indentless")

    def __init__(self, indent: int, value: Any, at: KeyPath, indentless: bool = False) -> None:
        self.indent = indent
        self.value = value
        self.at = at
        self.indentless = indentless   # a list under a key, written at the key's column


def _is_entry(line: str, column: int) -> bool:
    return line[column] == "-" and (len(line) == column + 1 or line[column + 1] == " ")


def read(text: str) -> tuple[Any, Marks] | Repeated | None:
    """The document's value and marks; or the first repeated key of a file that is
    otherwise read (a mistake found without reading the file again); or None when the
    full reader must read it."""
    if _UNREAD.search(text):
        return None
    reader = LineReader()
    try:
        data = _read(reader, text)
    except (Decline, IndexError):
        return None
    if reader.repeated is not None:
        return reader.repeated
    return data, reader.marks


class _Pending:
    """A `key:` whose value is on the lines below it (or empty)."""

    __slots__ = ("block", "key", "at", "line", "colon")

    def __init__(self, block: _Block, key: Any, at: KeyPath, line: int, colon: int) -> None:
        self.block = block
        self.key = key
        self.at = at
        self.line = line
        self.colon = colon

    def empty(self, reader: LineReader) -> None:
        """Nothing below the key: an empty value, marked just after the colon."""
        saved, reader.line = reader.line, self.line
        reader.mark(self.at, self.colon + 1)
        reader.line = saved
        self.block.value[self.key] = None


def _read(reader: LineReader, text: str) -> Any:
    stack: list[_Block] = []
    pending: _Pending | None = None
    below = -1   # after a one-line value: the next line may not be indented past this
    started = False
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1   # from 1
        content = line.lstrip(" ")
        if not content or content[0] == "#":
            continue
        indent = len(line) - len(content)
        reader.line = number
        if content[0] in "-." and line.startswith(("---", "...")) \
                and (len(line) == 3 or line[3] == " "):
            if started or line[:3] == "..." or line[3:].strip(" ")[:1] not in ("", "#"):
                raise Decline   # a second document, or a value after the marker
            started = True   # the document start marker, before the document
            continue
        started = True
        if below >= 0 and indent > below:
            raise Decline   # a value continued on this line, or a mistake
        below = -1
        entry = content[0] == "-" and (len(content) == 1 or content[1] == " ")
        if not stack:
            if indent or entry:
                raise Decline   # not a mapping of sections: the full reader says so
            stack.append(_Block(0, {}, ()))
            reader.mark((), 0)
        if pending is not None:
            parent = pending.block
            if indent > parent.indent or (indent == parent.indent and entry):
                block = _Block(indent, [] if entry else {}, pending.at,
                               indentless=indent == parent.indent)
                parent.value[pending.key] = block.value
                reader.mark(pending.at, indent)
                stack.append(block)
            else:
                pending.empty(reader)
            pending = None
        block = stack[-1]
        while block.indent > indent or (block.indentless and block.indent == indent
                                        and not entry):
            stack.pop()
            if not stack:
                raise Decline
            block = stack[-1]
        if block.indent != indent:
            raise Decline
        column = indent
        if isinstance(block.value, list):
            if not entry:
                raise Decline
            column = skip(line, column + 1)
            at = (*block.at, len(block.value))
            if column >= len(line) or line[column] == "#" or _is_entry(line, column):
                raise Decline   # an empty entry, or a list in a list
            simple = _KEY_VALUE.match(line, column)
            if simple is None and _key_end(line, column) is None:
                block.value.append(reader.inline(line, column, at))
                below = block.indent
                if reader.literal is not None:
                    block.value[-1], number = _literal(reader, lines, number, block.indent)
                continue
            inner = _Block(column, {}, at)
            block.value.append(inner.value)
            reader.mark(at, column)
            stack.append(inner)
            block = inner
        elif entry:
            raise Decline
        else:
            simple = _KEY_VALUE.match(line, column)
        if simple is None:
            pending = _entry(reader, block, line, column)
        else:
            pending = _simple_entry(reader, block, line, column, simple)
        if pending is None:
            below = block.indent
            if reader.literal is not None:
                mapping = block.value
                key = next(reversed(mapping))   # the key just read
                mapping[key], number = _literal(reader, lines, number, block.indent)
    if pending is not None:
        pending.empty(reader)
    return stack[0].value if stack else None


def _literal(reader: LineReader, lines: list[str], number: int, parent: int) -> tuple[str, int]:
    """The text of a literal block whose `|` ended line `number` (the block starts on the
    next line) inside a block at column `parent`, and the number of its last line; as
    PyYAML's scan_block_scalar makes it."""
    chomping, reader.literal = reader.literal, None
    first = number
    while first < len(lines) and not lines[first].strip(" "):
        if lines[first]:
            raise Decline   # spaces on a blank line before the text
        first += 1
    if first == len(lines):
        raise Decline   # an empty block
    indent = len(lines[first]) - len(lines[first].lstrip(" "))
    if indent <= parent:
        raise Decline   # an empty block
    chunks = ["\n"] * (first - number)
    breaks: list[str] = []
    line_break = ""
    end = first
    while end < len(lines):
        line = lines[end]
        if line[:indent].strip(" "):
            break   # a line of the document after the block
        if not line[indent:]:   # a blank line (up to the block's indentation)
            if end == len(lines) - 1:
                break   # the end of the file, after a line break
            breaks.append("\n")
            end += 1
            continue
        chunks.append(line_break)   # of the line before ("" before the first)
        chunks.extend(breaks)
        breaks = []
        chunks.append(line[indent:])
        line_break = "\n" if end < len(lines) - 1 else ""
        end += 1
    if chomping != "-":
        chunks.append(line_break)
    if chomping == "+":
        chunks.extend(breaks)
    return "".join(chunks), end


def _simple_entry(reader: LineReader, block: _Block, line: str, column: int,
                  simple: re.Match[str]) -> _Pending | None:
    """`key: value` with a plain key holding no colon or #, as most are written."""
    key_text, value = simple.group(1, 3)
    if len(key_text) > 1024:
        raise Decline
    mapping = block.value
    key, at = reader.key(mapping, reader.plain(key_text), block.at, column)
    if not value or value[0] == "#":
        mapping[key] = None   # keeps the order the keys were written in
        return _Pending(block, key, at, reader.line, simple.start(2))
    if _PLAIN_SIMPLE.match(value):   # a plain value holding no colon or #
        reader.mark(at, simple.start(3))
        mapping[key] = reader.plain(value.rstrip(" "))
    else:
        mapping[key] = reader.inline(line, simple.start(3), at)
    return None


def _key_end(line: str, column: int) -> int | None:
    """Where the colon after a key starting at `column` is, when the line starts a key."""
    first = line[column]
    if first in "[{":
        return None   # a [...] or {...} value (as a key, the full reader reads it)
    if first in "'\"":
        _, end = quoted(line, column)
        end = skip(line, end)
        if line[end:end + 1] == ":" and line[end + 1:end + 2] in ("", " "):
            return end
        return None
    found = _KEY_END.search(line, column)
    if found is None:
        return None
    if first in NOT_PLAIN_START and (first not in "-?:" or line[column + 1:column + 2]
                                      in ("", " ")):
        raise Decline
    key = line[column:found.start()]
    if " #" in key or len(key) > 1024:
        raise Decline
    return found.start()


def _entry(reader: LineReader, block: _Block, line: str, column: int) -> _Pending | None:
    """One `key: value` of a block mapping; a _Pending when the value is below the key."""
    colon = _key_end(line, column)
    if colon is None:
        raise Decline   # a value alone on its line: a continued value, or a mistake
    raw: Any
    if line[column] in "'\"":
        raw = quoted(line, column)[0]
    else:
        raw = reader.plain(line[column:colon].rstrip(" "))
    mapping = block.value
    key, at = reader.key(mapping, raw, block.at, column)
    start = skip(line, colon + 1)
    if start >= len(line) or line[start] == "#":
        mapping[key] = None   # keeps the order the keys were written in
        return _Pending(block, key, at, reader.line, colon)
    mapping[key] = reader.inline(line, start, at)
    return None
