"""Upstream: the one module that speaks httpx; it owns the client and maps its errors to ours."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from ..errors import UpstreamError, UpstreamTimeout

RawHeaders = list[tuple[bytes, bytes]]


@dataclass
class UpstreamResponse:
    """An origin response whose body has not been read yet."""

    status: int
    headers: RawHeaders
    _response: httpx.Response

    async def body(self) -> AsyncIterator[bytes]:
        """The body exactly as the origin sent it (still compressed, if it was)."""
        try:
            async for chunk in self._response.aiter_raw():
                if chunk:
                    yield chunk
        except httpx.HTTPError as exc:
            if _timed_out(exc):
                raise UpstreamTimeout(f"origin stopped sending mid-body: {_describe(exc)}") \
                    from exc
            raise UpstreamError(f"origin broke off its response: {_describe(exc)}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


@dataclass(frozen=True)
class ProbeResult:
    """Whether the origin answered a health probe, how fast, and what it said."""

    reachable: bool
    seconds: float
    detail: str


def _aiohttp_session(limits: httpx.Limits) -> Callable[[], aiohttp.ClientSession]:
    def create() -> aiohttp.ClientSession:
        # Made on first use, inside the event loop. The origin must see the client's own
        # headers: aiohttp adds none of its defaults, and bodies are passed as they come.
        connector = aiohttp.TCPConnector(limit=limits.max_connections or 0,
                                         keepalive_timeout=limits.keepalive_expiry or 30,
                                         ttl_dns_cache=60)
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
    return create


def _timed_out(exc: httpx.HTTPError) -> bool:
    """Whether the origin was too slow (504), rather than unreachable or broken (502).

    Judged by the underlying aiohttp error when there is one: the transport maps a refused
    connection to httpx.ConnectTimeout."""
    cause = exc.__cause__
    if isinstance(cause, (aiohttp.ClientError, TimeoutError)):
        return isinstance(cause, TimeoutError)   # aiohttp's timeouts are TimeoutErrors
    return isinstance(exc, httpx.TimeoutException)


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, (aiohttp.ClientError, TimeoutError)):
        exc = cause
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Upstream:
    """Sends requests to one origin over a pooled connection set."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 512,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout,
                                write=read_timeout, pool=connect_timeout)
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections, keepalive_expiry=30)
        if transport is None:
            # httpx's own connection pool costs several times more per request than
            # aiohttp's (bench/README.md); keep httpx's API on aiohttp's transport.
            transport = AiohttpTransport(limits=limits, client=_aiohttp_session(limits))
        # Requests go straight to the transport: a proxy needs none of httpx.AsyncClient's
        # redirects, auth or cookie handling (a cookie jar would even carry one visitor's
        # cookies into another's request), and skipping it saves per-request work.
        self._transport = transport
        self._timeout = timeout.as_dict()

    async def send(
        self,
        method: str,
        url: str,
        headers: RawHeaders,
        body: AsyncIterator[bytes] | bytes,
    ) -> UpstreamResponse:
        """Send one request; the body streams. Raises UpstreamError / UpstreamTimeout."""
        # Built directly (not via client.build_request) so the client adds no headers of its
        # own: the origin sees the client's Accept-Encoding and User-Agent, not httpx's.
        request = httpx.Request(method, url, headers=headers, content=body,
                                extensions={"timeout": self._timeout})
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            if _timed_out(exc):
                raise UpstreamTimeout(f"origin gave no answer in time ({_describe(exc)})") \
                    from exc
            raise UpstreamError(f"origin unreachable: {_describe(exc)}") from exc
        return UpstreamResponse(response.status_code, list(response.headers.raw), response)

    async def probe(self, url: str, host: str) -> ProbeResult:
        """HEAD `url`: any HTTP answer, even an error status, means the origin is reachable."""
        started = time.perf_counter()
        request = httpx.Request("HEAD", url, headers=[(b"host", host.encode("latin-1"))],
                                extensions={"timeout": self._timeout})
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            return ProbeResult(False, time.perf_counter() - started, _describe(exc))
        await response.aclose()
        return ProbeResult(True, time.perf_counter() - started, f"HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._transport.aclose()
