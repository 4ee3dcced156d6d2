"""The page's input as lol-html read it, kept so that when lol-html gives up (markup it
cannot parse unambiguously while streaming) the rest of the page can follow unchanged."""

from __future__ import annotations

from typing import Final

KEEP_INPUT: Final = 16 * 1024 * 1024   # input kept for recovery; past this a failure aborts
_TRIM_MARGIN: Final = 4096             # input before the output's end kept when trimming
_TAIL: Final = 256                     # the output's last bytes, found again in the input


class RewriteAborted(Exception):
    """The rewriter failed where the rest of the page cannot be told apart safely."""


class KeptInput:
    """What lol-html read of the page, and the output it gave (written to `output`).

    While no edit changed anything, the rest of the page follows exactly by position:
    output and input are the same bytes. After a change, the output's last bytes are
    looked for in the input, and what follows them is the rest, if they occur once.
    Input sent unchanged can be dropped from the front (`trim`), so a long page whose
    slots have not come yet is not held whole.
    """

    __slots__ = ("data", "dropped", "emitted", "output", "_tail")

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0       # bytes cut from the front of `data` (sent, unchanged)
        self.emitted = 0       # bytes of output given
        self.output = bytearray()   # what lol-html wrote and was not given yet
        self._tail = b""

    def add(self, chunk: bytes) -> None:
        if len(self.data) < KEEP_INPUT:
            self.data += chunk

    def take(self) -> bytes:
        """What lol-html wrote since last taken, counted as given."""
        output = bytes(self.output)
        self.output.clear()
        self.emitted += len(output)
        self._tail = (self._tail + output)[-_TAIL:]
        return output

    @property
    def unsent(self) -> int:
        """Bytes of `data` from its front to where the output so far ends (when unchanged)."""
        return self.emitted - self.dropped

    def rest(self, *, changed: bool) -> bytes:
        """The input after what the output so far stands for; RewriteAborted when that
        cannot be told for certain."""
        if len(self.data) >= KEEP_INPUT:
            raise RewriteAborted("page too large to recover")
        if not changed:
            return bytes(self.data[self.emitted - self.dropped:])
        tail = self._tail
        position = self.data.rfind(tail) if len(tail) >= 32 else -1
        if position < 0 or self.data.find(tail) != position:
            raise RewriteAborted("cannot tell where the page stands")
        return bytes(self.data[position + len(tail):])

    def trim(self, *, look: bool) -> bool:
        """Drop the input sent unchanged but its last 4 KiB; with `look`, whether a
        data-ep-slot marker was in what went (recovery by position needs only the rest)."""
        cut = self.emitted - self.dropped - _TRIM_MARGIN
        found = look and self.data.find(b"data-ep-slot", 0, cut + 11) >= 0
        del self.data[:cut]
        self.dropped += cut
        return found
