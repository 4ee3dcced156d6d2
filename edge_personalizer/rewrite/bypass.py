"""Finding where a slot element ends, so the rest of a page can skip the rewriter.

Rules mostly touch the top of a page; once every edit is done and the edited elements
are closed, the remaining bytes would come out of the rewriter unchanged anyway. This
module finds, in the raw bytes, the end tag that closes an element whose start tag the
rewriter has just seen. It is deliberately narrow: only elements that HTML never closes
implicitly, only pages it can read plainly; anything else answers "unknown", and the
rewriter keeps going as usual.
"""

from __future__ import annotations

import re

# Elements whose end tag the HTML parser never implies: depth counting by name is exact.
CONTAINERS = frozenset({"div", "section", "aside", "header", "footer", "nav", "main",
                        "article", "span", "figure", "blockquote", "ul", "ol", "picture",
                        "details", "fieldset"})
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                       "noframes", "noscript", "plaintext"})
_TAG = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9:-]*)")
_MARKER = re.compile(rb"""data-ep-slot\s*=\s*(["']?)([^"'\s>]+)\1""")
_MARKER_SELECTOR = re.compile(
    r"""^(?:[a-z][a-z0-9-]*)?\[data-ep-slot=(["'])([A-Za-z0-9_.-]+)\1\]$""")


def marker_slot(selector: str) -> str | None:
    """The slot name of a `[data-ep-slot="name"]` (or `tag[data-ep-slot="name"]`) selector;
    None for any other selector."""
    match = _MARKER_SELECTOR.match(selector)
    return match.group(2) if match else None


_TAG_REST = re.compile(rb"""(?:[^>"']+|"[^"]*"|'[^']*')*>""")


def _tag_end(data: bytes | bytearray, position: int) -> int:
    """The index just past the `>` closing the tag that starts at `position`, honouring
    quoted attribute values; -1 if not in `data` yet."""
    match = _TAG_REST.match(data, position)
    return match.end() if match else -1


def find_marker(data: bytes | bytearray, name: str, start: int = 0) -> int:
    """Where the start tag carrying data-ep-slot=`name` begins; -1 if not found."""
    position = data.find(b"data-ep-slot", start)
    while position >= 0:
        match = _MARKER.match(data, position)
        if match is not None and match.group(2).decode("ascii", "replace") == name:
            return data.rfind(b"<", 0, position)
        position = data.find(b"data-ep-slot", position + 12)
    return -1


def element_end(data: bytes | bytearray, tag_start: int, tag_name: str) -> int:
    """The index just past the end tag matching the start tag at `tag_start`; -1 when it
    is not in `data` yet or the markup is not plain enough to be sure."""
    name = tag_name.lower()
    if name not in CONTAINERS:
        return -1
    position = _tag_end(data, tag_start)
    if position < 0 or data[position - 2:position] == b"/>":
        return -1
    depth = 1
    while True:
        lt = data.find(b"<", position)
        if lt < 0:
            return -1
        if data.startswith(b"<!--", lt):
            close = data.find(b"-->", lt + 4)
            if close < 0:
                return -1
            position = close + 3
            continue
        if data.startswith((b"<!", b"<?"), lt):
            return -1   # CDATA, doctype, processing instructions: not plain
        match = _TAG.match(data, lt)
        if match is None:
            position = lt + 1
            continue
        closing, found = match.group(1) == b"/", match.group(2).decode("ascii").lower()
        end = _tag_end(data, lt)
        if end < 0:
            return -1
        if found in ("svg", "math"):
            return -1   # foreign content has its own rules
        if not closing and found in _RAW_TEXT:
            close = data.lower().find(b"</" + found.encode(), end)
            if close < 0:
                return -1
            position = close
            continue
        if found == name:
            depth += -1 if closing else 1
            if depth == 0:
                return end
        position = end
