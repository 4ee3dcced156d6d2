"""Upstream: the one module that speaks to origins over HTTP; errors become ours.

Two clients behind one shape: `Upstream` on aiohttp's connection pool (what the server
runs: the peer benchmark measured httpx's own pool at several times aiohttp's cost per
request), and `HttpxUpstream` for any httpx transport (tests use httpx.MockTransport).
Neither keeps cookies: one visitor's cookies must never reach another visitor's request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
import yarl
from multidict import CIMultiDict

from ..errors import UpstreamError, UpstreamTimeout

RawHeaders = list[tuple[bytes, bytes]]


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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# aiohttp


@dataclass
class _AiohttpResponse:
    status: int
    headers: RawHeaders
    _response: aiohttp.ClientResponse

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                if chunk:
                    yield chunk
        except TimeoutError as exc:   # aiohttp's timeouts are TimeoutErrors
            raise UpstreamTimeout(f"origin stopped sending mid-body: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"origin broke off its response: {_describe(exc)}") from exc

    async def aclose(self) -> None:
        self._response.release()


class Upstream:
    """Sends requests to the origin over aiohttp's pooled connections."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 max_connections: int = 512) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                              connect=connect_timeout, sock_read=read_timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop. The origin sees the client's own
        # headers (aiohttp adds none of its defaults) and bodies as they come.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30,
                                             ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
        return self._session

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse:
        """Send one request; the body streams. Raises UpstreamError / UpstreamTimeout."""
        try:
            response = await self._client().request(
                method, yarl.URL(url, encoded=True),   # the path goes as the client wrote it
                headers=CIMultiDict((k.decode("latin-1"), v.decode("latin-1"))
                                    for k, v in headers),
                data=body or None, allow_redirects=False, compress=None)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"origin gave no answer in time ({_describe(exc)})") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"origin unreachable: {_describe(exc)}") from exc
        return _AiohttpResponse(response.status, list(response.raw_headers), response)

    async def probe(self, url: str, host: str) -> ProbeResult:
        return await probe(self, url, host)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


# httpx


@dataclass
class _HttpxResponse:
    status: int
    headers: RawHeaders
    _response: httpx.Response

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                if chunk:
                    yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"origin stopped sending mid-body: {_describe(exc)}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"origin broke off its response: {_describe(exc)}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """Sends requests through any httpx transport (no redirects, auth or cookies)."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout,
                                      write=read_timeout, pool=connect_timeout).as_dict()

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse:
        request = httpx.Request(method, url, headers=headers, content=body,
                                extensions={"timeout": self._timeout})
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"origin gave no answer in time ({_describe(exc)})") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"origin unreachable: {_describe(exc)}") from exc
        return _HttpxResponse(response.status_code, list(response.headers.raw), response)

    async def probe(self, url: str, host: str) -> ProbeResult:
        return await probe(self, url, host)

    async def aclose(self) -> None:
        await self._transport.aclose()
