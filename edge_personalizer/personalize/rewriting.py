"""The `send` the wrapped app gets: personalizes a page's headers and rewrites its HTML."""

from __future__ import annotations

import logging
import time

from starlette.types import Message, Send

from ..learn.goals import GOAL_HEADER
from ..rewrite.recovery import RewriteAborted
from ..rewrite.stream import ResponseRewriter
from .exchange import Exchange
from .fail_open import FailOpen
from .page_edits import PageChanges, PageEditor
from .response_headers import PageHeaders, ResponseHead, is_html, read_head
from .segments import SEGMENT_HEADER

logger = logging.getLogger(__name__)

# Statuses whose HTML is a whole page (206 is a part; 204/205 have none)
_REWRITTEN = frozenset({200, 201, 202, 203})
# Headers that no longer describe a rewritten body
_STALE = frozenset({b"content-length", b"etag", b"content-md5", b"content-encoding"})


class RewritingSend:
    """One response on its way out, owning its state (as starlette's GZipResponder does).

    The response start is held back while the rewriter reads the first KiB (to learn the
    charset); every error of ours is contained, and the origin's bytes go on unchanged.
    """

    def __init__(self, exchange: Exchange, send: Send, *, headers: PageHeaders,
                 editor: PageEditor, fail_open: FailOpen, spent: float,
                 accept_encoding: str) -> None:
        self.exchange = exchange
        self.send = send
        self.headers = headers
        self.editor = editor
        self.fail_open = fail_open
        self.spent = spent              # seconds personalization added so far
        self.accept_encoding = accept_encoding
        self.start: Message | None = None   # held back until the rewriter has decided
        self.rewriter: ResponseRewriter | None = None
        self.changes: PageChanges | None = None   # what the rewriter does, slot by slot
        self.aborted = False
        self.head: ResponseHead = {}
        self.consumed = 0   # origin body bytes fed to the rewriter
        self.produced = 0   # bytes it gave back
        self.held: list[bytes] = []   # the origin's body while the start is held back

    @property
    def path(self) -> str:
        return self.exchange.visitor.request.path

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._start(message)
            return
        if self.aborted:
            return
        if message["type"] != "http.response.body" or self.rewriter is None:
            await self.send(message)
            return
        out: bytes | None = None
        with self.fail_open.stage("rewrite", self.path) as outcome:
            try:
                out = self._rewrite(message)
            except RewriteAborted:
                # Part of the page is out and the rest cannot be matched up: an incomplete
                # response (the connection closes) is honest; a mangled page would not be.
                logger.exception("rewriting %s failed mid-page; closing the connection",
                                 self.path)
                self.fail_open.observer.stage_failed("rewrite")
                self.aborted = True
                return
        if outcome.failed:
            await self._send_unchanged(message)
            return
        rewriter = self.rewriter
        if rewriter is not None and self.start is not None and rewriter.decided:
            await self._send_start(rewriter)
        if out is not None and self.start is None:
            await self.send({"type": "http.response.body", "body": out,
                             "more_body": message.get("more_body", False)})

    async def _start(self, message: Message) -> None:
        began = time.perf_counter()
        self.head = read_head(message.get("headers", ()))
        page = False   # a whole HTML page with a body
        with self.fail_open.stage("slots", self.path):
            page = self._is_page(message)
            if page:
                self._drop_absent_slots()
        with self.fail_open.stage("goals", self.path):
            headers = message.get("headers", [])
            kept = self.headers.personalizer.reach_goals(
                self.exchange, message["status"], headers, goal_header=GOAL_HEADER in self.head)
            if kept is not headers:
                message = {**message, "headers": kept}
        with self.fail_open.stage("headers", self.path):
            message = self.headers.finish(message, self.exchange, self.head)
        with self.fail_open.stage("rewrite", self.path):
            self.rewriter = self._rewriter_for(page)
        self.spent += time.perf_counter() - began
        if self.rewriter is None:
            self.fail_open.observer.personalization_took(self.spent)
            await self.send(message)
        else:
            self.start = message

    def _is_page(self, message: Message) -> bool:
        """Whether the response is a whole HTML page with a body."""
        if message["status"] not in _REWRITTEN or not is_html(self.head):
            return False   # a 206 is part of a page: its ranges must fit the others
        # no body to rewrite: the head goes out as it is, at once
        return (self.exchange.scope["method"] != "HEAD"
                and self.head.get(b"content-length") != "0")

    def _drop_absent_slots(self) -> None:
        """On a page known to lack some of the decision's slots, the choices for those go
        before the headers, the cookie and the counts are made of it."""
        exchange = self.exchange
        if exchange.preview:
            return
        decision = exchange.decision
        if not decision.slots:
            return
        if self.headers.cache.keyed and \
                exchange.visitor.request.headers.get(SEGMENT_HEADER) is not None:
            return   # an edge named the segment its cache keys this page on: made for it
        slots = self.headers.personalizer.slots
        absent = slots.absent(self.path, self.head)
        if absent:
            exchange.settle(slots.trim(decision, absent))

    def _rewriter_for(self, page: bool) -> ResponseRewriter | None:
        if not page or not self.exchange.decision.changes_page:
            return None
        made = self.editor.rewriter_for(self.exchange, self.head, self.accept_encoding,
                                        on_error=self.fail_open.edit_failed)
        if made is None:
            return None
        rewriter, self.changes = made
        return rewriter

    def _learn(self, rewriter: ResponseRewriter) -> None:
        """The page was read to its end: which of its slots it has, for the next views."""
        changes = self.changes
        found = rewriter.found
        if changes is None or found is None or len(found) != len(changes.slots):
            return
        self.headers.personalizer.slots.learned(
            self.path, self.head, dict(zip(changes.slots, found, strict=True)))

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
                self._learn(rewriter)
        except RewriteAborted:
            raise
        except Exception as exc:
            # A fault of ours: unchanged while nothing is out yet, else cut off honestly.
            if self.start is None:
                raise RewriteAborted(str(exc)) from exc
            raise
        if self.start is not None and not rewriter.decided:
            self.held.append(chunk)
        self.consumed += len(chunk)
        self.produced += len(out) if out else 0
        self.spent += time.perf_counter() - began
        return out

    def close(self) -> None:
        """The response is over, whole or cut off: the rewriter lets go of its parser."""
        if self.rewriter is not None:
            self.rewriter.close()

    async def _send_unchanged(self, message: Message) -> None:
        """The origin's response as it came (with the decision's headers), from the
        start that was held back and every body byte received so far."""
        self.close()
        self.rewriter = None
        start, self.start = self.start, None
        if start is None:
            return
        self.fail_open.observer.personalization_took(self.spent)
        await self.send(start)
        body = b"".join([*self.held, message.get("body", b"")])
        self.held = []
        await self.send({"type": "http.response.body", "body": body,
                         "more_body": message.get("more_body", False)})

    async def _send_start(self, rewriter: ResponseRewriter) -> None:
        start = self.start
        if start is None:
            return
        self.start = None
        headers: list[tuple[bytes, bytes]]
        if rewriter.rewriting:
            length = self.head.get(b"content-length", "")
            headers = [h for h in start.get("headers", ()) if h[0].lower() not in _STALE]
            if rewriter.content_encoding:
                headers.append((b"content-encoding", rewriter.content_encoding.encode()))
            # Compressed or not by the client's Accept-Encoding: caches must know.
            headers.append((b"vary", b"Accept-Encoding"))
            if rewriter.verbatim and length.isdigit() and int(length) >= self.consumed:
                # The edits are behind us and the rest passes as it comes: the length
                # is known, and the client gets it instead of chunked encoding.
                total = self.produced + int(length) - self.consumed
                headers.append((b"content-length", str(total).encode()))
            headers += self.headers.variant_headers(self.exchange, self.spent)
        else:
            headers = start.get("headers", [])
        self.fail_open.observer.personalization_took(self.spent)
        await self.send({**start, "headers": headers})
