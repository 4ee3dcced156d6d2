"""OriginProxy: an ASGI app that forwards every request to one configured origin."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.types import Message, Receive, Scope, Send

from ..classify.client_ip import TrustedProxies
from ..errors import RequestRejected, UpstreamError, UpstreamTimeout
from .headers import OriginRequest, RequestLimits, read_request, response_headers_for_client
from .pages import send_error_page
from .target import Origin
from ..http.client import OriginClient, ProbeResult, Upstream
from .websocket import open_upstream, relay

logger = logging.getLogger(__name__)


class ProxyObserver(Protocol):
    """What the proxy reports about the origin (metrics implement it)."""

    def origin_responded(self, seconds: float) -> None: ...
    def origin_failed(self, kind: str) -> None: ...


class _Silent:
    def origin_responded(self, seconds: float) -> None:
        pass

    def origin_failed(self, kind: str) -> None:
        pass


class OriginProxy:
    """Forward HTTP and WebSocket requests to `origin_url`, streaming both ways.

    The scheme, host and port always come from `origin_url`: the Host header, an
    absolute-form request target or `..` segments cannot send a request elsewhere.
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
        upstream: OriginClient | None = None,
        observer: ProxyObserver | None = None,
    ) -> None:
        self.origin = Origin.parse(origin_url)
        self.trusted = trusted_proxies or TrustedProxies()
        self.connect_timeout = connect_timeout
        self.limits = RequestLimits(max_header_bytes=max_header_bytes,
                                    max_header_count=max_header_count,
                                    max_body_bytes=max_body_bytes)
        self.upstream = upstream or Upstream(connect_timeout=connect_timeout,
                                             read_timeout=read_timeout)
        self.observer: ProxyObserver = observer or _Silent()

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
        return await self.upstream.probe(self.origin.url_for(b"/", b""), self.origin.host_header)

    def read_request(self, scope: Scope) -> OriginRequest:
        """The client's request as the origin should get it; RequestRejected when it
        breaks the limits."""
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > self.limits.max_header_bytes:
            raise RequestRejected(f"request URL too long ({target} bytes)", status=414)
        client = scope.get("client")
        server = scope.get("server")
        server_host = f"{server[0]}:{server[1]}" if server else self.origin.host_header
        scheme: str = scope.get("scheme") or "http"
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return read_request(scope["headers"], peer=client[0] if client else None,
                            scheme=scheme, server_host=server_host, trusted=self.trusted,
                            origin_host=self.origin.host_header, limits=self.limits)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        try:
            request = self.read_request(scope)
        except RequestRejected as exc:
            logger.info("rejected %s %s: %s", method, scope["path"], exc)
            await send_error_page(send, exc.status, str(exc), scope["headers"],
                                  head=method == "HEAD")
            return
        fwd = request.forwarding
        url = self.origin.url_for(scope.get("raw_path") or scope["path"].encode(),
                                  scope.get("query_string", b""))
        body = _RequestBody(receive, self.limits.max_body_bytes) if request.has_body else None
        started = time.perf_counter()
        try:
            response = await self.upstream.send(
                method, url, request.headers, body.stream() if body is not None else b"")
        except (RequestRejected, UpstreamError) as exc:
            # The HTTP client may wrap what the body stream raised: ask the stream itself.
            rejected = ((body.rejected if body is not None else None)
                        or (exc if isinstance(exc, RequestRejected) else None))
            if rejected is not None:
                await send_error_page(send, rejected.status, str(rejected), scope["headers"])
            elif body is not None and body.client_gone:
                logger.info("client went away while sending %s %s", method, scope["path"])
            else:
                await self._origin_failed(exc, scope, send)   # type: ignore[arg-type]
            return
        self.observer.origin_responded(time.perf_counter() - started)
        try:
            await send({
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers_for_client(
                    response.headers,
                    origin_base=self.origin.base_url, public_base=fwd.public_base),
            })
            ended = False
            if method != "HEAD":
                async for chunk in response.body():
                    # The last chunk says so itself: no empty message to end the body.
                    ended = response.ended
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": not ended})
            if not ended:
                await send({"type": "http.response.body", "body": b""})
        except UpstreamError as exc:
            # Headers are gone: the only honest signal left is an incomplete response, which
            # the server turns into a closed connection (never a body that looks complete).
            self.observer.origin_failed("timeout" if isinstance(exc, UpstreamTimeout) else "broken")
            logger.warning("origin failed mid-response for %s %s: %s; closing the client "
                           "connection", method, scope["path"], exc)
        finally:
            await response.aclose()

    async def _origin_failed(self, exc: UpstreamError, scope: Scope, send: Send) -> None:
        timed_out = isinstance(exc, UpstreamTimeout)
        self.observer.origin_failed("timeout" if timed_out else "unreachable")
        status = 504 if timed_out else 502
        logger.warning("origin error for %s %s -> %d: %s", scope["method"], scope["path"],
                       status, exc)
        message = ("The site's server did not answer in time. Please try again in a moment."
                   if timed_out else
                   "The site's server could not be reached. Please try again in a moment.")
        await send_error_page(send, status, message, scope["headers"],
                              head=scope["method"] == "HEAD")

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
    """The client's request body, streamed to the origin, within the size limit."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.rejected: RequestRejected | None = None
        self.client_gone = False

    async def stream(self) -> AsyncIterator[bytes]:
        received = 0
        while True:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise UpstreamError("client disconnected while sending the request body")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self._limit:
                self.rejected = RequestRejected(
                    f"request body too large (over {self._limit} bytes)", status=413)
                raise self.rejected
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def _as_websocket_response(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})
    return wrapped
