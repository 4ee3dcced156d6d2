"""The response start of a page on its way through the rewriter: held back until the
rewriter has decided (the charset read from the first KiB) and, on a page whose slots are
not known yet, until the page has shown them (held_head); then made with the decision's
headers, or sent as the origin sent it, with every byte held so far."""

from __future__ import annotations

import time
from typing import Final

from starlette.types import Message, Send

from ..learn.goals import GOAL_HEADER
from ..rewrite.stream import ResponseRewriter
from .exchange import Exchange
from .fail_open import FailOpen
from .held_head import HeldHead, OnTime
from .page_edits import PageChanges, PageEditor
from .response_headers import OneLine, PageHeaders, ResponseHead

# Headers that no longer describe a rewritten body: its length, digest and coding, and its
# validators and ranges (a browser's If-Modified-Since would get the origin's 304 and keep
# showing the variant it had; a range would be of the origin's bytes). nginx's sub_filter
# drops Last-Modified and Accept-Ranges too.
_STALE: Final = frozenset({b"content-length", b"etag", b"content-md5", b"content-encoding",
                           b"last-modified", b"accept-ranges"})


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
        """Whether the held start may go: if so, absent slots' choices go, the start is made."""
        began = time.perf_counter()
        released = True   # (a fault of ours: every slot taken as present)
        with self.fail_open.stage("slots", self.path):
            released = waiting.release(self.exchange, self.headers.personalizer.slots,
                                       self.head, rewriter.found, rewriter.read, ended,
                                       rewriter.inside)
        if not released:
            return False
        self._settle_unrewritten(rewriter)
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

    def _bound_wait(self) -> None:
        """The start waits (for the page's slots, or for the first KiB its charset is read
        from, when a first body message brought less): for head_hold_seconds at most."""
        self.on_time.arm(self.headers.personalizer.slots.hold_seconds, self._hold_expired)

    def _hold_expired(self) -> None:
        """The head waited the hold's time (a page that flushes early, then renders
        slowly): it goes out now with what the rewriter made so far, every slot taken as
        present (as past HOLD_LIMIT); the rest follows as it comes, and what the rewriter
        finds by the page's end is learned for the next views. A page whose charset was
        still to be read from its first KiB is read with what came of it, as a browser
        does after the same wait. (A body message is never half-handled here: while the
        head waits, `take` does not wait on anything.)"""
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
                    out = self._going(waiting, early, more=True, more_body=True)
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

    def _going(self, waiting: HeldHead, out: bytes | None, *, more: bool,
               more_body: bool) -> list[Message]:
        """The messages that go once the held start is released (and made): it, and what
        the rewriter made while it waited, then `out`. `more`: the rewriter makes more of
        the page (pieces of the body message it reads, or messages to come); `more_body`:
        the origin sends more of it."""
        body, self.waiting = waiting.take(out), None
        self.on_time.disarm()
        rewriter = self.rewriter
        as_it_came = {"type": "http.response.body", "body": b"", "more_body": more_body}
        if rewriter is None or not self.exchange.decision.changes_page:
            # Nothing to change (left so, or only looked): the page as it came.
            return self._unchanged(as_it_came, look_on=True)
        start = self._rewritten_start(rewriter, None if more else len(body))   # (held whole)
        if start is None:   # the page as it came (this body message is among the held)
            return self._unchanged(as_it_came)
        return [start, {"type": "http.response.body", "body": body, "more_body": more}]

    async def _send_unchanged(self, message: Message) -> None:
        for made in self._unchanged(message):
            await self.send(made)

    def _unchanged(self, message: Message, *, look_on: bool = False) -> list[Message]:
        """The origin's response as it came (with the decision's headers), from the
        start that was held back and every body byte received so far. `look_on`: a page
        not known to have every slot is read on, for the next views (see `looking`)."""
        rewriter = self.rewriter
        found = rewriter.found if rewriter is not None else None
        if look_on and found is not None and not all(found) and rewriter is not None \
                and (message.get("more_body", False) or rewriter.pending):
            self.looking = True   # (the page, or the body message read, goes on)
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
                self.exchange.settle_no_slots()
            start = self._made(start)
        self.fail_open.observer.personalization_took(self.spent)
        body = b"".join([*self.held, message.get("body", b"")])
        self.held = []
        return [start, {"type": "http.response.body", "body": body,
                        "more_body": message.get("more_body", False)}]

    def _settle_unrewritten(self, rewriter: ResponseRewriter) -> None:
        """A page the rewriter leaves alone (its charset, its coding) shows no slot."""
        if rewriter.decided and not rewriter.rewriting:
            with self.fail_open.stage("slots", self.path):
                self.exchange.settle_no_slots()

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
            self._settle_unrewritten(rewriter)
            start = self.start = self._made(start)
            self.spent += time.perf_counter() - began
        headers: list[tuple[bytes, bytes]] = start.get("headers", [])
        if rewriter.rewriting:
            if whole is None and rewriter.verbatim:
                whole = _known_length(self.head, self.consumed, self.produced)
            headers = _rewritten(headers, rewriter, whole, self.headers.one_line)
            headers += self.headers.variant_headers(self.exchange, self.spent)
        self.on_time.disarm()
        self.fail_open.observer.personalization_took(self.spent)
        self.start = None   # (only once made: a fault before leaves it to go unchanged)
        self.held = []
        return {**start, "headers": headers}


def _known_length(head: ResponseHead, consumed: int, produced: int) -> int | None:
    """The length of a rewritten page whose edits are behind it and whose rest passes as
    it comes (`consumed` origin bytes gave `produced`): known when the origin's is, and
    the client gets it instead of chunked encoding."""
    length = head.get(b"content-length", "")
    if not length.isdigit() or int(length) < consumed:
        return None
    return produced + int(length) - consumed


def _rewritten(headers: list[tuple[bytes, bytes]], rewriter: ResponseRewriter,
               length: int | None, one_line: OneLine) -> list[tuple[bytes, bytes]]:
    """The start's headers for the rewritten body (`length`: its own, if known)."""
    out = [h for h in headers if h[0] not in _STALE]
    if rewriter.content_encoding:
        out.append((b"content-encoding", rewriter.content_encoding.encode()))
    # Compressed or not by the client's Accept-Encoding: caches must know (on the one Vary
    # line: nginx before 1.23 reads the last line alone).
    out = one_line.each([*out, (b"vary", b"Accept-Encoding")])
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out
