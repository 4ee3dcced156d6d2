"""One HTTP/1.1 connection to the origin: an asyncio protocol reading responses with llhttp.

Strict where a proxy must be (issue 20): a response ends where its framing says, and any
byte after that end poisons the connection (it is closed, never pooled: what follows could
be a second, smuggled answer); trailer fields are dropped; a head whose framing headers
contradict each other, or name a transfer coding other than chunked, is an invalid answer
and never reaches a client (the head's checks: framing.py). Reading pauses while a body
waits for its reader, writing while the origin does not read (flow.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import httptools

from ..errors import UpstreamError, UpstreamInvalid, UpstreamTimeout
from .flow import BodyBuffer, WriteFlow
from .framing import TOO_LARGE, ends_at_close, head_error, too_large
from .framing import RawHeaders as RawHeaders  # (the type of Connection.headers)

logger = logging.getLogger(__name__)


class Stale(Exception):
    """A pooled connection was closed by the origin before any byte of an answer."""


class _MoreData(Exception):
    """A byte arrived after the end of the response (llhttp stops on an exception)."""


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Connection(WriteFlow):
    """One keep-alive connection to the origin; one exchange at a time.

    `begin()` starts an exchange; the parser's callbacks fill `status`, `headers` and
    the body chunks that `take()` hands out; `complete` says the response has ended and
    `reusable` whether the connection may carry another exchange."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        super().__init__(loop)
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.poisoned = False
        self.idle_since = 0.0
        self.idle = False
        self.reused = False
        self._reset(head=False)

    def _reset(self, *, head: bool) -> None:
        self.head = head
        self.status = 0
        self.headers: RawHeaders = []
        self.header_bytes = 0   # of the fields parsed
        self.head_read = 0      # bytes read while the head was unfinished
        self.interim = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: UpstreamError | None = None
        self.body = BodyBuffer(self.transport)
        self.chunks = self.body.chunks   # (emptied in place as they are taken)
        self.waiter: asyncio.Future[None] | None = None

    # The exchange

    def begin(self, head_request: bool) -> None:
        self.idle = False
        self._reset(head=head_request)

    @property
    def reusable(self) -> bool:
        """Whether the response ended cleanly and the origin keeps the connection open."""
        return (self.complete and self.keep_alive and not self.poisoned
                and not self.closed and not self.chunks)

    def write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise self._closed_early()
        self.transport.write(data)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            await self.wait(self.drained(), "the origin stopped reading the request body")

    async def wait(self, future: asyncio.Future[None], what: str) -> None:
        """Await `future` for at most the read timeout; past it UpstreamTimeout(what)."""
        if not await came_in_time(self.loop, self.read_timeout, future):
            raise UpstreamTimeout(what)

    async def wait_for_headers(self, *, timed: bool = True) -> None:
        """Until the answer's head has come; at most the read timeout when `timed` (not
        while the request is still being sent: an upload takes its time)."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise self._closed_early()
            self.waiter = waiter = self.loop.create_future()
            await (self.wait(waiter, "origin gave no answer in time") if timed else waiter)

    def _closed_early(self) -> Exception:
        if self.reused and not self.received:
            return Stale()
        return UpstreamError("origin closed the connection without an answer")

    def take(self) -> bytes | None:
        """The body bytes buffered so far (None when none are)."""
        return self.body.take(not self.closed)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.idle:   # nothing was asked: whatever this is, the connection is unusable
            self.close()
            return
        if self.complete:   # the answer is whole: these bytes belong to no request of ours
            self._poison()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.poisoned:   # the answer ended; what followed it stopped the parser
                return
            self._fail(UpstreamInvalid(f"origin sent invalid HTTP: {exc}"))
            self.close()
            return
        except httptools.HttpParserUpgrade:   # 101 to a request that asked for no upgrade
            self._fail(UpstreamInvalid("origin switched protocols unasked"))
            self.close()
            return
        if not self.headers_done:
            # A head still unfinished past the limit, by its bytes read (apart from its fields).
            self.head_read += len(data)
            if too_large(self.headers, self.head_read):
                self._fail(UpstreamInvalid(TOO_LARGE))
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and ends_at_close(self.head, self.status,
                                                                     self.headers):
            self.complete = True   # a body delimited by the end of the connection
        elif not self.complete and self.headers_done:
            self._fail(UpstreamError("origin closed the connection mid-body"
                                     + (f" ({describe_error(exc)})" if exc else "")))
        self._wake()
        self.release_writer()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self._poison()
            raise _MoreData

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:   # after the head: trailer fields, dropped
            self.headers.append((name.lower(), value))
            self.header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True   # 100 Continue, 103 Early Hints: the answer follows
            self.headers = []
            self.header_bytes = self.head_read = 0
            return
        problem = head_error(status, self.headers, self.header_bytes)
        if problem is not None:
            error = UpstreamInvalid(problem)
            self._fail(error)   # kept: the parser reports any callback's error as its own
            raise error
        self.status = status
        self.headers_done = True
        if self.head:
            # No body follows, whatever Content-Length says; llhttp cannot be told so,
            # so the rest of this read goes to a fresh parser (where it is "more data").
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:   # a body after a HEAD answer's head
            self._poison()
            raise _MoreData
        self.body.add(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.complete:   # the HEAD exchange, already ended
            return
        self.complete = True
        # (llhttp's answer is False for a body delimited by the end of the connection)
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def _poison(self) -> None:
        """Bytes after the response's end: answer this one, then close (as nginx does:
        "upstream sent more data than specified")."""
        if not self.poisoned:
            self.poisoned = True
            logger.warning("origin sent data after the end of a %d response; "
                           "connection closed, not reused", self.status)
        self.close()

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def came_in_time(loop: asyncio.AbstractEventLoop, seconds: float,
                       future: asyncio.Future[None]) -> bool:
    """Await `future` for at most `seconds`: whether it came. The timeout is no exception
    in the future: compiled, one raised there and handled by the body's reader resurfaced
    as what the whole request had raised, logged with a traceback."""
    expired: list[bool] = []   # (its own: the body's sending waits beside the answer)
    timer = loop.call_later(seconds, _expire, future, expired)
    try:
        await future
    finally:
        timer.cancel()
    return not expired


def _expire(future: asyncio.Future[None], expired: list[bool]) -> None:
    if not future.done():
        expired.append(True)
        future.set_result(None)
