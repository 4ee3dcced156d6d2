"""Upstream: the client that speaks HTTP/1.1 to the origin over pooled keep-alive connections.

A reverse proxy asks one origin the same kind of question thousands of times a second, so
this client does only that: asyncio protocols, llhttp (through httptools, the parser uvicorn
already runs on) for responses (connection.py), and a LIFO pool of idle connections per
origin with bounded waits for a slot (pool.py). The peer benchmark measured a
general-purpose client's machinery (aiohttp's; httpx's pool several times more) as the
largest single cost of a proxied request. Any httpx transport stands in behind the same
two-method seam (`OriginClient`: send, aclose) through httpx_client.HttpxUpstream; one
conformance suite (tests/http/test_conformance.py) runs against both.

What it guarantees: bodies stream both ways with flow control; nothing is added to or
kept from a request (no cookies, no default headers: one visitor's data never reaches
another's request); a connection goes back to the pool only after a complete response
to a completely sent request, with nothing after the response's end; a response whose
framing headers conflict is an UpstreamError, never a response; an idempotent request that
finds a pooled connection closed by the origin before any answer is retried once on a new
connection; no slot within `pool_timeout` is UpstreamBusy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Protocol

from ..errors import UpstreamError, UpstreamTimeout
from .connection import Connection, RawHeaders, Stale, came_in_time, describe_error
from .pool import Key, Pool

__all__ = ["OriginClient", "ProbeResult", "RawHeaders", "Upstream", "UpstreamResponse",
           "describe_error", "probe"]

_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_UNRETRIED_MAX_IDLE: Final = 1.0   # seconds; origins keep idle connections open 5 s and more


@dataclass(frozen=True)
class ProbeResult:
    """Whether the origin answered a health probe, how fast, and what it said."""

    reachable: bool
    seconds: float
    detail: str


class UpstreamResponse(Protocol):
    """An origin response whose body has not been read yet; `aclose()` must follow."""

    status: int
    headers: RawHeaders

    def body(self) -> AsyncIterator[bytes]:
        """The body exactly as the origin sent it (still compressed, if it was).

        Raises UpstreamError / UpstreamTimeout when the origin breaks off or stalls."""
        ...

    @property
    def ended(self) -> bool:
        """Whether the chunk `body()` gave last was the body's end (False when unknown)."""
        ...

    async def aclose(self) -> None:
        """Done with the response (read whole or not): the connection is pooled or closed."""
        ...


class OriginClient(Protocol):
    """The seam between the proxy and an HTTP client (as httpx's transport: two methods).

    `send` raises UpstreamError when the origin is unreachable or answers invalid HTTP,
    UpstreamTimeout when it is too slow, UpstreamBusy when no connection is free in time."""

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse: ...
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


class _Response:
    """The origin's answer on a connection the pool gets back once it is complete."""

    def __init__(self, pool: Pool, key: Key, conn: Connection,
                 sending: asyncio.Task[None] | None) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._pool = pool
        self._key = key
        self._conn: Connection | None = conn
        self._sending = sending

    def body(self) -> AsyncIterator[bytes]:
        return _Chunks(self._conn)

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
        self._pool.give_slot(self._key)
        # Not read to its end (the client went away, a timeout): closed, never pooled.
        self._pool.give_back(self._key, conn, reusable=sent)


class _Chunks:
    """A response's body as the origin sends it, chunk by chunk (an iterator class, not an
    async generator: the request path is compiled, and mypyc compiles no async generator)."""

    def __init__(self, conn: Connection | None) -> None:
        self._conn = conn

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            data = conn.take()
            if data is not None:
                return data
            if conn.complete:
                raise StopAsyncIteration
            if conn.error is not None:
                raise UpstreamError(f"origin broke off its response: {conn.error}")
            conn.waiter = conn.loop.create_future()
            if not await came_in_time(conn.loop, conn.read_timeout, conn.waiter):
                raise UpstreamTimeout("origin stopped sending mid-body (read timeout)")


class Upstream:
    """Sends requests to the origin over pooled HTTP/1.1 keep-alive connections.

    `max_connections` caps exchanges open at once, `max_connections_per_origin` those to
    one scheme/host/port (default: the same); a request waits at most `pool_timeout`
    seconds for a free one, then gets UpstreamBusy."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 max_connections: int = 512, max_connections_per_origin: int | None = None,
                 pool_timeout: float = 5.0, keepalive_timeout: float = 30.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool = Pool(connect_timeout=connect_timeout, read_timeout=read_timeout,
                         max_connections=max_connections,
                         max_connections_per_origin=max_connections_per_origin,
                         wait_timeout=pool_timeout, keepalive_timeout=keepalive_timeout)
        self._keys: dict[str, Key] = {}   # by scheme://authority

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse:
        """Send one request; the body streams. Raises UpstreamError / UpstreamTimeout /
        UpstreamBusy."""
        key, target = self._split_remembered(url)
        head, chunked = _request_head(method, target, headers, body)
        retry = method in _IDEMPOTENT and isinstance(body, bytes)
        # A request that cannot be sent again takes only a connection used a moment ago:
        # one idle for longer may be closing at the origin's end just as it is written to.
        max_idle = None if retry else _UNRETRIED_MAX_IDLE
        pool = self.pool
        await pool.take_slot(key)
        try:
            while True:
                conn = await pool.connection(key, max_idle=max_idle)
                try:
                    return await self._exchange(key, conn, method, head, body, chunked)
                except Stale:
                    pool.forget(conn)
                    if not retry:
                        raise UpstreamError("origin closed a kept-alive connection "
                                            "before answering") from None
                    retry = False   # once, on a new connection: the idle ones are older
                    pool.drop_idle(key)
                except BaseException:
                    pool.forget(conn)
                    raise
        except BaseException:
            pool.give_slot(key)
            raise

    def _split_remembered(self, url: str) -> tuple[Key, bytes]:
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

    async def _exchange(self, key: Key, conn: Connection, method: str, head: bytes,
                        body: AsyncIterator[bytes] | bytes, chunked: bool) -> _Response:
        conn.begin(method == "HEAD")
        sending: asyncio.Task[None] | None = None
        if isinstance(body, bytes):
            conn.write(head + body if body else head)
            await conn.wait_for_headers()
        else:
            conn.write(head)
            sending = asyncio.ensure_future(_send_body(conn, body, chunked))
            await _headers_or_failure(conn, sending)
        return _Response(self.pool, key, conn, sending)

    async def aclose(self) -> None:
        self.pool.close()


def _split(url: str) -> tuple[Key, bytes]:
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
        if name == b"transfer-encoding" or name == b"content-length" and not streamed:
            continue
        if name == b"content-length":
            has_length = True
        parts += [name, b": ", value, b"\r\n"]
    chunked = streamed and not has_length
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif not streamed and (body or method in _BODY_METHODS):
        parts.append(b"content-length: %d\r\n" % len(body))   # type: ignore[arg-type]
    parts.append(b"\r\n")
    return b"".join(parts), chunked


async def _send_body(conn: Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in body:
        if not chunk:
            continue
        conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await conn.drain()
    if chunked:
        conn.write(b"0\r\n\r\n")


async def _headers_or_failure(conn: Connection, sending: asyncio.Task[None]) -> None:
    """Wait for the answer's headers while the body streams: an origin may answer early,
    and a body that fails (too large, client gone, an origin that stops reading it) ends
    the wait with its own error. The read timeout starts once the body is all sent: a
    long upload at a good pace is no silent origin (the body has its own bounds)."""
    headers = asyncio.ensure_future(conn.wait_for_headers(timed=False))
    try:
        await asyncio.wait({headers, sending}, return_when=asyncio.FIRST_COMPLETED)
        if not headers.done():
            error = sending.exception()
            if error is not None:
                raise error
            headers.cancel()
            headers = asyncio.ensure_future(conn.wait_for_headers())
            await headers
        headers.result()
    except BaseException:
        # No answer: the body stops too, and its own failure (a timeout of the same length,
        # say) is read here: the answer's is the one raised.
        if not sending.done():
            sending.cancel()
        elif not sending.cancelled():
            sending.exception()
        raise
    finally:
        if not headers.done():
            headers.cancel()
