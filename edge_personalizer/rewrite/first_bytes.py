"""What the first bytes of recent pages gave, remembered per worker (the app owns one): a
page starting with the same bytes again is copied instead of rewritten, and its charset
is not sniffed again."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .encoding import SNIFF_BYTES, sniff_meta_charset

if TYPE_CHECKING:
    from .edits import Edit


class FirstBytesMemo:
    """Rewritten first bytes of pages, by the edits and the exact input they came from.

    A page whose slots all end in its first chunk is rewritten up to there and the rest
    passes unchanged (see Rewriter). That output depends on nothing but the edits and
    those bytes, and most requests for a page bring the same bytes with one of a few
    variants: remembered, they are copied instead of rewritten. Bounded by bytes held
    (least recently used go first); a prefix larger than `max_prefix` is not kept.
    """

    def __init__(self, budget: int = 1024 * 1024, *, max_prefix: int = 64 * 1024,
                 per_key: int = 4, max_charsets: int = 8) -> None:
        self.budget = budget
        self.max_prefix = max_prefix
        self.per_key = per_key
        self.size = 0
        self.hits = 0
        self.max_charsets = max_charsets
        self.sniffs = 0   # first KiBs looked through for a <meta> charset
        # (a page's first KiB, the charset it declares), most recently met first
        self._sniffed: list[tuple[bytes, str | None]] = []
        # edits -> [(input prefix, output, edits applied)], most recently used first
        self._entries: OrderedDict[tuple[Edit, ...], list[tuple[bytes, bytes, int]]] = (
            OrderedDict())

    def charset(self, plain: bytes) -> str | None:
        """The charset a `<meta>` in the page's first KiB declares (sniff_meta_charset),
        remembered for the first KiBs of recent pages: the pages of a site mostly start
        alike, and looking for the `<meta>` is ~5% of a rewritten request."""
        window = plain[:SNIFF_BYTES]   # (a page shorter than that: itself, not a copy)
        sniffed = self._sniffed
        for index, entry in enumerate(sniffed):
            if entry[0] == window:
                if index:
                    sniffed.insert(0, sniffed.pop(index))
                return entry[1]
        found = sniff_meta_charset(window)
        self.sniffs += 1
        sniffed.insert(0, (window, found))
        del sniffed[self.max_charsets:]
        return found

    def lookup(self, edits: Sequence[Edit], chunk: bytes) -> tuple[bytes, bytes, int] | None:
        """For a page's first chunk: the remembered first bytes it starts with, their
        output with these edits and how many were applied; None when not remembered."""
        key = tuple(edits)   # (a tuple, as the pipeline hands them, is its own key: no copy)
        entries = self._entries.get(key)
        if entries is None:
            return None
        for index, entry in enumerate(entries):
            if chunk.startswith(entry[0]):
                if index:
                    entries.insert(0, entries.pop(index))
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
        return None

    def store(self, edits: Sequence[Edit], prefix: bytes, output: bytes,
              applied: int) -> None:
        """A page's first bytes up to where its last slot element ends, and their output
        (every edit done without error: the rest of the page passes unchanged)."""
        if len(prefix) > self.max_prefix:
            return
        key = tuple(edits)
        entries = self._entries.setdefault(key, [])
        self._entries.move_to_end(key)
        entries.insert(0, (prefix, output, applied))
        self.size += len(prefix) + len(output)
        while len(entries) > self.per_key:
            dropped = entries.pop()
            self.size -= len(dropped[0]) + len(dropped[1])
        while self.size > self.budget and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.size -= sum(len(p) + len(o) for p, o, _ in evicted)
