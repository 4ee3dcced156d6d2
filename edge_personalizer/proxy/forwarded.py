"""RFC 7239 Forwarded as a proxy sends it: its elements, one a hop, with their for=,
proto= and host= unquoted. A header that does not parse is no header at all: read from a
trusted proxy only, and then never an error."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# name=value, the value a token or a quoted string (RFC 9110 5.6.2, 5.6.4). An unquoted
# value may also hold ":[]": proxies that send `host=shop.example:8443` or an IPv6 for=
# unquoted are common, and those characters split nothing.
_PAIR: Final = re.compile(
    r"[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*"
    r"(?:([!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+)"
    r'|"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)")[ \t]*')
_QUOTED_PAIR: Final = re.compile(r"\\(.)")


@dataclass(frozen=True)
class ForwardedElement:
    """One hop's say: whom its proxy heard from (`node`: an address, `unknown` or an
    obfuscated name such as `_hidden`), and the scheme and Host of the request it got;
    None where the element names none."""

    node: str | None
    proto: str | None = None
    host: str | None = None


def parse_forwarded(values: Sequence[str]) -> tuple[ForwardedElement, ...] | None:
    """The elements of one or more Forwarded header values, left (client) to right; empty
    ones (`, ,`) skipped. None when a value does not parse, or an element names a
    parameter twice (RFC 7239 4): such a header says nothing that can be believed."""
    elements: list[ForwardedElement] = []
    for value in values:
        params: dict[str, str] = {}
        pos = 0
        end = len(value)
        while True:
            while pos < end and value[pos] in " \t":
                pos += 1
            if pos == end or value[pos] == ",":
                if params:
                    elements.append(ForwardedElement(
                        params.get("for"), params.get("proto"), params.get("host")))
                    params = {}
                if pos == end:
                    break
                pos += 1
                continue
            if value[pos] == ";":   # an empty pair
                pos += 1
                continue
            match = _PAIR.match(value, pos)
            if match is None:
                return None
            name = match.group(1).lower()
            if name in params:
                return None
            token = match.group(2)
            params[name] = token if token is not None else _QUOTED_PAIR.sub(
                r"\1", match.group(3))
            pos = match.end()
            if pos < end and value[pos] not in ",;":
                return None
    return tuple(elements)
