"""Upstream: the client that speaks HTTP/1.1 to the origin over pooled keep-alive connections.

A reverse proxy asks one origin the same kind of question thousands of times a second, so
this client does only that: asyncio protocols, llhttp (through httptools, the parser uvicorn
already runs on) for responses, and a LIFO pool of idle connections per origin. The peer
benchmark measured a general-purpose client's machinery (aiohttp's; httpx's pool several
times more) as the largest single cost of a proxied request. Any httpx transport can stand
in through `httpx_upstream.HttpxUpstream` (the unit tests use httpx.MockTransport).

What it guarantees: bodies stream both ways with flow control; nothing is added to or
kept from a request (no cookies, no default headers: one visitor's data never reaches
another's request); a connection goes back to the pool only after a complete response
to a completely sent request; an idempotent request that finds a pooled connection closed
by the origin before any answer is retried once on a new connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

from ..errors import UpstreamError, UpstreamTimeout

RawHeaders = list[tuple[bytes, bytes]]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_HIGH_WATER = 256 * 1024        # buffered response bytes before reading pauses
_MAX_HEADER_BYTES = 128 * 1024  # of one response's header block
_MAX_HEADERS = 500


@dataclass(frozen=True)
class ProbeResult:
    """Whether the origin answered a health probe, how fast, and what it said."""

    reachable: bool
    seconds: float
    detail: str


class UpstreamResponse(Protocol):
    """An origin response whose body has not been read yet."""

    status: int
    headers: RawHeaders

    def body(self) -> AsyncIterator[bytes]:
        """The body exactly as the origin sent it (still compressed, if it was)."""
        ...

    @property
    def ended(self) -> bool:
        """Whether the chunk `body()` gave last was the body's end (False when unknown)."""
        ...

    async def aclose(self) -> None: ...


class OriginClient(Protocol):
    """What OriginProxy needs from an HTTP client."""

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse: ...
    async def probe(self, url: str, host: str) -> ProbeResult: ...
    async def aclose(self) -> None: ...


async def probe(client: OriginClient, url: str, host: str) -> ProbeResult:
    """HEAD `url`: any HTTP answer, even an error status, means the origin is reachable."""
    started = time.perf_counter()
    try:
        response = await client.send("HEAD", url, [(b"host", host.encode("latin-1"))], b"")
    except UpstreamError as exc:
        return ProbeResult(False, time.perf_counter() - started, str(exc))
    await response.aclose()
    return ProbeResult(True, time.perf_counter() - started, f"HTTP {response.status}")


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Stale(Exception):
    """A pooled connection was closed by the origin before any byte of an answer."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection to the origin; one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
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
            return _Stale()
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
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"origin sent invalid HTTP: {exc}"))
            self.close()
            return
        if not self.headers_done:
            # Counted per read, not per header: a head still unfinished past the limit.
            self.header_bytes += len(data)
            if self.header_bytes > _MAX_HEADER_BYTES or len(self.headers) > _MAX_HEADERS:
                self._fail(UpstreamError("origin sent too many or too large headers"))
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

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True   # 100 Continue, 103 Early Hints: the answer follows
            self.headers = []
            self.header_bytes = 0
            return
        if len(self.headers) > _MAX_HEADERS:
            error = UpstreamError("origin sent too many or too large headers")
            self._fail(error)   # kept: the parser reports any callback's error as its own
            raise error
        self.status = status
        self.headers_done = True
        if self.head:
            # No body follows, whatever Content-Length says; llhttp cannot be told so,
            # so the next exchange gets a fresh parser.
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport:
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


class _Response:
    """The origin's answer on a connection the pool gets back once it is complete."""

    def __init__(self, pool: Upstream, key: tuple[str, str, int],
                 conn: _Connection, sending: asyncio.Task[None] | None) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._pool = pool
        self._key = key
        self._conn: _Connection | None = conn
        self._sending = sending

    async def body(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while True:
            data = conn.take()
            if data is not None:
                yield data
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise UpstreamError(f"origin broke off its response: {conn.error}")
            conn.waiter = conn.loop.create_future()
            try:
                await conn.wait(conn.waiter, "read timeout")
            except UpstreamTimeout as exc:
                raise UpstreamTimeout(f"origin stopped sending mid-body ({exc})") from None

    @property
    def ended(self) -> bool:
        conn = self._conn
        return conn is not None and conn.complete and not conn.chunks

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        sending = self._sending
        sent = sending is None or (sending.done() and not sending.cancelled()
                                   and sending.exception() is None)
        if sending is not None and not sending.done():
            sending.cancel()
        self._pool.release(self._key, conn,
                           reusable=sent and conn.complete and conn.keep_alive and not conn.chunks)


class Upstream:
    """Sends requests to the origin over pooled HTTP/1.1 keep-alive connections."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 max_connections: int = 512, keepalive_timeout: float = 30.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._max_connections = max_connections
        self._ssl: ssl.SSLContext | None = None
        self._keys: dict[str, tuple[str, str, int]] = {}   # by scheme://authority

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse:
        """Send one request; the body streams. Raises UpstreamError / UpstreamTimeout."""
        key, target = self._split_remembered(url)
        head, chunked = _request_head(method, target, headers, body)
        retry = method in _IDEMPOTENT and isinstance(body, bytes)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        slots = self._slots
        await slots.acquire()
        try:
            while True:
                conn = await self._connection(key)
                try:
                    return await self._exchange(key, conn, method, head, body, chunked)
                except _Stale:
                    self._give_back(key, conn, reusable=False)
                    if not retry:
                        raise UpstreamError("origin closed a kept-alive connection "
                                            "before answering") from None
                    retry = False   # once, on a new connection: the idle ones are older
                    self._drop_idle(key)
                except BaseException:
                    self._give_back(key, conn, reusable=False)
                    raise
        except BaseException:
            slots.release()
            raise

    def _split_remembered(self, url: str) -> tuple[tuple[str, str, int], bytes]:
        """_split, with the origin part of URLs remembered (a proxy asks one origin)."""
        scheme_end = url.find("://")
        slash = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
        if slash < 0 or "?" in url[:slash] or "#" in url[:slash]:
            return _split(url)
        base = url[:slash]
        key = self._keys.get(base)
        if key is None:
            key = _split(base + "/")[0]
            if len(self._keys) >= 64:
                self._keys.clear()
            self._keys[base] = key
        return key, url[slash:].encode("latin-1")

    async def _exchange(self, key: tuple[str, str, int], conn: _Connection, method: str,
                        head: bytes, body: AsyncIterator[bytes] | bytes,
                        chunked: bool) -> _Response:
        conn.begin(method == "HEAD")
        sending: asyncio.Task[None] | None = None
        if isinstance(body, bytes):
            conn.write(head + body if body else head)
            await conn.wait_for_headers()
        else:
            conn.write(head)
            sending = asyncio.ensure_future(_send_body(conn, body, chunked))
            await _headers_or_failure(conn, sending)
        return _Response(self, key, conn, sending)

    async def _connection(self, key: tuple[str, str, int]) -> _Connection:
        idle = self._idle.get(key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self.keepalive_timeout:
                    conn.reused = True
                    return conn
                self._forget(conn)
        return await self._connect(key)

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop, self.read_timeout),
                                       host, port, ssl=context,
                                       server_hostname=host if context else None),
                self.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"origin gave no answer in time (connecting to {host}:{port} "
                                  f"took over {self.connect_timeout:g} s)") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"origin unreachable: cannot connect to {host}:{port}: "
                                f"{describe_error(exc)}") from exc
        self._open.add(conn)
        return conn

    def release(self, key: tuple[str, str, int], conn: _Connection, *, reusable: bool) -> None:
        """The exchange on `conn` is over: its slot is free, the connection pooled or closed."""
        if self._slots is not None:
            self._slots.release()
        self._give_back(key, conn, reusable=reusable)

    def _give_back(self, key: tuple[str, str, int], conn: _Connection, *,
                   reusable: bool) -> None:
        """To the idle pool if `conn` can carry another exchange, else closed."""
        if reusable and not conn.closed:
            conn.idle = True
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        else:
            self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    def _drop_idle(self, key: tuple[str, str, int]) -> None:
        for conn in self._idle.pop(key, []):
            self._forget(conn)

    async def probe(self, url: str, host: str) -> ProbeResult:
        return await probe(self, url, host)

    async def aclose(self) -> None:
        for conn in list(self._open):
            self._forget(conn)
        self._idle.clear()


def _split(url: str) -> tuple[tuple[str, str, int], bytes]:
    """(scheme, host, port) and the request target of an absolute http(s) URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise UpstreamError(f"not an http(s) URL: {url!r}")
    authority, slash, target = rest.partition("/")
    authority = authority.rsplit("@", 1)[-1]
    host, port = authority, 443 if scheme == "https" else 80
    if authority.startswith("["):   # [IPv6]:port
        end = authority.find("]")
        host, tail = authority[1:end], authority[end + 1:]
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif ":" in authority:
        name, _, number = authority.rpartition(":")
        if number.isdigit():
            host, port = name, int(number)
    if "?" in target and not slash:
        target = target.partition("?")[2]
        path = "/?" + target
    else:
        path = "/" + target
    return (scheme, host, port), path.encode("latin-1")


def _request_head(method: str, target: bytes, headers: RawHeaders,
                  body: AsyncIterator[bytes] | bytes) -> tuple[bytes, bool]:
    """The request line and headers, and whether a streamed body goes chunked.

    A body in hand is framed by its own length; a streamed one keeps the client's
    Content-Length, or goes chunked when it had none."""
    streamed = not isinstance(body, bytes)
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding" or lower == b"content-length" and not streamed:
            continue
        if lower == b"content-length":
            has_length = True
        parts += [name, b": ", value, b"\r\n"]
    chunked = streamed and not has_length
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif not streamed and (body or method in _BODY_METHODS):
        parts.append(b"content-length: %d\r\n" % len(body))   # type: ignore[arg-type]
    parts.append(b"\r\n")
    return b"".join(parts), chunked


async def _send_body(conn: _Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in body:
        if not chunk:
            continue
        conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await conn.drain()
    if chunked:
        conn.write(b"0\r\n\r\n")


async def _headers_or_failure(conn: _Connection, sending: asyncio.Task[None]) -> None:
    """Wait for the answer's headers while the body streams: an origin may answer early,
    and a body that fails (too large, client gone) ends the wait with its own error."""
    headers = asyncio.ensure_future(conn.wait_for_headers())
    try:
        await asyncio.wait({headers, sending}, return_when=asyncio.FIRST_COMPLETED)
        if not headers.done():
            error = sending.exception()
            if error is not None:
                raise error
            await headers
        headers.result()
    finally:
        if not headers.done():
            headers.cancel()
