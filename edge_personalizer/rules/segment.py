"""Cache keys from decisions: which variant each slot got, never the raw inputs.

Two visitors with the same segment key see the same page, so a shared cache may serve
one's cached page to the other. The key's cardinality is bounded by the rules (and by the
values of any visitor fields a variant's template prints).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ..classify.visitor import Visitor
from .model import Decision

DEFAULT_SEGMENT = "default"
# Purge tags go in the header of each CDN dialect: Fastly (space-separated), Cloudflare,
# Akamai (comma-separated).
ALL_TAG_HEADERS = ("surrogate-key", "cache-tag", "edge-cache-tag")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class SegmentKey:
    key: str                   # "default", or "s-" and 12 hex digits
    tags: tuple[str, ...]      # purge tags: ep, ep-rule-<name>, ep-variant-<slot>-<variant>
    # Derived when built: the key and the tags as they go out (Fastly's Surrogate-Key
    # separates tags with spaces, the others with commas).
    _key_line: tuple[bytes, bytes] = field(init=False, compare=False, repr=False)
    _spaced: bytes = field(init=False, compare=False, repr=False)
    _listed: bytes = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key_line", (b"x-ep-segment", self.key.encode()))
        object.__setattr__(self, "_spaced", " ".join(self.tags).encode())
        object.__setattr__(self, "_listed", ",".join(self.tags).encode())

    def headers_for(self, tag_headers: tuple[str, ...]) -> tuple[tuple[bytes, bytes], ...]:
        """X-EP-Segment and the purge tags in the headers named (of ALL_TAG_HEADERS)."""
        return (self._key_line,
                *((name.encode(), self._spaced if name == "surrogate-key" else self._listed)
                  for name in tag_headers))


def _tag(text: str) -> str:
    return _TAG_UNSAFE.sub("_", text)[:64]


def segment_of(decision: Decision, visitor: Visitor) -> SegmentKey:
    """The segment a decision puts the visitor in (what the page looks like for them)."""
    parts: list[str] = []
    tags = {"ep"}
    for slot, choice in sorted(decision.slots.items()):
        content = choice.content
        rendered = ""
        if content is not None and content.template is not None \
                and not content.template.is_static:
            rendered = content.template.render(visitor)
        parts.append(f"{slot}={choice.variant}:{rendered}")
        tags.add(f"ep-rule-{_tag(choice.by)}")
        tags.add(f"ep-variant-{_tag(slot)}-{_tag(choice.variant)}")
    if not parts:
        return SegmentKey(DEFAULT_SEGMENT, ("ep", f"ep-segment-{DEFAULT_SEGMENT}"))
    digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=6).hexdigest()
    key = f"s-{digest}"
    tags.add(f"ep-segment-{key}")
    return SegmentKey(key, tuple(sorted(tags)))
