"""OriginProxy: an ASGI app that forwards every request to one configured origin."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Final, Protocol

from starlette.types import Receive, Scope, Send

from ..errors import RequestRejected, UpstreamBusy, UpstreamError, UpstreamTimeout
from ..http.client import OriginClient, ProbeResult, Upstream, probe
from .client_ip import TrustedProxies, client_address
from .headers import (
    OriginRequest,
    RequestLimits,
    RequestReader,
    response_headers_for_client,
)
from .refusals import busy, refuse_request, refuse_websocket, request_failed, requested
from .relay import is_long_lived, relay_body
from .request_body import RequestBody, Uploads, to_send
from .target import Origin, is_origin_form
from .websocket import open_upstream, relay

logger = logging.getLogger(__name__)


class ProxyObserver(Protocol):
    """What the proxy reports about the origin (metrics implement it)."""

    def origin_responded(self, seconds: float) -> None: ...
    def origin_failed(self, kind: str) -> None: ...
    def origin_busy(self, reason: str) -> None:
        """A 503 of ours: "pool" (no origin connection free within the pool timeout),
        "long_lived" (the cap of long-lived responses reached) or "uploading" (the cap of
        request bodies being sent)."""


_REFUSED_METHODS: Final = frozenset({"TRACE", "CONNECT", "TRACK"})
_COMMON_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# What nginx takes for a method: capitals, "_" and "-". Methods are case-sensitive, but a
# site that upper-cases them would run `trace` as TRACE, and an origin that takes `head`
# for HEAD answers without the body this proxy would then wait for.
_METHOD: Final = re.compile(r"[A-Z_-]+")


class NoProxyObserver:
    """Reports nowhere: for a proxy used without metrics."""

    def origin_responded(self, seconds: float) -> None:
        pass

    def origin_failed(self, kind: str) -> None:
        pass

    def origin_busy(self, reason: str) -> None:
        pass


class OriginProxy:
    """Forward HTTP and WebSocket requests to `origin_url`, streaming both ways.

    The scheme, host and port always come from `origin_url`: the Host header, an
    absolute-form request target or `..` segments cannot send a request elsewhere.

    Connections to the origin are capped (`max_connections`, `max_connections_per_origin`;
    a request waits at most `pool_timeout` for one, then gets 503 with Retry-After), and so
    are long-lived responses (server-sent events, multipart/x-mixed-replace) at once
    (`max_long_lived`, default half the connections), so that streams can never take every
    connection; requests whose bodies are being sent too (a quarter: Uploads). When the
    client goes away mid-body, the origin read stops and that connection is closed.

    A request body must keep coming (RequestBody: else 408, as nginx's client_body_timeout),
    one the server finds malformed half-way gets 400 at once, and an answer must be read
    (`send_timeout`, as nginx's); else the origin's exchange and its connection are closed.
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
        body_timeout: float | None = 60.0, send_timeout: float | None = 30.0,
        public_url: str | None = None,
        edge_headers: Iterable[str] = (),
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
                                    preserve_host=preserve_host, public_url=public_url,
                                    edge_headers=edge_headers)
        # Where the origin's redirects to itself point (else a trusted proxy's host, a path)
        self.public_url = public_url
        self.upstream = upstream or Upstream(
            connect_timeout=connect_timeout, read_timeout=read_timeout, pool_timeout=pool_timeout,
            max_connections=max_connections, max_connections_per_origin=max_connections_per_origin)
        self.body_timeout, self.send_timeout = body_timeout, send_timeout
        self.max_long_lived = (max(1, max_connections // 2) if max_long_lived is None
                               else max_long_lived)
        self.long_lived = 0   # long-lived responses under way
        self.uploads = Uploads(max(1, max_connections // 4))
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
        method = scope.get("method")
        if method in _REFUSED_METHODS:
            # TRACE echoes the request (credentials included) back; CONNECT would tunnel.
            raise RequestRejected(f"{method} is not allowed here", status=405)
        if method is not None and method not in _COMMON_METHODS \
                and not _METHOD.fullmatch(method):
            raise RequestRejected(f"invalid method {method[:40]!r}", status=400)
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
            await refuse_request(exc, scope, send)
            return
        fwd = request.forwarding
        url = self.origin.url_for(scope.get("raw_path") or scope["path"].encode(),
                                  scope.get("query_string", b""))
        body = (RequestBody(receive, self.limits.max_body_bytes, self.body_timeout)
                if request.has_body else None)
        try:
            payload = await to_send(body, self.uploads, request.length)
        except (RequestRejected, UpstreamError) as exc:
            return await request_failed(exc, body, scope, send, self.observer)
        if payload is None:
            return await busy(UpstreamBusy(f"{self.uploads.sending} request bodies being "
                                           "sent (the cap)"), "uploading", scope, send,
                              self.observer, close=True)
        release = body.done if body is not None else None
        started = time.perf_counter()
        try:
            response = await self.upstream.send(method, url, request.headers, payload)
        except BaseException as exc:
            if release is not None:
                release()   # (given back by the body's end, unless it was never read)
            if isinstance(exc, (RequestRejected, UpstreamError)):
                return await request_failed(exc, body, scope, send, self.observer)
            raise
        self.observer.origin_responded(time.perf_counter() - started)
        long_lived = is_long_lived(response.headers)
        if long_lived:
            if self.long_lived >= self.max_long_lived:
                if release is not None:
                    release()
                await response.aclose()
                await busy(UpstreamBusy(f"{self.long_lived} long-lived responses under way "
                                        "(the cap)"), "long_lived", scope, send, self.observer)
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
                ended = await relay_body(response, receive, send, watch=watch,
                                         at_once=long_lived, stall=self.send_timeout)
            if ended is None:
                logger.info("client went away (or read nothing for send_timeout) during %s; "
                            "origin connection closed", requested(scope))
            elif not ended:
                await send({"type": "http.response.body", "body": b""})
        except UpstreamError as exc:
            # Headers are gone: the only honest signal left is an incomplete response, which
            # the server turns into a closed connection (never a body that looks complete).
            self.observer.origin_failed("timeout" if isinstance(exc, UpstreamTimeout) else "broken")
            logger.warning("origin failed mid-response for %s: %s; closing the client "
                           "connection", requested(scope), exc)
        finally:
            if long_lived:
                self.long_lived -= 1
            if release is not None:
                release()   # (the body ended with the exchange at the latest)
            await response.aclose()

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
            await refuse_websocket(exc, scope, send, self.observer)
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await relay(upstream, receive, send)

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
