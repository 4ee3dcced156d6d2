"""The streaming HTML rewriter: the one module that imports lol-html (python-lolhtml).

Chosen by measurement (bench/README.md): lol-html streams (output flows while input is
still arriving, correct when a tag spans two chunks) and leaves every byte it does not
change as it was; selectolax would buffer the whole page first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

import lolhtml

from .edits import Edit, Handlers, Tally
from .first_bytes import FirstBytesMemo
from .recovery import KEEP_INPUT, KeptInput, RewriteAborted
from .slot_search import SlotSearch

__all__ = ["Rewriter", "csp_nonce", "with_nonce"]

_NONCE: Final = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
_SCRIPT_OR_STYLE: Final = re.compile(r"<(script|style)\b(?![^>]*\bnonce=)", re.IGNORECASE)


def csp_nonce(policy: str) -> str | None:
    """The nonce a Content-Security-Policy allows scripts (and styles) with."""
    match = _NONCE.search(policy)
    return match.group(1) if match else None


def with_nonce(html: str, nonce: str | None) -> str:
    """Give injected <script> and <style> tags the page's CSP nonce, so they may run."""
    if not nonce:
        return html
    return _SCRIPT_OR_STYLE.sub(lambda m: f'{m.group(0)} nonce="{nonce}"', html)


_TRIM_AT: Final = 68 * 1024              # input sent unchanged: past this, all but 4 KiB dropped
_STEP: Final = 4096                      # bytes fed at a time while waiting to bypass


class _Reading:
    """The page as lol-html reads it, for Rewriter: from the first byte it is given, up to
    where the edits are behind (then the rest passes), or to the end."""

    def __init__(self, edits: Sequence[Edit], *, head: str = "", body_end: str = "",
                 on_error: Callable[[Exception], None] | None = None,
                 bypass: bool = True, memo: FirstBytesMemo | None = None,
                 probes: Sequence[str] = ()) -> None:
        self._tally = Tally(on_error)
        self._probes = tuple(probes)
        self.broken = False
        self.bypassed = False
        # Once every edit is done and its element closed, the rest of the page skips
        # lol-html: possible when every edit targets a data-ep-slot marker and nothing
        # waits for an end tag (</head>, </body>) that may come after the last slot.
        self._bypass = bypass and not head and not body_end and bool(edits) and all(
            edit.slot for edit in edits)
        # (remembered first bytes are not read: they would answer no probe)
        self._memo = memo if self._bypass and not probes else None
        self._edits = edits
        self._injections = [(where, html) for where, html in (("head", head),
                                                              ("body", body_end)) if html]
        # Built when first needed (a page whose first bytes are remembered needs neither)
        self._handlers: Handlers | None = None
        self._lol: lolhtml.HTMLRewriter | None = None
        self.parsed = False   # whether lol-html was given any of the page
        self._closed = False
        self._kept = KeptInput()

    def _built(self) -> Handlers:
        if self._handlers is None:
            self._handlers = Handlers(self._edits, self._injections, self._tally,
                                      self._probes)
        return self._handlers

    @property
    def _rewriter(self) -> lolhtml.HTMLRewriter:
        if self._lol is None:
            if self._closed:   # a page read after its end: the rest passes as it is
                raise RuntimeError("the rewriter was closed")
            self._lol = lolhtml.HTMLRewriter(self._kept.output.extend)
            self._built().attach(self._lol)
            self.parsed = True
        return self._lol

    def close(self) -> None:
        """Let go of lol-html's parser now, on this thread: it may only be freed on the
        thread that made it, and a rewriter caught in a reference cycle would otherwise
        be freed by whichever thread the garbage collector happens to run on."""
        self._lol = None
        self._closed = True

    @property
    def applied(self) -> int:
        return self._tally.applied

    @property
    def errors(self) -> int:
        return self._tally.errors

    @property
    def _changed(self) -> bool:
        return self._handlers is not None and self._handlers.changed

    def _recover(self, exc: Exception) -> bytes:
        self.broken = True
        self.close()
        self._tally.gave_up(exc)
        pending = self._kept.take()
        try:
            return pending + self._kept.rest(changed=self._changed)
        except RewriteAborted as aborted:
            raise aborted from exc

    @property
    def found(self) -> tuple[bool, ...] | None:
        """For each edit, whether its element was found in the page: once the whole page
        was read (or every edit done); None when that cannot be told (lol-html gave up)."""
        if self.broken:
            return None
        if self._handlers is None:   # no marker came, or first bytes remembered
            return tuple(self.bypassed for _ in self._edits)
        return self._handlers.found

    @property
    def inside(self) -> frozenset[tuple[int, int]] | None:
        """(outer, inner) for each probed slot found inside another (Handlers.inside), as
        far as the page was read; None when that cannot be told (lol-html gave up)."""
        if self.broken:
            return None
        if self._handlers is None:   # no marker came: no slot, none inside another
            return frozenset()
        return self._handlers.inside

    def _feed_reading(self, chunk: bytes) -> bytes:
        if self.broken or self.bypassed:
            return chunk
        if not self._bypass:
            return self._write(chunk)
        return self._feed(chunk)

    def _remembered(self, chunk: bytes) -> bytes | None:
        """The output of a page whose first chunk starts with first bytes rewritten before
        (copied, and the rest passes); None when the memo does not know them."""
        known = self._memo.lookup(self._edits, chunk) if self._memo else None
        if known is None:
            return None
        self.bypassed = True
        self._tally.applied = known[2]
        return self._with_rest([known[1]], chunk, len(known[0]))

    def _feed(self, chunk: bytes, *, looked_up: bool = False) -> bytes:
        # The rewriter reads no further than it must: on the page's first bytes, up to
        # where the last slot element ends when that is there; otherwise in small steps,
        # so the rest of a large chunk skips lol-html as soon as the last one closes.
        # (`looked_up`: the memo was asked about these first bytes already.)
        out: list[bytes] = []
        stop = -1
        if not self._kept.data and not self._kept.emitted:   # the page's first bytes
            remembered = None if looked_up else self._remembered(chunk)
            if remembered is not None:
                return remembered
            stop = self._built().plan(chunk)
        start = 0
        while start < len(chunk):
            if self.bypassed or self.broken:
                return self._with_rest(out, chunk, start)
            end = stop if stop > start else start + _STEP
            piece = chunk[start:end]
            out.append(self._write(piece))
            if end == stop and self.bypassed and self._memo and not self._tally.errors:
                self._memo.store(self._edits, piece, out[-1], self._tally.applied)
            start = end
        return out[0] if len(out) == 1 else b"".join(out)

    def _with_rest(self, out: list[bytes], chunk: bytes, start: int) -> bytes:
        """The output, then the chunk from `start` as it came, copied once (by the join).
        Always bytes: the server writes a memoryview body a byte at a time."""
        return b"".join([*out, memoryview(chunk)[start:]])

    def _write(self, chunk: bytes) -> bytes:
        kept = self._kept
        kept.add(chunk)
        try:
            self._rewriter.write(chunk)
            if (self._bypass and len(kept.data) < KEEP_INPUT
                    and self._built().closed(kept.data)):
                # Everything fed so far is final: flush it, and let the rest pass.
                self._rewriter.end()
                self.bypassed = True
                self.close()
        except RuntimeError as exc:
            return self._recover(exc)
        out = kept.take()
        if self.bypassed:
            kept.data = bytearray()
        elif kept.unsent > _TRIM_AT:
            self._trim()
        return out

    def _trim(self) -> None:
        """Drop input that was sent unchanged, so a long page whose slots have not come
        yet is not held whole: while nothing changed, recovery needs only the input not
        yet sent (and a margin), and finding a slot's end needs only its element."""
        if self._changed or self._handlers is not None and self._handlers.planned:
            return
        if self._kept.trim(look=self._bypass):
            # A marker in what goes: whether the slot's marker occurs only once could no
            # longer be told, so this page is rewritten to its end instead.
            self._bypass = False

    def _finish(self) -> bytes:
        if self.broken or self.bypassed:
            return b""
        try:
            self._rewriter.end()
        except RuntimeError as exc:
            return self._recover(exc)
        self.close()
        return self._kept.take()


class Rewriter(_Reading):
    """Feeds HTML through lol-html with the edits and injections of one response.

    `feed()` returns whatever output is ready (possibly nothing: lol-html holds back a
    tag cut in two); `finish()` returns the rest. An edit that fails leaves its element
    unchanged and is reported through `on_error`. If lol-html itself gives up (markup it
    cannot parse unambiguously while streaming), the rest of the page follows unchanged:
    exactly, by position, when nothing was changed yet; else by finding where the output
    so far ends in the input. Only when neither is certain does it raise RewriteAborted.

    Before lol-html starts, when it may be bypassed, a plain byte search looks for the
    slots' markers (SlotSearch): a page without them is never parsed. When one comes,
    lol-html reads the page from its start, and what it says of the part already sent is
    checked, then dropped.
    """

    def __init__(self, edits: Sequence[Edit], *, head: str = "", body_end: str = "",
                 on_error: Callable[[Exception], None] | None = None,
                 bypass: bool = True, memo: FirstBytesMemo | None = None,
                 probes: Sequence[str] = ()) -> None:
        super().__init__(edits, head=head, body_end=body_end, on_error=on_error,
                         bypass=bypass, memo=memo, probes=probes)
        self._search = SlotSearch(edits) if self._bypass else None
        self._skip = b""        # lol-html's output still to check against what was sent

    def feed(self, chunk: bytes) -> bytes:
        if self._skip:
            return self._unsent(self._feed_reading(chunk))
        if self.broken or self.bypassed:
            return chunk
        search = self._search
        if search is None:
            return self._feed_reading(chunk)
        if not search.held:   # the page's first bytes
            remembered = self._remembered(chunk)
            if remembered is not None:   # (their slots' markers are in them)
                self._search = None
                return remembered
            if search.marker_in(chunk, 0):
                self._search = None   # a slot's marker in them: read as they are
                return self._feed(chunk, looked_up=True)
        out = search.push(chunk)
        return self._start_reading(search) if out is None else out

    def _unsent(self, out: bytes) -> bytes:
        """Output without its part that was sent while searching (checked the same)."""
        checked = min(len(out), len(self._skip))
        if out[:checked] != self._skip[:checked]:
            raise RewriteAborted("a slot's tag began in bytes already sent")
        self._skip = self._skip[checked:]
        return out[checked:]

    def _start_reading(self, search: SlotSearch) -> bytes:
        """lol-html reads the page the search held, from its start: what it says of the
        part already sent must be what was sent."""
        self._search = None
        self._skip = bytes(search.held[:search.sent])
        out = self._feed(bytes(search.held))
        return self._unsent(out) if self._skip else out

    def finish(self) -> bytes:
        search = self._search
        if search is not None:
            rest = search.end()
            if rest is None:
                return self._start_reading(search) + self.finish()
            self._search = None   # no marker came: the rest of the page as it is
            return rest
        if self._skip:
            return self._unsent(self._finish())
        return self._finish()
