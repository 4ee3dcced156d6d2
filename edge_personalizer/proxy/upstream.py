"""Upstream: the client that speaks to the origin (the one module importing aiohttp).

`Upstream` runs on aiohttp's connection pool: the peer benchmark measured httpx's own pool
at several times aiohttp's cost per request. Any httpx transport can stand in through
`httpx_upstream.HttpxUpstream` (the unit tests use httpx.MockTransport). No client keeps
cookies: one visitor's cookies must never reach another visitor's request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
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


def describe_error(exc: BaseException) -> str:
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
            raise UpstreamTimeout(
                f"origin stopped sending mid-body: {describe_error(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"origin broke off its response: {describe_error(exc)}") from exc

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
            raise UpstreamTimeout(f"origin gave no answer in time ({describe_error(exc)})") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"origin unreachable: {describe_error(exc)}") from exc
        return _AiohttpResponse(response.status, list(response.raw_headers), response)

    async def probe(self, url: str, host: str) -> ProbeResult:
        return await probe(self, url, host)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
