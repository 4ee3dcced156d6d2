"""The `send` the wrapped app gets: personalizes a page's headers and rewrites its HTML."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from types import MappingProxyType

from starlette.types import Message, Send

from ..learn.goals import GOAL_HEADER
from ..rewrite.encoding import BrokenEncoding
from ..rewrite.recovery import RewriteAborted
from ..rewrite.stream import ResponseRewriter
from .exchange import Exchange
from .fail_open import FailOpen
from .held_head import HeldHead, OnTime, settle_known_slots
from .page_edits import PageChanges, PageEditor, to_judge
from .response_headers import PageHeaders, ResponseHead, is_html, read_head
from .slot_presence import SlotPresence

logger = logging.getLogger(__name__)

# Statuses whose HTML is a whole page (206 is a part; 204/205 have none)
_REWRITTEN = frozenset({200, 201, 202, 203})
# Headers that no longer describe a rewritten body
_STALE = frozenset({b"content-length", b"etag", b"content-md5", b"content-encoding"})


class ResponseStart:
    """The response start of a page, held back while the rewriter reads the first KiB (to
    learn the charset), and on a page whose slots are not known yet until it has found
    them or the hold's time is up (held_head): made with the goals it reached, the
    decision's headers and the profile cookie once it may go, or sent unchanged.
    """

    def __init__(self, exchange: Exchange, send: Send, *, headers: PageHeaders,
                 editor: PageEditor, fail_open: FailOpen, spent: float,
                 accept_encoding: str) -> None:
        self.exchange = exchange
        self.path = exchange.visitor.request.path
        self.send = send
        self.headers = headers
        self.editor = editor
        self.fail_open = fail_open
        self.spent = spent              # seconds personalization added so far
        self.accept_encoding = accept_encoding
        self.start: Message | None = None   # held back until the rewriter has decided
        self.made = False   # the start carries the decision's headers, cookie and counts
        self.rewriter: ResponseRewriter | None = None
        self.changes: PageChanges | None = None   # what the rewriter does, slot by slot
        self.aborted = False
        self.head: ResponseHead = {}
        self.consumed = 0   # origin body bytes fed to the rewriter
        self.produced = 0   # bytes it gave back
        self.held: list[bytes] = []   # the origin's body while the start is held back
        self.waiting: HeldHead | None = None   # the start not made yet: slots looked for
        self.on_time = OnTime()   # the bound of that wait
        self.looking = False   # the page goes as it came, read on only to learn its slots

    def _made(self, message: Message) -> Message:
        """The response start with the goals it reached, the decision's headers and the
        profile cookie (counting what the page shows)."""
        self.made = True
        with self.fail_open.stage("goals", self.path):
            headers = message.get("headers", [])
            kept = self.headers.personalizer.reach_goals(
                self.exchange, message["status"], headers, goal_header=GOAL_HEADER in self.head)
            if kept is not headers:
                message = {**message, "headers": kept}
        with self.fail_open.stage("headers", self.path):
            message = self.headers.finish(message, self.exchange, self.head)
        return message

    def _released(self, waiting: HeldHead, start: Message, rewriter: ResponseRewriter, *,
                  ended: bool) -> bool:
        """Whether the held start may go: if so, the choices for the slots the page lacks
        are dropped and the start is made."""
        began = time.perf_counter()
        released = True   # (a fault of ours: every slot taken as present)
        with self.fail_open.stage("slots", self.path):
            released = waiting.release(self.exchange, self.headers.personalizer.slots,
                                       self.head, rewriter.found, rewriter.read, ended)
        if not released:
            return False
        self.start = self._made(start)
        self.spent += time.perf_counter() - began
        return True

    async def finish(self) -> None:
        """What went out on time is out (when no body message came after it: the origin
        broke off, or the client left)."""
        await self.on_time.finish(self.path)

    def close(self) -> None:
        """The response is over, whole or cut off: the rewriter lets go of its parser,
        and a held start no longer waits."""
        self.on_time.close()
        if self.rewriter is not None:
            self.rewriter.close()

    def _hold_expired(self) -> None:
        """The head waited the hold's time (a page that flushes early, then renders
        slowly): it goes out now with what the rewriter made so far, every slot taken as
        present (as past HOLD_LIMIT); the rest follows as it comes, and what the rewriter
        finds by the page's end is learned for the next views. A page whose charset was
        still to be read from its first KiB is read with what came of it, as a browser
        does after the same wait. (A body message is never half-handled here: while the
        head waits, `__call__` does not wait on anything.)"""
        waiting, start, rewriter = self.waiting, self.start, self.rewriter
        if start is None or rewriter is None or self.aborted:
            return
        out: list[Message] = []
        with self.fail_open.stage("slots", self.path) as outcome:
            early = self._decided_early(rewriter)
            if waiting is None:   # (a page whose slots are known: only the charset waited)
                out = [self._start_message(rewriter, None),
                       {"type": "http.response.body", "body": early or b"", "more_body": True}]
            else:
                waiting.overdue = True
                if self._released(waiting, start, rewriter, ended=False):
                    out = self._going(waiting, early, more=True)
        if outcome.failed and self.start is not None:   # the page as it came
            out = self._unchanged({"type": "http.response.body", "body": b"", "more_body": True})
        if out:
            self.on_time.send(self.send, out)

    def _decided_early(self, rewriter: ResponseRewriter) -> bytes | None:
        """What the rewriter makes of the page so far once told to stop waiting for its
        first KiB; None when it was not waiting."""
        if rewriter.decided:
            return None
        began = time.perf_counter()
        out = rewriter.decide_now()
        self.produced += len(out)
        self.spent += time.perf_counter() - began
        return out

    def _going(self, waiting: HeldHead, out: bytes | None, *, more: bool) -> list[Message]:
        """The messages that go once the held start is released (and made): it, and what
        the rewriter made while it waited, then `out`."""
        body, self.waiting = waiting.take(out), None
        self.on_time.disarm()
        rewriter = self.rewriter
        if rewriter is None or not self.exchange.decision.changes_page:
            # Nothing to change (left so, or only looked): the page as it came.
            return self._unchanged({"type": "http.response.body", "body": b"",
                                    "more_body": more}, look_on=True)
        start = self._rewritten_start(rewriter, None if more else len(body))   # (held whole)
        if start is None:   # the page as it came (this body message is among the held)
            return self._unchanged({"type": "http.response.body", "body": b"",
                                    "more_body": more})
        return [start, {"type": "http.response.body", "body": body, "more_body": more}]

    async def _send_unchanged(self, message: Message) -> None:
        for made in self._unchanged(message):
            await self.send(made)

    def _unchanged(self, message: Message, *, look_on: bool = False) -> list[Message]:
        """The origin's response as it came (with the decision's headers), from the
        start that was held back and every body byte received so far. `look_on`: a page
        not known to have every slot is read on, for the next views (see `looking`)."""
        found = self.rewriter.found if self.rewriter is not None else None
        if look_on and message.get("more_body", False) and found is not None \
                and not all(found):
            self.looking = True
        else:
            self.close()
            self.rewriter = None
        start, self.start = self.start, None
        if start is None:
            return []
        if not self.made:
            # A page that goes as it came by a fault of ours, or markup the rewriter gave
            # up on, shows none of the decision's slots: its headers, cookie and counts
            # must not name them.
            self.waiting = None
            with self.fail_open.stage("slots", self.path):
                self.exchange.settle(replace(self.exchange.decision,
                                             slots=MappingProxyType({})))
            start = self._made(start)
        self.fail_open.observer.personalization_took(self.spent)
        body = b"".join([*self.held, message.get("body", b"")])
        self.held = []
        return [start, {"type": "http.response.body", "body": body,
                        "more_body": message.get("more_body", False)}]

    def _rewritten_start(self, rewriter: ResponseRewriter, whole: int | None) -> Message | None:
        """The rewritten page's start; None after a fault of ours while it was made (the
        page then goes as it came)."""
        with self.fail_open.stage("headers", self.path):
            return self._start_message(rewriter, whole)
        return None

    def _start_message(self, rewriter: ResponseRewriter, whole: int | None) -> Message:
        """The response start for the rewritten page. `whole`: the length of the whole
        rewritten body, when it was held to its end."""
        start = self.start
        assert start is not None
        if not self.made:   # (a page whose slots were known: its start waited unmade)
            began = time.perf_counter()
            start = self.start = self._made(start)
            self.spent += time.perf_counter() - began
        headers: list[tuple[bytes, bytes]] = start.get("headers", [])
        if rewriter.rewriting:
            if whole is None and rewriter.verbatim:
                whole = _known_length(self.head, self.consumed, self.produced)
            headers = _rewritten(headers, rewriter, whole)
            headers += self.headers.variant_headers(self.exchange, self.spent)
        self.start = None   # (only once made: a fault before leaves it to go unchanged)
        self.held = []
        self.on_time.disarm()
        self.fail_open.observer.personalization_took(self.spent)
        return {**start, "headers": headers}



class RewritingSend(ResponseStart):
    """One response on its way out, owning its state (as starlette's GZipResponder does):
    every error of ours is contained, and the origin's bytes go on unchanged.
    """

    async def __call__(self, message: Message) -> None:
        if self.on_time.sending is not None:   # what went out on time goes first
            await self.on_time.sent()
        if message["type"] == "http.response.start":
            await self._start(message)
            return
        if self.aborted:
            return
        if self.looking:
            self._look(message)
            await self.send(message)
            return
        if message["type"] != "http.response.body" or self.rewriter is None:
            await self.send(message)
            return
        out: bytes | None = None
        with self.fail_open.stage("rewrite", self.path) as outcome:
            try:
                out = self._rewrite(message)
            except RewriteAborted as exc:
                if self.start is not None and not isinstance(exc, BrokenEncoding):
                    raise   # nothing is out, every byte held: the page as it came
                # Part of the page is out and the rest cannot be matched up: an incomplete
                # response (the connection closes) is honest; a mangled page would not be.
                logger.exception("rewriting %s failed mid-page; closing", self.path)
                self.fail_open.observer.stage_failed("rewrite")
                self.aborted = True
                self.on_time.disarm()
                return
        if outcome.failed:
            await self._send_unchanged(message)
            return
        rewriter = self.rewriter
        more = message.get("more_body", False)
        if rewriter is not None and self.start is not None and rewriter.decided:
            waiting = self.waiting
            if waiting is not None:
                if not self._released(waiting, self.start, rewriter, ended=not more):
                    waiting.keep(out)
                    return
                for going in self._going(waiting, out, more=more):
                    await self.send(going)
                return
            start = self._rewritten_start(rewriter, None)
            if start is None:
                await self._send_unchanged(message)
                return
            await self.send(start)
        if out is not None and self.start is None:
            await self.send({"type": "http.response.body", "body": out, "more_body": more})

    async def _start(self, message: Message) -> None:
        began = time.perf_counter()
        self.head = read_head(message.get("headers", ()))
        page = False   # a whole HTML page with a body
        known = True   # which of its slots the page has (or it does not matter)
        with self.fail_open.stage("slots", self.path):
            page = _is_page(message["status"], self.exchange.scope["method"], self.head)
            if page:
                known = settle_known_slots(self.exchange, self.headers, self.path, self.head)
        with self.fail_open.stage("rewrite", self.path):
            made = _rewriter_for(self.editor, self.exchange, self.head, self.accept_encoding,
                                 self.fail_open, page=page, look=not known)
            if made is not None:
                self.rewriter, self.changes = made
        if self.rewriter is not None and not known and self.changes is not None \
                and self.changes.slots:
            self.waiting = HeldHead(self.changes.slots)   # the start is made once released
        if self.rewriter is None:   # (else made once the rewriter has decided)
            message = self._made(message)
        elif self.waiting is not None or self.rewriter.sniffs:   # a wait, bounded
            self.on_time.arm(self.headers.personalizer.slots.hold_seconds, self._hold_expired)
        self.spent += time.perf_counter() - began
        if self.rewriter is None:
            self.fail_open.observer.personalization_took(self.spent)
            await self.send(message)
        else:
            self.start = message

    def _look(self, message: Message) -> None:
        """Reads a page that goes as it came on for its slots (what it made is dropped);
        at its end, what it has is learned. A page the rewriter cannot read on is left."""
        done = not message.get("more_body", False)
        with self.fail_open.stage("slots", self.path) as outcome:
            try:
                self._rewrite(message)
            except RewriteAborted:   # markup it gives up on: nothing to learn
                done = True
        if done or outcome.failed:
            self.looking = False
            self.close()
            self.rewriter = None

    def _rewrite(self, message: Message) -> bytes | None:
        """The rewritten bytes of one body message (None while the start is held)."""
        rewriter = self.rewriter
        if rewriter is None:
            return None
        began = time.perf_counter()
        chunk: bytes = message.get("body", b"")
        try:
            out = rewriter.feed(chunk) if chunk else (None if not rewriter.decided else b"")
            if not message.get("more_body", False):
                out = (out or b"") + rewriter.finish()
                _learn(self.headers.personalizer.slots, self.path, self.head, self.changes,
                       rewriter.found)
        except Exception as exc:
            # A fault of ours: unchanged while nothing is out yet, else cut off honestly.
            if self.start is None and not isinstance(exc, RewriteAborted):
                raise RewriteAborted(str(exc)) from exc
            raise
        if self.start is not None and (not rewriter.decided or self.waiting is not None):
            self.held.append(chunk)
        self.consumed += len(chunk)
        self.produced += len(out) if out else 0
        self.spent += time.perf_counter() - began
        return out


def _rewriter_for(editor: PageEditor, exchange: Exchange, head: ResponseHead,
                  accept_encoding: str, fail_open: FailOpen, *, page: bool,
                  look: bool) -> tuple[ResponseRewriter, PageChanges] | None:
    """The rewriter of a whole HTML page and what it changes, if it changes anything.
    `look`: which slots the page has is not known, and choices it does not change are
    judged by the page too (a rewriter is made only to look, if need be)."""
    decision = exchange.decision
    if not page or not (decision.changes_page or look and to_judge(decision)):
        return None
    return editor.rewriter_for(exchange, head, accept_encoding,
                               on_error=fail_open.edit_failed, look=look)


def _learn(presence: SlotPresence, path: str, head: ResponseHead,
           changes: PageChanges | None, found: tuple[bool, ...] | None) -> None:
    """The page was read to its end: which of its slots it has, for the next views."""
    if changes is None or found is None or len(found) != len(changes.slots):
        return
    presence.learned(path, head, dict(zip(changes.slots, found, strict=True)))


def _is_page(status: int, method: str, head: ResponseHead) -> bool:
    """Whether the response is a whole HTML page with a body."""
    if status not in _REWRITTEN or not is_html(head):
        return False   # a 206 is part of a page: its ranges must fit the others
    # no body to rewrite: the head goes out as it is, at once
    return method != "HEAD" and head.get(b"content-length") != "0"


def _known_length(head: ResponseHead, consumed: int, produced: int) -> int | None:
    """The length of a rewritten page whose edits are behind it and whose rest passes as
    it comes (`consumed` origin bytes gave `produced`): known when the origin's is, and
    the client gets it instead of chunked encoding."""
    length = head.get(b"content-length", "")
    if not length.isdigit() or int(length) < consumed:
        return None
    return produced + int(length) - consumed


def _rewritten(headers: list[tuple[bytes, bytes]], rewriter: ResponseRewriter,
               length: int | None) -> list[tuple[bytes, bytes]]:
    """The start's headers for the rewritten body (`length`: its own, if known)."""
    out = [h for h in headers if h[0].lower() not in _STALE]
    if rewriter.content_encoding:
        out.append((b"content-encoding", rewriter.content_encoding.encode()))
    # Compressed or not by the client's Accept-Encoding: caches must know.
    out.append((b"vary", b"Accept-Encoding"))
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out
