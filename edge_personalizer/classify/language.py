"""Language: the visitor's languages from Accept-Language, ordered by q-value."""

from __future__ import annotations

import re
from typing import Final

from .visitor import Language

_TAG: Final = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_MAX_TAGS: Final = 12


def _canonical(tag: str) -> str:
    parts = tag.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2:
            out.append(part.upper())          # region: de-CH
        elif len(part) == 4:
            out.append(part.title())          # script: zh-Hant
        else:
            out.append(part.lower())
    return "-".join(out)


def parse_accept_language(header: str) -> Language:
    """`de-CH,de;q=0.9,en;q=0.8` -> primary "de", tags ("de-CH", "de", "en").

    Tags come by descending q (ties keep header order); q=0 and malformed entries are
    dropped; each primary subtag also appears on its own after its regional forms.
    """
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or not _TAG.match(tag):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            weighted.append((-min(q, 1.0), index, _canonical(tag)))
    tags: list[str] = []
    for _, _, tag in sorted(weighted):
        if tag not in tags:
            tags.append(tag)
    expanded: list[str] = []
    for i, tag in enumerate(tags):
        expanded.append(tag)
        base = tag.split("-")[0]
        later_same_base = any(t.split("-")[0] == base for t in tags[i + 1:])
        if base != tag and base not in tags and not later_same_base and base not in expanded:
            expanded.append(base)
    expanded = list(dict.fromkeys(expanded))[:_MAX_TAGS]
    return Language(primary=expanded[0].split("-")[0] if expanded else None, tags=tuple(expanded))
