"""OriginProxy: an ASGI app that forwards every request to one configured origin."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from types import MappingProxyType
from typing import Protocol

from starlette.types import Message, Receive, Scope, Send

from ..errors import (
    RequestRejected,
    UpstreamBusy,
    UpstreamError,
    UpstreamInvalid,
    UpstreamTimeout,
)
from ..http.client import OriginClient, ProbeResult, Upstream, UpstreamResponse, probe
from .client_ip import TrustedProxies, client_address
from .headers import (
    OriginRequest,
    RequestLimits,
    RequestReader,
    response_headers_for_client,
)
from .pages import send_error_page
from .target import Origin, is_origin_form
from .websocket import open_upstream, relay

logger = logging.getLogger(__name__)


class ProxyObserver(Protocol):
    """What the proxy reports about the origin (metrics implement it)."""

    def origin_responded(self, seconds: float) -> None: ...
    def origin_failed(self, kind: str) -> None: ...
    def origin_busy(self, reason: str) -> None:
        """A 503 of ours: "pool" (no origin connection free within the pool timeout) or
        "long_lived" (the cap of long-lived responses reached)."""


_REFUSED_METHODS = frozenset({"TRACE", "CONNECT", "TRACK"})
# Refusals after which the connection closes, as nginx closes it: the request may be framed
# otherwise than a proxy in front believes, so nothing more is read from that connection.
_CLOSING = frozenset({400, 408, 413, 414, 431, 501})


class NoProxyObserver:
    """Reports nowhere: for a proxy used without metrics."""

    def origin_responded(self, seconds: float) -> None:
        pass

    def origin_failed(self, kind: str) -> None:
        pass

    def origin_busy(self, reason: str) -> None:
        pass


# Responses that hold their origin connection for as long as the visitor stays.
_LONG_LIVED_TYPES = (b"text/event-stream", b"multipart/x-mixed-replace")
# What a visitor reads when the origin fails, by the kind counted in ep_origin_errors
_FAILURE_MESSAGES = MappingProxyType({
    "timeout": "The site's server did not answer in time. Please try again in a moment.",
    "unreachable": "The site's server could not be reached. Please try again in a moment.",
    "invalid": "The site's server sent an answer that cannot be passed on. "
               "Please try again in a moment.",
})
_RETRY_AFTER = b"5"   # seconds, on our 503s: a pool or the long-lived cap frees up fast
_WATCH_AFTER = 1.0   # seconds a body streams before the client's leaving is watched for
# Bytes a second a request body must average once `body_timeout` has passed: a client
# sending a byte every few seconds never pauses for long, and is still cut off.
BODY_MIN_RATE = 1024


class OriginProxy:
    """Forward HTTP and WebSocket requests to `origin_url`, streaming both ways.

    The scheme, host and port always come from `origin_url`: the Host header, an
    absolute-form request target or `..` segments cannot send a request elsewhere.

    Connections to the origin are capped (`max_connections`, `max_connections_per_origin`;
    a request waits at most `pool_timeout` for one, then gets 503 with Retry-After), and so
    are long-lived responses (server-sent events, multipart/x-mixed-replace) at once
    (`max_long_lived`, default half the connections), so that streams can never take every
    connection. When the client goes away mid-body, the origin read stops and that origin
    connection is closed.

    A request body must keep coming: a pause longer than `body_timeout`, or a body slower
    than BODY_MIN_RATE on average once that long has passed, is answered 408 (as nginx's
    client_body_timeout). A body the server finds malformed half-way (a bad chunk size)
    is answered 400 at once. Either way the origin's request is abandoned and its
    connection closed.
    """

    def __init__(
        self,
        origin_url: str,
        *,
        trusted_proxies: TrustedProxies | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_header_bytes: int = 32 * 1024,
        max_header_count: int = 100,
        max_body_bytes: int = 100 * 1024 * 1024,
        max_connections: int = 512,
        max_connections_per_origin: int | None = None,
        pool_timeout: float = 5.0,
        max_long_lived: int | None = None,
        preserve_host: bool = False,
        body_timeout: float | None = 60.0,
        public_url: str | None = None,
        upstream: OriginClient | None = None,
        observer: ProxyObserver | None = None,
    ) -> None:
        self.origin = Origin.parse(origin_url)
        self.trusted = trusted_proxies or TrustedProxies()
        self.connect_timeout = connect_timeout
        self.limits = RequestLimits(max_header_bytes=max_header_bytes,
                                    max_header_count=max_header_count,
                                    max_body_bytes=max_body_bytes)
        self.reader = RequestReader(origin_host=self.origin.host_header, limits=self.limits,
                                    preserve_host=preserve_host)
        # Where the origin's redirects to itself point: the configured public address, or
        # what a trusted proxy says, else a path (never the client's own Host).
        self.public_url = public_url
        self.upstream = upstream or Upstream(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_connections=max_connections,
            max_connections_per_origin=max_connections_per_origin, pool_timeout=pool_timeout)
        self.body_timeout = body_timeout
        self.max_long_lived = (max(1, max_connections // 2) if max_long_lived is None
                               else max_long_lived)
        self.long_lived = 0   # long-lived responses under way
        self.observer: ProxyObserver = observer or NoProxyObserver()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def probe(self) -> ProbeResult:
        """Whether the origin answers at all (for readiness checks)."""
        return await probe(self.upstream, self.origin.url_for(b"/", b""),
                           self.origin.host_header)

    def read_request(self, scope: Scope) -> OriginRequest:
        """The client's request as the origin should get it; RequestRejected when it
        breaks the limits."""
        if scope.get("method") in _REFUSED_METHODS:
            # TRACE echoes the request (credentials included) back; CONNECT would tunnel.
            raise RequestRejected(f"{scope['method']} is not allowed here", status=405)
        if not is_origin_form(scope.get("raw_path") or scope.get("path", "").encode()):
            # `OPTIONS *` (or any `*`, or a bare authority) names no page of the origin's:
            # refused as nginx refuses it, never turned into `/*`.
            raise RequestRejected("the request target must be a path", status=400)
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > self.limits.max_header_bytes:
            raise RequestRejected(f"request URL too long ({target} bytes)", status=414)
        server = scope.get("server")
        server_host = f"{server[0]}:{server[1]}" if server else self.origin.host_header
        scheme: str = scope.get("scheme") or "http"
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return self.reader.read(scope["headers"], client_address(scope, self.trusted),
                                scheme=scheme, server_host=server_host,
                                host_required=scope.get("http_version") == "1.1")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        try:
            request = self.read_request(scope)
        except RequestRejected as exc:
            logger.info("rejected %s %s: %s", method, scope["path"], exc)
            await send_error_page(_closing(send) if exc.status in _CLOSING else send,
                                  exc.status, str(exc), scope["headers"],
                                  head=method == "HEAD")
            return
        fwd = request.forwarding
        url = self.origin.url_for(scope.get("raw_path") or scope["path"].encode(),
                                  scope.get("query_string", b""))
        body = (_RequestBody(receive, self.limits.max_body_bytes, self.body_timeout)
                if request.has_body else None)
        started = time.perf_counter()
        try:
            response = await self.upstream.send(
                method, url, request.headers, body.stream() if body is not None else b"")
        except (RequestRejected, UpstreamError) as exc:
            # The HTTP client may wrap what the body stream raised: ask the stream itself.
            rejected = ((body.rejected if body is not None else None)
                        or (exc if isinstance(exc, RequestRejected) else None))
            # What is left of the body is never read: the connection ends with the answer.
            closing = _closing(send)
            if rejected is not None:
                logger.info("rejected %s %s: %s", method, scope["path"], rejected)
                await send_error_page(closing, rejected.status, str(rejected),
                                      scope["headers"])
            elif body is not None and body.client_gone:
                # The server ends a body it cannot frame (a bad chunk size, a bare LF) as if
                # the client had left: 400, as nginx answers; to a client really gone, the
                # answer goes nowhere.
                logger.info("request body of %s %s broke off (malformed, or the client "
                            "went away)", method, scope["path"])
                await send_error_page(closing, 400, "the request body was malformed or cut "
                                      "short", scope["headers"])
            else:
                await self._origin_failed(exc, scope, send)   # type: ignore[arg-type]
            return
        self.observer.origin_responded(time.perf_counter() - started)
        long_lived = _is_long_lived(response.headers)
        if long_lived:
            if self.long_lived >= self.max_long_lived:
                await response.aclose()
                await self._busy(UpstreamBusy(f"{self.long_lived} long-lived responses "
                                              "under way (the cap)"), "long_lived", scope, send)
                return
            self.long_lived += 1
        try:
            await send({
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers_for_client(
                    response.headers,
                    origin_base=self.origin.base_url,
                    public_base=self.public_url or fwd.public_base),
            })
            ended: bool | None = False
            if method != "HEAD":
                watch = body is None or body.finished   # receive() is free for disconnects
                ended = await _relay_body(response, receive, send, watch=watch,
                                          at_once=long_lived)
            if ended is None:
                logger.info("client went away during %s %s; origin connection closed",
                            method, scope["path"])
            elif not ended:
                await send({"type": "http.response.body", "body": b""})
        except UpstreamError as exc:
            # Headers are gone: the only honest signal left is an incomplete response, which
            # the server turns into a closed connection (never a body that looks complete).
            self.observer.origin_failed("timeout" if isinstance(exc, UpstreamTimeout) else "broken")
            logger.warning("origin failed mid-response for %s %s: %s; closing the client "
                           "connection", method, scope["path"], exc)
        finally:
            if long_lived:
                self.long_lived -= 1
            await response.aclose()

    async def _origin_failed(self, exc: UpstreamError, scope: Scope, send: Send) -> None:
        if isinstance(exc, UpstreamBusy):
            await self._busy(exc, "pool", scope, send)
            return
        timed_out = isinstance(exc, UpstreamTimeout)
        kind = ("timeout" if timed_out else
                "invalid" if isinstance(exc, UpstreamInvalid) else "unreachable")
        self.observer.origin_failed(kind)
        status = 504 if timed_out else 502
        logger.warning("origin error for %s %s -> %d: %s", scope["method"], scope["path"],
                       status, exc)
        message = _FAILURE_MESSAGES[kind]
        await send_error_page(send, status, message, scope["headers"],
                              head=scope["method"] == "HEAD")

    async def _busy(self, exc: UpstreamBusy, reason: str, scope: Scope, send: Send) -> None:
        self.observer.origin_busy(reason)
        logger.warning("origin busy for %s %s -> 503: %s", scope["method"], scope["path"], exc)
        await send_error_page(
            _with_headers(send, [(b"retry-after", _RETRY_AFTER)]), 503,
            "The site is very busy right now. Please try again in a moment.",
            scope["headers"], head=scope["method"] == "HEAD")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        url = self.origin.url_for(scope.get("raw_path") or scope["path"].encode(),
                                  scope.get("query_string", b""), websocket=True)
        try:
            request = self.read_request(scope)
            upstream = await open_upstream(url, request.headers, scope.get("subprotocols", []),
                                           connect_timeout=self.connect_timeout)
        except (UpstreamError, RequestRejected) as exc:
            await self._refuse_websocket(exc, scope, send)
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await relay(upstream, receive, send)

    async def _refuse_websocket(self, exc: Exception, scope: Scope, send: Send) -> None:
        if isinstance(exc, RequestRejected):
            status = exc.status
        else:
            status = 504 if isinstance(exc, UpstreamTimeout) else 502
            self.observer.origin_failed("timeout" if status == 504 else "unreachable")
        logger.warning("WebSocket %s refused with %d: %s", scope["path"], status, exc)
        if "websocket.http.response" in scope.get("extensions", {}):
            await send_error_page(_as_websocket_response(send), status, str(exc),
                                  scope["headers"])
        else:
            await send({"type": "websocket.close", "code": 1011})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Used when OriginProxy is served on its own; create_app has its own lifespan.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _RequestBody:
    """The client's request body, streamed to the origin, within the size limit and
    `timeout` (None: none)."""

    def __init__(self, receive: Receive, limit: int, timeout: float | None = None) -> None:
        self._receive = receive
        self._limit = limit
        self._timeout = timeout
        self.rejected: RequestRejected | None = None
        self.client_gone = False
        self.finished = False   # every message of the body received

    async def stream(self) -> AsyncIterator[bytes]:
        received = 0
        timeout = self._timeout
        loop = asyncio.get_running_loop()
        waited = 0.0   # seconds spent waiting for the client (not for a slow origin)
        while True:
            if timeout is None:
                message: Message = await self._receive()
            else:
                # The next bytes within `timeout`, and the whole body at BODY_MIN_RATE on
                # average once `timeout` has passed.
                budget = min(timeout, timeout + received / BODY_MIN_RATE - waited)
                asked = loop.time()
                try:
                    async with asyncio.timeout(max(0.0, budget)):
                        message = await self._receive()
                except TimeoutError:
                    self.rejected = RequestRejected(
                        f"request body too slow ({received} bytes in "
                        f"{waited + loop.time() - asked:.1f} s)", status=408)
                    raise self.rejected from None
                waited += loop.time() - asked
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise UpstreamError("client disconnected while sending the request body")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self._limit:
                self.rejected = RequestRejected(
                    f"request body too large (over {self._limit} bytes)", status=413)
                raise self.rejected
            if not message.get("more_body", False):
                self.finished = True
                if chunk:
                    yield chunk
                return
            if chunk:
                yield chunk


def _is_long_lived(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            return value.lower().lstrip().startswith(_LONG_LIVED_TYPES)
    return False


async def _relay_body(response: UpstreamResponse, receive: Receive, send: Send, *,
                      watch: bool, at_once: bool) -> bool | None:
    """Send the body on as it comes: True when its last chunk said so, False when it ended
    unannounced, None when the client went away (the read stops, the origin connection
    is then closed by `aclose`).

    Watching for the client's leaving costs two tasks, so only bodies that last are
    watched: long-lived ones (`at_once`) from the start, others once they have been
    streaming for _WATCH_AFTER seconds (most pages are long done by then)."""
    chunks = response.body()
    ended = False
    if not (watch and at_once):
        deadline = time.monotonic() + _WATCH_AFTER if watch else float("inf")
        async for chunk in chunks:
            ended = response.ended   # the last chunk says so itself: no empty message to end
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            if not ended and time.monotonic() > deadline:
                break
        else:   # (run to its end: an iterator left half-way costs a finalizer task)
            return ended
    relaying = asyncio.ensure_future(_send_rest(chunks, response, send))
    leaving = asyncio.ensure_future(_client_leaves(receive))
    try:
        await asyncio.wait((relaying, leaving), return_when=asyncio.FIRST_COMPLETED)
        if leaving.done() and leaving.result() and not relaying.done():
            relaying.cancel()
            await asyncio.gather(relaying, return_exceptions=True)
            return None
        return await relaying
    finally:
        for task in (relaying, leaving):
            if not task.done():
                task.cancel()


async def _send_rest(chunks: AsyncIterator[bytes], response: UpstreamResponse,
                     send: Send) -> bool:
    ended = False
    async for chunk in chunks:
        ended = response.ended
        await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
    return ended


async def _client_leaves(receive: Receive) -> bool:
    """True once the client has gone; False if this server cannot say (it answers
    receive() with something else, again and again)."""
    for _ in range(8):
        message = await receive()
        if message["type"] == "http.disconnect":
            return True
    return False


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)
    return wrapped


def _closing(send: Send) -> Send:
    """`send`, ending the connection with the answer (granian honours the header)."""
    return _with_headers(send, [(b"connection", b"close")])


def _as_websocket_response(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})
    return wrapped
