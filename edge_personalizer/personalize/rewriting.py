"""The `send` the wrapped app gets: personalizes a page's headers and rewrites its HTML."""

from __future__ import annotations

import logging
import time
from typing import Final

from starlette.types import Message

from ..observability.logs import escaped
from ..rewrite.encoding import BrokenEncoding
from ..rewrite.recovery import RewriteAborted
from ..rewrite.stream import ResponseRewriter
from .exchange import Exchange
from .fail_open import FailOpen
from .held_head import HeldHead, settle_known_slots
from .page_edits import PageChanges, PageEditor, to_look_for
from .response_headers import PageHeaders, ResponseHead, is_html, read_head
from .response_start import ResponseStart
from .slot_presence import SlotPresence, nesting

logger = logging.getLogger(__name__)

# Statuses whose HTML is a whole page (206 is a part; 204/205 have none)
_REWRITTEN: Final = frozenset({200, 201, 202, 203})
# Bytes of page read (decompressed) whose output goes out as one body message, when a
# chunk from the origin decompresses to more: its output is never held whole, and a small
# page in one chunk is still read to its end (a damaged one refused) before anything goes.
_SEND_AT: Final = 64 * 1024


class RewritingSend(ResponseStart):
    """One response on its way out, owning its state (as starlette's GZipResponder does):
    every error of ours is contained, and the origin's bytes go on unchanged."""

    async def take(self, message: Message) -> None:
        """The wrapped app's `send` (a method, not __call__: mypyc, which compiles this
        module, crashes calling a subclass that adds __call__ to its base)."""
        if self.on_time.sending is not None:   # what went out on time goes first
            await self.on_time.sent()
        if message["type"] == "http.response.start":
            await self._start(message)
            return
        if self.aborted:
            return
        if self.looking:
            self._look(message, message.get("body", b""))
            await self.send(message)
            return
        rewriter = self.rewriter
        if message["type"] != "http.response.body" or rewriter is None:
            await self.send(message)
            return
        ok, out = self._read(message, message.get("body", b""))
        if not ok:
            if not self.aborted:
                await self._send_unchanged(message)
            return
        if rewriter.pending:
            await self._rest_of(message, rewriter, out)
            return
        more = message.get("more_body", False)
        if self.start is not None:
            if self.waiting is not None or not rewriter.decided:
                if not rewriter.decided and self.on_time.timer is None:
                    self._bound_wait()   # (the charset is read from the first KiB: late)
                for going in self._passed(out, message, more=more):
                    await self.send(going)
                return
            start = self._rewritten_start(rewriter, None)   # (a page whose slots are known)
            if start is None:
                await self._send_unchanged(message)
                return
            await self.send(start)
        if out is not None and (out or not more):
            await self.send({"type": "http.response.body", "body": out, "more_body": more})

    async def _rest_of(self, message: Message, rewriter: ResponseRewriter,
                       out: bytes | None) -> None:
        """The rest of a body message whose chunk decompresses to more than a piece (`out`
        its first piece made): rewritten a piece at a time, what each _SEND_AT bytes of
        page make sent (or held with the start) before more is read. The chunk is among
        the held now (see _rewrite)."""
        unsent = {**message, "body": b""}   # what goes as it came on a fault of ours
        made = [out] if out else []   # what the pieces read since the last output went made
        began = rewriter.read
        while True:
            ok, out = self._read(message, None)
            if not ok:
                if not self.aborted:
                    await self._send_unchanged(unsent)
                return
            if not rewriter.pending:
                out = b"".join([*made, out or b""])
                for going in self._passed(out, unsent, more=message.get("more_body", False)):
                    await self.send(going)
                return
            if out:
                made.append(out)
            if rewriter.read - began >= _SEND_AT:
                began, out, made = rewriter.read, b"".join(made), []
                for going in self._passed(out, unsent, more=True):
                    await self.send(going)
                if self.rewriter is not rewriter:
                    return   # (the page went as it came)
                if self.looking:   # (the rest read only for its slots)
                    self._look(message, None)
                    return

    def _read(self, message: Message, chunk: bytes | None) -> tuple[bool, bytes | None]:
        """Whether the rewrite goes on, and what the rewriter made of the body message's
        first piece (`chunk`: its body) or next one (None). It does not after a fault of
        ours (the page is to go as it came) or when the page is cut off (`aborted`)."""
        with self.fail_open.stage("rewrite", self.path):
            try:
                return True, self._rewrite(message, chunk)
            except RewriteAborted as exc:
                if self.start is not None and not isinstance(exc, BrokenEncoding):
                    raise   # nothing is out, every byte held: the page as it came
                _stopped(self, exc)
                self.aborted = True
                self.on_time.disarm()
        return False, None

    def _passed(self, out: bytes | None, unsent: Message, *, more: bool) -> list[Message]:
        """What goes now of what the rewriter made: with the start once it may go, none
        while it is held; `unsent`: what goes as it came if the start cannot be made."""
        rewriter = self.rewriter
        going: list[Message] = []
        if rewriter is not None and self.start is not None and rewriter.decided:
            waiting = self.waiting
            if waiting is not None:
                if not self._released(waiting, self.start, rewriter, ended=not more):
                    waiting.keep(out)
                    return going
                return self._going(waiting, out, more=more,
                                   more_body=unsent.get("more_body", False))
            start = self._rewritten_start(rewriter, None)
            if start is None:
                return self._unchanged(unsent)
            going.append(start)
        if out is not None and self.start is None and (out or not more or going):
            going.append({"type": "http.response.body", "body": out, "more_body": more})
        return going

    async def _start(self, message: Message) -> None:
        began = time.perf_counter()
        self.head = read_head(message.get("headers", ()))
        page, known = False, True   # (known: which of its slots the page has, or moot)
        with self.fail_open.stage("slots", self.path):
            page, known = _settled(self.exchange, self.headers, self.head, message["status"])
        head_only = self.exchange.scope["method"] == "HEAD"
        with self.fail_open.stage("rewrite", self.path):
            made = _rewriter_for(self.editor, self.exchange, self.head, self.accept_encoding,
                                 self.fail_open, page=page, look=not (known or head_only))
            if made is not None:
                self.rewriter, self.changes = made
        if self.rewriter is not None:   # the start is made once the rewriter has decided
            if head_only:   # (RFC 9110 9.3.2: the start a GET's would be, by its headers)
                self.rewriter.decide_by_headers()
            elif not known and self.changes is not None and self.changes.slots:
                self.waiting = HeldHead(self.changes.slots,   # ... and released
                                        probed=self.changes.probed)
                self._bound_wait()
            self.start = message
            self.spent += time.perf_counter() - began
            return
        message = self._made(message)
        self.spent += time.perf_counter() - began
        self.fail_open.observer.personalization_took(self.spent)
        await self.send(message)

    def _look(self, message: Message, chunk: bytes | None) -> None:
        """Reads a page that goes as it came on for its slots (what it made is dropped);
        at its end, what it has is learned. A page the rewriter cannot read on is left.
        `chunk`: the message's body, None for the rest of its pieces."""
        done = not message.get("more_body", False)
        rewriter = self.rewriter
        with self.fail_open.stage("slots", self.path) as outcome:
            try:
                self._rewrite(message, chunk)
                while rewriter is not None and rewriter.pending:
                    self._rewrite(message, None)
            except RewriteAborted:   # markup it gives up on: nothing to learn
                done = True
        if done or outcome.failed:
            self.looking = False
            self.close()
            self.rewriter = None

    def _rewrite(self, message: Message, chunk: bytes | None) -> bytes | None:
        """The rewritten bytes of one body message's first piece (`chunk`: its body), or
        of its next (`chunk` None); after the page's last, its end too. None while the
        start is held for the first KiB."""
        rewriter = self.rewriter
        if rewriter is None:
            return None
        began = time.perf_counter()
        try:
            if chunk is None:
                out: bytes | None = rewriter.next_piece()
            else:
                out = rewriter.feed_piece(chunk) if chunk else (
                    None if not rewriter.decided else b"")
            if not message.get("more_body", False) and not rewriter.pending:
                # What the page's end adds is usually nothing: joined only when it is
                # something (joining copies the whole page, 100 KB a request on the kit's).
                end = rewriter.finish()
                out = out + end if out and end else (out or end)
                if self.exchange.whole_page:
                    _learn(self.headers.personalizer.slots, self.exchange.page, self.head,
                           self.changes, rewriter.found, rewriter.inside)
        except Exception as exc:
            # A fault of ours: unchanged while nothing is out yet, else cut off honestly.
            if self.start is None and not isinstance(exc, RewriteAborted):
                raise RewriteAborted(str(exc)) from exc
            raise
        if chunk is not None:
            # Held with the start while it may still go as it came: not decided yet, its
            # slots looked for, or more of this chunk to read before it is made.
            if self.start is not None and (not rewriter.decided or self.waiting is not None
                                           or rewriter.pending):
                self.held.append(chunk)
            self.consumed += len(chunk)
        self.produced += len(out) if out else 0
        self.spent += time.perf_counter() - began
        return out


def _stopped(response: RewritingSend, exc: RewriteAborted) -> None:
    """Logs and counts why a page's rewrite stopped. The origin's fault: its compressed
    body cannot be whole (nothing out yet: the caller's 502; else the connection closes
    mid-page). Ours: part of the page is out and the rest cannot be matched up, so an
    incomplete response (the connection closes) is honest; a mangled page would not be."""
    if isinstance(exc, BrokenEncoding):
        logger.warning("the origin's answer to %s cannot be decompressed (%s); %s",
                       escaped(response.path), exc, "answering 502" if response.start is not None
                       else "closing the connection mid-page")
        response.fail_open.observer.origin_failed("encoding")
    else:
        logger.error("rewriting %s failed mid-page; closing", escaped(response.path),
                     exc_info=exc)
        response.fail_open.observer.stage_failed("rewrite")


def _rewriter_for(editor: PageEditor, exchange: Exchange, head: ResponseHead,
                  accept_encoding: str, fail_open: FailOpen, *, page: bool,
                  look: bool) -> tuple[ResponseRewriter, PageChanges] | None:
    """The rewriter of a whole HTML page and what it changes, if it changes anything.
    `look`: which slots the page has is not known, and choices it does not change are
    judged by the page too (a rewriter is made only to look, if need be)."""
    decision = exchange.decision
    if not page or not (decision.changes_page or look and to_look_for(decision)):
        return None
    return editor.rewriter_for(exchange, head, accept_encoding,
                               on_error=fail_open.edit_failed, look=look)


def _learn(presence: SlotPresence, path: str, head: ResponseHead,
           changes: PageChanges | None, found: tuple[bool, ...] | None,
           inside: frozenset[tuple[int, int]] | None) -> None:
    """The page was read to its end: which of its slots it has (and which inside which),
    for the next views."""
    if changes is None or found is None or len(found) != len(changes.slots):
        return
    nested = nesting(changes.slots, changes.probed, inside) if changes.looks else None
    presence.learned(path, head, {slot: found[i] for i, slot in enumerate(changes.slots)},
                     nested)


def _settled(exchange: Exchange, headers: PageHeaders, head: ResponseHead,
             status: int) -> tuple[bool, bool]:
    """Whether the response is a whole HTML page with a body, and whether which of its
    slots it has is known (or does not matter); the decision settled as far as known."""
    if _is_page(status, head):
        return True, settle_known_slots(exchange, headers, head,
                                        look_only=exchange.scope["method"] == "HEAD")
    if is_html(head):
        # A redirect, an empty answer, a page's range, an empty page: no variant shown.
        # (Only an HTML answer's headers name the decision: an asset's 304 never has it
        # worked out.)
        exchange.settle_no_slots()
    return False, True


def _is_page(status: int, head: ResponseHead) -> bool:
    """Whether the response is a whole HTML page with a body (a HEAD's is what a GET's
    would be, without its body: its start is made as the GET's would be)."""
    if status not in _REWRITTEN or not is_html(head):
        return False   # a 206 is part of a page: its ranges must fit the others
    # no body to rewrite: the head goes out as it is, at once
    return head.get(b"content-length") != "0"
