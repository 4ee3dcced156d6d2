"""HttpxUpstream: the origin client for any httpx transport (the one module importing httpx).

The server runs `upstream.Upstream` (its own HTTP/1.1 pool); this one lets tests and
embedders use any httpx transport, such as httpx.MockTransport. No redirects, auth or cookies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from ..errors import UpstreamError, UpstreamTimeout
from .client import ProbeResult, RawHeaders, UpstreamResponse, describe_error, probe


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
            raise UpstreamTimeout(
                f"origin stopped sending mid-body: {describe_error(exc)}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"origin broke off its response: {describe_error(exc)}") from exc

    @property
    def ended(self) -> bool:
        return False   # httpx does not tell: an empty last chunk ends the body

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
            raise UpstreamTimeout(f"origin gave no answer in time ({describe_error(exc)})") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"origin unreachable: {describe_error(exc)}") from exc
        return _HttpxResponse(response.status_code, list(response.headers.raw), response)

    async def probe(self, url: str, host: str) -> ProbeResult:
        return await probe(self, url, host)

    async def aclose(self) -> None:
        await self._transport.aclose()
