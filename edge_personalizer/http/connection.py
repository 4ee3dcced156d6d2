"""One HTTP/1.1 connection to the origin: an asyncio protocol reading responses with llhttp.

Strict where a proxy must be (issue 20): a response ends where its framing says, and any
byte after that end poisons the connection (it is closed, never pooled: what follows could
be a second, smuggled answer); trailer fields are dropped; a head whose framing headers
contradict each other, or name a transfer coding other than chunked, is an invalid answer
and never reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import httptools

from ..errors import UpstreamError, UpstreamInvalid, UpstreamTimeout

logger = logging.getLogger(__name__)

RawHeaders = list[tuple[bytes, bytes]]

HIGH_WATER = 256 * 1024         # buffered response bytes before reading pauses
MAX_HEADER_BYTES = 128 * 1024   # of one response's header block
MAX_HEADERS = 500


class Stale(Exception):
    """A pooled connection was closed by the origin before any byte of an answer."""


class _MoreData(Exception):
    """A byte arrived after the end of the response (llhttp stops on an exception)."""


def framing_error(headers: RawHeaders) -> str | None:
    """Why a response head's framing cannot be trusted, or None when it can.

    One Content-Length, or one Transfer-Encoding that is exactly `chunked`, or neither:
    anything else lets two parsers disagree on where the body ends."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        if len(name) != 14 and len(name) != 17:   # (most names: no lower-casing)
            continue
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value.strip())
        elif lower == b"transfer-encoding":
            codings.append(value.strip().lower())
    if len(lengths) > 1:
        return "origin sent conflicting lengths (several Content-Length headers)"
    if lengths and codings:
        return "origin sent conflicting lengths (Content-Length with Transfer-Encoding)"
    if lengths and not lengths[0].isdigit():
        return f"origin sent an invalid Content-Length {lengths[0][:40]!r}"
    if codings and codings != [b"chunked"]:
        return f"origin sent an unsupported Transfer-Encoding {b', '.join(codings)[:60]!r}"
    return None


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Connection(asyncio.Protocol):
    """One keep-alive connection to the origin; one exchange at a time.

    `begin()` starts an exchange; the parser's callbacks fill `status`, `headers` and
    the body chunks that `take()` hands out; `complete` says the response has ended and
    `reusable` whether the connection may carry another exchange."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.poisoned = False
        self.idle_since = 0.0
        self.idle = False
        self.reused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._reset(head=False)

    def _reset(self, *, head: bool) -> None:
        self.head = head
        self.status = 0
        self.headers: RawHeaders = []
        self.header_bytes = 0
        self.interim = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: UpstreamError | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.reading_paused = False
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
        if self._write_paused and not self.closed:
            self._drained = self.loop.create_future()
            await self.wait(self._drained, "the origin stopped reading the request body")

    async def wait(self, future: asyncio.Future[None], what: str) -> None:
        """Await `future` for at most the read timeout."""
        timer = self.loop.call_later(self.read_timeout, _expire, future, what)
        try:
            await future
        finally:
            timer.cancel()

    async def wait_for_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise self._closed_early()
            self.waiter = self.loop.create_future()
            await self.wait(self.waiter, "origin gave no answer in time")

    def _closed_early(self) -> Exception:
        if self.reused and not self.received:
            return Stale()
        return UpstreamError("origin closed the connection without an answer")

    def take(self) -> bytes | None:
        """The body bytes buffered so far (None when none are)."""
        chunks = self.chunks
        if not chunks:
            return None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

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
        if not self.headers_done:
            # Counted per read too: a head still unfinished past the limit.
            self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES or len(self.headers) > MAX_HEADERS:
                self._fail(UpstreamInvalid("origin sent too many or too large headers"))
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and self._until_eof():
            self.complete = True   # a body delimited by the end of the connection
        elif not self.complete and self.headers_done:
            self._fail(UpstreamError("origin closed the connection mid-body"
                                     + (f" ({describe_error(exc)})" if exc else "")))
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _until_eof(self) -> bool:
        """Whether the answer's body is delimited by the end of the connection."""
        if self.head or self.status in (204, 304):
            return False
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self._poison()
            raise _MoreData

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:   # after the head: trailer fields, dropped
            self.headers.append((name, value))
            self.header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True   # 100 Continue, 103 Early Hints: the answer follows
            self.headers = []
            self.header_bytes = 0
            return
        too_many = len(self.headers) > MAX_HEADERS or self.header_bytes > MAX_HEADER_BYTES
        problem = ("origin sent too many or too large headers"
                   if too_many else framing_error(self.headers))
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
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
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


def _expire(future: asyncio.Future[None], what: str) -> None:
    if not future.done():
        future.set_exception(UpstreamTimeout(what))
