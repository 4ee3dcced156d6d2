"""The plain byte search for the slots' markers that comes before lol-html reads a page.

Most pages of a site carry few of the slots a decision edits: while none of their
data-ep-slot markers has come, the page passes as it is and lol-html does not start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from .bypass import marker_element, marker_value

if TYPE_CHECKING:
    from .edits import Edit

_MARKER_SPAN: Final = 256     # a marker and its value, searched again when cut by a chunk's end
_HOLD_TAIL: Final = 1024      # bytes held back while searching (a tag may be this long)
_SEARCH_HOLD: Final = 128 * 1024   # a page longer than this is read by lol-html (not held whole)


class SlotSearch:
    """Searches a page, chunk by chunk, for a marker of one of the edits' slots.

    While none has come, `push()` gives back the page as it is, all but its last tag
    (which may be the slot's, its marker still to come); all of it is kept in `held`.
    When one comes (or the page grows too long to keep), `push()` answers None: lol-html
    then reads `held` from the page's start, and the first `sent` bytes of what it says
    must be those already sent (no edit can reach before the tag holding its marker).
    """

    __slots__ = ("held", "sent", "_scanned", "_slots")

    def __init__(self, edits: Sequence[Edit]) -> None:
        self.held = bytearray()
        self.sent = 0           # bytes of `held` given back (sent on as they came)
        self._scanned = 0       # bytes of `held` searched for a marker
        # slot -> the elements that carry it ("" for any)
        self._slots: dict[str, set[str]] = {}
        for edit in edits:
            self._slots.setdefault(edit.slot or "", set()).add(edit.tag)

    def marker_in(self, data: bytes | bytearray, start: int, *, final: bool = False) -> bool:
        """Whether a data-ep-slot marker naming one of the edits' slots (or one that
        cannot be read plainly) starts in data[start:]."""
        position = data.find(b"data-ep-slot", start)
        while position >= 0:
            value = marker_value(data, position)
            tags = self._slots.get(value) if value is not None else None
            if tags is not None:
                if "" in tags:
                    return True
                element = marker_element(data, position)
                if element is None or element in tags:
                    return True   # (another element with the same marker: not this slot)
            if value is None and (final or len(data) - position >= _MARKER_SPAN):
                return True   # (one cut off by the chunk's end is read with the next)
            position = data.find(b"data-ep-slot", position + 12)
        return False

    def push(self, chunk: bytes) -> bytes | None:
        """The next chunk of the page: what of it may be sent as it came (maybe nothing),
        or None when lol-html must read the page (`held`, the chunk included)."""
        held = self.held
        too_long = len(held) + len(chunk) > _SEARCH_HOLD
        held += chunk
        if too_long:
            return None   # too long to keep: lol-html from here
        # (a marker cut in two, or its value still coming: searched again with the rest)
        if self.marker_in(held, max(0, self._scanned - _MARKER_SPAN)):
            return None
        self._scanned = len(held)
        # Held back: the last KiB, and from the last "<" or from just after the last ">",
        # whichever comes first (a "<" or ">" inside an attribute value does not let the
        # start of a tag whose marker is still to come go out).
        cut = held.rfind(b"<", self.sent, len(held) - _HOLD_TAIL)
        if cut < 0:
            cut = max(self.sent, len(held) - _HOLD_TAIL)
        cut = min(cut, held.rfind(b">", self.sent, cut) + 1 or self.sent)
        if cut <= self.sent:
            return b""
        out = bytes(held[self.sent:cut])
        self.sent = cut
        return out

    def end(self) -> bytes | None:
        """At the page's end: the rest not sent yet, when no marker came; else None
        (lol-html reads `held`)."""
        if self.marker_in(self.held, max(0, self._scanned - _MARKER_SPAN), final=True):
            return None
        return bytes(self.held[self.sent:])
