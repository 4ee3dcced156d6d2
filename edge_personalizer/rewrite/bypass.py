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
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# Elements whose end tag the HTML parser never implies: depth counting by name is exact.
CONTAINERS: Final = frozenset({"div", "section", "aside", "header", "footer", "nav", "main",
                               "article", "span", "figure", "blockquote", "ul", "ol", "picture",
                               "details", "fieldset"})
_RAW_TEXT: Final = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                              "noframes", "noscript", "plaintext"})
_MARKER: Final = re.compile(rb"""data-ep-slot\s*=\s*(["']?)([^"'\s>]+)\1""")
_MARKER_SELECTOR: Final = re.compile(
    r"""^(?:[a-z][a-z0-9-]*)?\[data-ep-slot=(["'])([A-Za-z0-9_.-]+)\1\]$""")


def marker(selector: str) -> tuple[str | None, str]:
    """The slot name of a `[data-ep-slot="name"]` (or `tag[data-ep-slot="name"]`) selector
    (None for any other selector), and the element it names, lower-cased ("section" for
    `section[data-ep-slot="x"]`; "" when it names none: any element carrying the marker)."""
    match = _MARKER_SELECTOR.match(selector)
    if match is None:
        return None, ""
    return match.group(2), match.group(0).split("[", 1)[0].lower()


def marker_slot(selector: str) -> str | None:
    """The slot name of a marker selector; None for any other selector (see marker)."""
    return marker(selector)[0]


# A start tag's name and attributes, up to where an attribute starts: a "<" found by
# searching back from a marker opens the marker's tag only if what follows reads so.
_OPEN_TAG: Final = re.compile(rb"""<([A-Za-z][A-Za-z0-9:-]*)(?:\s+[^\s"'<>=/]+"""
                              rb"""(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*\s+""")


def marker_element(data: bytes | bytearray, position: int) -> str | None:
    """The lower-cased name of the tag whose data-ep-slot attribute starts at `position`;
    None when that cannot be told plainly (a "<" or a quote inside an attribute value)."""
    start = data.rfind(b"<", max(0, position - 1024), position)
    if start < 0:
        return None
    match = _OPEN_TAG.fullmatch(data, start, position)
    return match.group(1).decode("ascii").lower() if match else None


_TAG_REST: Final = re.compile(rb"""(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")


def _tag_end(data: bytes | bytearray, position: int) -> int:
    """The index just past the `>` closing the tag that starts at `position`, honouring
    quoted attribute values; -1 if not in `data` yet."""
    match = _TAG_REST.match(data, position)
    return match.end() if match else -1


_NAME_END: Final = rb"(?![A-Za-z0-9:-])"
# "</" not followed by a letter: "</>" is dropped, anything else is a bogus comment that
# runs to the next ">" (HTML's end tag open state).
_END_TAG_OPEN_BOGUS: Final = rb"</(?:>|[^A-Za-z>][^>]*+>)"
_RAW_NAMES: Final = b"|".join(name.encode() for name in sorted(_RAW_TEXT))


def _scanner(name: str) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """For elements called `name`: a pattern that skips, in one match, text and every tag
    that cannot matter to where such an element ends (quoted attribute values honoured),
    and one that tells what stopped it."""
    tag = name.encode()
    interesting = (rb"/?(?:" + tag + rb"|svg|math)" + _NAME_END + rb"|(?:" + _RAW_NAMES
                   + rb")" + _NAME_END + rb"|[!?]")
    skip = re.compile(rb"(?:[^<]++|<(?!" + interesting + rb")(?:/?[A-Za-z][A-Za-z0-9:-]*+"
                      + _TAG_REST.pattern + rb"|(?![A-Za-z/]))|" + _END_TAG_OPEN_BOGUS
                      + rb")*+", re.IGNORECASE)
    token = re.compile(rb"(?P<comment><!--)|(?P<other><[!?])|<(?P<close>/?)" + tag + _NAME_END
                       + rb"|<(?P<foreign>/?(?:svg|math))" + _NAME_END + rb"|<(?P<raw>"
                       + _RAW_NAMES + rb")" + _NAME_END, re.IGNORECASE)
    return skip, token


_SCANNERS: Final[Mapping[str, tuple[re.Pattern[bytes], re.Pattern[bytes]]]] = MappingProxyType(
    {name: _scanner(name) for name in CONTAINERS})
_RAW_END: Final[Mapping[str, re.Pattern[bytes]]] = MappingProxyType(
    {name: re.compile(b"</" + name.encode(), re.IGNORECASE) for name in _RAW_TEXT})


def find_marker(data: bytes | bytearray, name: str, start: int = 0,
                stop: int | None = None) -> int:
    """Where the start tag carrying data-ep-slot=`name` begins (the attribute found in
    data[start:stop]); -1 if not found."""
    stop = len(data) if stop is None else stop
    position = data.find(b"data-ep-slot", start, stop)
    while position >= 0:
        match = _MARKER.match(data, position)
        if match is not None and match.group(2).decode("ascii", "replace") == name:
            return data.rfind(b"<", 0, position)
        position = data.find(b"data-ep-slot", position + 12, stop)
    return -1


def marker_value(data: bytes | bytearray, position: int) -> str | None:
    """The slot a data-ep-slot attribute at `position` names; None when its value cannot
    be read plainly (missing, cut off, or written with character references)."""
    match = _MARKER.match(data, position)
    if match is None or b"&" in match.group(2):
        return None
    return match.group(2).decode("ascii", "replace")


_TAG_NAME: Final = re.compile(rb"[A-Za-z][A-Za-z0-9:-]*")


def _escaped_script(data: bytes | bytearray, name: str, start: int, end: int) -> bool:
    """Whether raw text does not end at the end tag found: <plaintext> never ends, and in
    a script holding "<!--" a "</script>" may not end it."""
    return name == "plaintext" or name == "script" and data.find(b"<!--", start, end) >= 0


def slot_end(data: bytes | bytearray, name: str, *, read: int | None = None) -> tuple[int, str]:
    """Where the element carrying data-ep-slot=`name` ends in `data` (the page from its
    start), and its tag name as written; (-1, "") when not there, or when the marker
    occurs more than once in what the rewriter has read: `read` bytes (all of `data` when
    None; when 0, as far as the element's end).

    Once is the condition for knowing that the element the rewriter matched is this one:
    a marker quoted in a comment, a script or a second element makes the answer unsure.
    The caller compares the tag name with the rewriter's: "<a<div data-ep-slot=...>" is
    one tag, named "a<div".
    """
    start = find_marker(data, name)
    if start < 0:
        return -1, ""
    tag = _TAG_NAME.match(data, start + 1)
    if tag is None:
        return -1, ""
    found = tag.group().decode("ascii").lower()
    end = element_end(data, start, found)
    if end < 0:
        return -1, ""
    attribute = data.find(b"data-ep-slot", start)
    if find_marker(data, name, attribute + 12, len(data) if read is None else read or end) >= 0:
        return -1, ""
    return end, found


def element_end(data: bytes | bytearray, tag_start: int, tag_name: str) -> int:
    """The index just past the end tag matching the start tag at `tag_start`; -1 when it
    is not in `data` yet or the markup is not plain enough to be sure."""
    name = tag_name.lower()
    if name not in CONTAINERS:
        return -1
    position = _tag_end(data, tag_start)
    if position < 0 or data[position - 2:position] == b"/>":
        return -1
    skip, token = _SCANNERS[name]
    size = len(data)
    depth = 1
    while True:
        position = skip.match(data, position).end()   # type: ignore[union-attr]
        if position >= size:
            return -1
        found = token.match(data, position)
        if found is None:
            return -1   # a tag not complete yet
        if found.group("comment"):
            close = data.find(b"-->", position + 4)
            if close < 0:
                return -1
            position = close + 3
            continue
        if found.group("other") or found.group("foreign"):
            return -1   # CDATA, doctype, processing instructions, SVG, MathML: not plain
        end = _tag_end(data, position)
        if end < 0:
            return -1
        raw = found.group("raw")
        if raw:
            raw_name = raw.decode("ascii").lower()
            close_tag = _RAW_END[raw_name].search(data, end)
            if close_tag is None or _escaped_script(data, raw_name, end, close_tag.start()):
                return -1
            position = close_tag.start()
            continue
        depth += -1 if found.group("close") else 1
        if depth == 0:
            return end
        position = end
