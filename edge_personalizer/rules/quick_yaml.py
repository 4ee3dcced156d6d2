"""A fast reader for the shapes rule files are written in, with the line of every value.

Rule files are block mappings and lists of one-line values (plain, quoted, or small
`{...}` / `[...]` collections on one line) and `|` blocks of HTML. This reads exactly
those, line by line, and gives the same values and the same (line, column) marks as the
full YAML reader does (the same PyYAML rules decide what a plain value is: 3 is a number,
yes is true, 2026-12-24 a date). Anything else — a `>` block, an anchor, a tag, a value
continued on the next line, a mistake — makes it decline (None), and the full reader,
which says what is wrong and where, reads the file instead. About ten times faster than
composing YAML nodes in Python, and faster than libyaml's own parse through PyYAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

KEY = "\0key"   # marks[(*path, KEY)] is where the key of the value at `path` was written
KeyPath = tuple[str | int, ...]
Marks = dict[KeyPath, tuple[int, int]]

# Past these the file is reported as too large (loader._PlainBuilder says so).
MAX_VALUES = 1_000_000
MAX_DEPTH = 100


class _Decline(Exception):
    """Not a shape this reader handles: the full reader reads the file."""


# Characters this reader leaves to the full one: those YAML refuses anywhere (PyYAML's
# Reader.NON_PRINTABLE), tabs, and every line break but \n (\r, NEL, U+2028, U+2029), and
# the byte order mark (skipped at the start of a file).
_UNREAD = re.compile("[^\n\x20-\x7E\xA0-\u2027\u202A-\uD7FF\uE000-\uFEFE\uFF00-\uFFFD"
                     "\U00010000-\U0010ffff]")
_KEY_END = re.compile(r":(?= |$)")                  # the colon after a plain key
# The usual line: a plain key without colon or #, its colon, and the rest of the line.
_KEY_VALUE = re.compile(r"([^\s'\"#\[\]{},&*!|>%@`?:-][^:#]*?) *(:)(?: +|$)(.*)")
# The usual plain value: no colon, no # (no comment), nothing that starts something else.
_PLAIN_SIMPLE = re.compile(r"[^\s'\"#\[\]{},&*!|>%@`?:-][^:#]*$")
# A literal block (`|`, `|-`, `|+`; no indentation digit), then nothing or a comment.
_LITERAL_HEADER = re.compile(r"\|([-+]?)(?: +#.*| *)$")
_COMMENT = re.compile(r" +#")                       # a comment after a plain value
_BLOCK_VALUE_END = re.compile(r":(?: |$)")          # a second `key:` in a plain value
_SINGLE = re.compile(r"'((?:[^']|'')*)'")
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_ESCAPES = {"0": "\0", "a": "\x07", "b": "\x08", "t": "\x09", "n": "\x0A", "v": "\x0B",
            "f": "\x0C", "r": "\x0D", "e": "\x1B", " ": " ", '"': '"', "/": "/", "\\": "\\",
            "N": "\x85", "_": "\xA0", "L": "\u2028", "P": "\u2029"}
# A chunk of a plain value inside [...] or {...}: it ends at a space, at , ? [ ] { }, and at
# a colon followed by a space or one of , [ ] { } (PyYAML's scan_plain in the flow context).
_FLOW_CHUNK = re.compile(r"(?:[^\s,?\[\]{}:]|:(?![\s,\[\]{}]|$))+")
_NOT_PLAIN_START = frozenset("-?:,[]{}#&*!|>'\"%@`")
_NOT_FLOW_PLAIN_START = frozenset("?:,[]{}#&*!|>'\"%@`")

_STR = "tag:yaml.org,2002:str"
_BUILDABLE = frozenset({_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
                        "tag:yaml.org,2002:timestamp"})
_RESOLVERS: dict[str | None, list[tuple[str, re.Pattern[str]]]] = \
    yaml.SafeLoader.yaml_implicit_resolvers
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_PLAIN_CACHE: dict[str, Any] = {}   # plain text -> its value; values repeat across rules
_PLAIN_CACHE_SIZE = 100_000


def plain_value(text: str) -> Any:
    """What a plain (unquoted) value means, exactly as the full reader decides it."""
    try:
        return _PLAIN_CACHE[text]
    except KeyError:
        pass
    tag = _STR
    for candidate, pattern in _RESOLVERS.get(text[:1] if text else "", []):
        if pattern.match(text):
            tag = candidate
            break
    if tag not in _BUILDABLE:   # << (merge), = (value) and the like
        raise _Decline
    if tag == _STR:
        value: Any = text
    else:
        try:
            value = _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, text), deep=True)
        except Exception as exc:   # the full reader reports it, at its place
            raise _Decline from exc
    if len(_PLAIN_CACHE) >= _PLAIN_CACHE_SIZE:
        _PLAIN_CACHE.clear()
    _PLAIN_CACHE[text] = value
    return value


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) > 1:
        number = int(code[1:], 16)
        if number > 0x10FFFF:
            raise _Decline
        return chr(number)
    if code not in _ESCAPES:
        raise _Decline
    return _ESCAPES[code]


def _quoted(line: str, at: int) -> tuple[str, int]:
    """The quoted value starting at `at` (closed on the same line) and where it ends."""
    if line[at] == "'":
        match = _SINGLE.match(line, at)
        if match is None:
            raise _Decline
        return match.group(1).replace("''", "'"), match.end()
    match = _DOUBLE.match(line, at)
    if match is None:
        raise _Decline
    inner = match.group(1)
    return (_ESCAPE.sub(_unescape, inner) if "\\" in inner else inner), match.end()


def _only_comment_after(line: str, at: int) -> None:
    rest = line[at:]
    if rest.strip(" ") and not _COMMENT.match(rest):
        raise _Decline


class _Reader:
    def __init__(self) -> None:
        self.marks: Marks = {}
        self.left = MAX_VALUES
        self.line = 0   # the line being read, from 1
        self.repeated: Repeated | None = None
        self.literal: str | None = None   # after `key: |`: its chomping ("", "-" or "+")

    def mark(self, at: KeyPath, column: int) -> None:
        self.left -= 1
        if self.left < 0 or len(at) > MAX_DEPTH:
            raise _Decline
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
        first = line[start]
        if first in "'\"":
            self.mark(at, start)
            value, end = _quoted(line, start)
            _only_comment_after(line, end)
            return value
        if first in "[{":
            value, end = self.flow(line, start, at)
            _only_comment_after(line, end)
            return value
        if first == "|":
            header = _LITERAL_HEADER.match(line, start)
            if header is None:
                raise _Decline
            self.mark(at, start)
            self.literal = header.group(1)
            return None   # the text is on the lines below: _read fills it in
        if first in _NOT_PLAIN_START and (first not in "-?:" or line[start + 1:start + 2]
                                          in ("", " ")):
            raise _Decline
        text = line[start:]
        comment = _COMMENT.search(text)
        if comment:
            text = text[:comment.start()]
        text = text.rstrip(" ")
        if _BLOCK_VALUE_END.search(text):
            raise _Decline
        self.mark(at, start)
        return plain_value(text)

    def flow(self, line: str, start: int, at: KeyPath) -> tuple[Any, int]:
        """A [...] or {...} closed on the same line, and where it ends."""
        self.mark(at, start)
        closing = "]" if line[start] == "[" else "}"
        pos = _skip(line, start + 1)
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
                    raw, pos = _quoted(line, pos)
                else:
                    text, pos = self.flow_plain(line, pos)
                    raw = plain_value(text)
                if line[pos] != ":" or line[pos + 1] != " ":
                    raise _Decline
                pos = _skip(line, pos + 1)
                if line[pos] in ",}":
                    raise _Decline   # a key without a value
                key, path = self.key(mapping, raw, at, key_start)
                mapping[key], pos = self.flow_node(line, pos, path)
            pos = _skip(line, pos)
            if line[pos] == ",":
                pos = _skip(line, pos + 1)
                if line[pos] in "]}":
                    raise _Decline   # a trailing comma
                continue
            if line[pos] == closing:
                return (items if closing == "]" else mapping), pos + 1
            raise _Decline

    def flow_node(self, line: str, pos: int, at: KeyPath) -> tuple[Any, int]:
        first = line[pos]
        if first in "[{":
            return self.flow(line, pos, at)
        self.mark(at, pos)
        if first in "'\"":
            return _quoted(line, pos)
        text, end = self.flow_plain(line, pos)
        return plain_value(text), end

    def flow_plain(self, line: str, pos: int) -> tuple[str, int]:
        first = line[pos]
        if first in _NOT_FLOW_PLAIN_START or first == "-" and line[pos + 1:pos + 2] in (
                "", " ", ",", "[", "]", "{", "}"):
            raise _Decline
        start = end = pos
        while True:
            chunk = _FLOW_CHUNK.match(line, pos)
            if chunk is None or chunk.end() == pos:
                break
            end = chunk.end()
            pos = _skip(line, end)
            if pos < len(line) and line[pos] in "#?":
                raise _Decline   # a comment inside [...] or {...}, or a ? key
            if pos == end:
                break
        if end == start:
            raise _Decline
        return line[start:end], end


class _Block:
    """An open block mapping or list: its column, the value, and where it is."""

    __slots__ = ("indent", "value", "at", "indentless")

    def __init__(self, indent: int, value: Any, at: KeyPath, indentless: bool = False) -> None:
        self.indent = indent
        self.value = value
        self.at = at
        self.indentless = indentless   # a list under a key, written at the key's column


def _skip(line: str, pos: int) -> int:
    """The first position from `pos` that is not a space."""
    while pos < len(line) and line[pos] == " ":
        pos += 1
    return pos


def _is_entry(line: str, column: int) -> bool:
    return line[column] == "-" and (len(line) == column + 1 or line[column + 1] == " ")


@dataclass(frozen=True)
class Repeated:
    """The first key written twice in one mapping (the full reader stops at it too)."""

    key: str
    line: int
    column: int


def read(text: str) -> tuple[Any, Marks] | Repeated | None:
    """The document's value and marks; or the first repeated key of a file that is
    otherwise read (a mistake found without reading the file again); or None when the
    full reader must read it."""
    if _UNREAD.search(text):
        return None
    reader = _Reader()
    try:
        data = _read(reader, text)
    except (_Decline, IndexError):
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

    def empty(self, reader: _Reader) -> None:
        """Nothing below the key: an empty value, marked just after the colon."""
        saved, reader.line = reader.line, self.line
        reader.mark(self.at, self.colon + 1)
        reader.line = saved
        self.block.value[self.key] = None


def _read(reader: _Reader, text: str) -> Any:
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
                raise _Decline   # a second document, or a value after the marker
            started = True   # the document start marker, before the document
            continue
        started = True
        if below >= 0 and indent > below:
            raise _Decline   # a value continued on this line, or a mistake
        below = -1
        entry = content[0] == "-" and (len(content) == 1 or content[1] == " ")
        if not stack:
            if indent or entry:
                raise _Decline   # not a mapping of sections: the full reader says so
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
                raise _Decline
            block = stack[-1]
        if block.indent != indent:
            raise _Decline
        column = indent
        if isinstance(block.value, list):
            if not entry:
                raise _Decline
            column = _skip(line, column + 1)
            at = (*block.at, len(block.value))
            if column >= len(line) or line[column] == "#" or _is_entry(line, column):
                raise _Decline   # an empty entry, or a list in a list
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
            raise _Decline
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


def _literal(reader: _Reader, lines: list[str], number: int, parent: int) -> tuple[str, int]:
    """The text of a literal block whose `|` ended line `number` (the block starts on the
    next line) inside a block at column `parent`, and the number of its last line; as
    PyYAML's scan_block_scalar makes it."""
    chomping, reader.literal = reader.literal, None
    first = number
    while first < len(lines) and not lines[first].strip(" "):
        if lines[first]:
            raise _Decline   # spaces on a blank line before the text
        first += 1
    if first == len(lines):
        raise _Decline   # an empty block
    indent = len(lines[first]) - len(lines[first].lstrip(" "))
    if indent <= parent:
        raise _Decline   # an empty block
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


def _simple_entry(reader: _Reader, block: _Block, line: str, column: int,
                  simple: re.Match[str]) -> _Pending | None:
    """`key: value` with a plain key holding no colon or #, as most are written."""
    key_text, value = simple.group(1, 3)
    if len(key_text) > 1024:
        raise _Decline
    mapping = block.value
    key, at = reader.key(mapping, plain_value(key_text), block.at, column)
    if not value or value[0] == "#":
        mapping[key] = None   # keeps the order the keys were written in
        return _Pending(block, key, at, reader.line, simple.start(2))
    if _PLAIN_SIMPLE.match(value):   # a plain value holding no colon or #
        reader.mark(at, simple.start(3))
        mapping[key] = plain_value(value.rstrip(" "))
    else:
        mapping[key] = reader.inline(line, simple.start(3), at)
    return None


def _key_end(line: str, column: int) -> int | None:
    """Where the colon after a key starting at `column` is, when the line starts a key."""
    first = line[column]
    if first in "[{":
        return None   # a [...] or {...} value (as a key, the full reader reads it)
    if first in "'\"":
        _, end = _quoted(line, column)
        end = _skip(line, end)
        if line[end:end + 1] == ":" and line[end + 1:end + 2] in ("", " "):
            return end
        return None
    found = _KEY_END.search(line, column)
    if found is None:
        return None
    if first in _NOT_PLAIN_START and (first not in "-?:" or line[column + 1:column + 2]
                                      in ("", " ")):
        raise _Decline
    key = line[column:found.start()]
    if " #" in key or len(key) > 1024:
        raise _Decline
    return found.start()


def _entry(reader: _Reader, block: _Block, line: str, column: int) -> _Pending | None:
    """One `key: value` of a block mapping; a _Pending when the value is below the key."""
    colon = _key_end(line, column)
    if colon is None:
        raise _Decline   # a value alone on its line: a continued value, or a mistake
    raw: Any
    if line[column] in "'\"":
        raw = _quoted(line, column)[0]
    else:
        raw = plain_value(line[column:colon].rstrip(" "))
    mapping = block.value
    key, at = reader.key(mapping, raw, block.at, column)
    start = _skip(line, colon + 1)
    if start >= len(line) or line[start] == "#":
        mapping[key] = None   # keeps the order the keys were written in
        return _Pending(block, key, at, reader.line, colon)
    mapping[key] = reader.inline(line, start, at)
    return None
