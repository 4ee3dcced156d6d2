"""HttpxUpstream: the origin client for any httpx transport (the one module importing httpx).

The server runs `client.Upstream` (its own HTTP/1.1 pool); this one puts any httpx
transport behind the same two-method seam (`send`, `aclose`): httpx.MockTransport in unit
tests, httpx.AsyncHTTPTransport as the reference the conformance suite holds ours to.
No redirects, auth or cookies; the same checks of every response head (status, size, framing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from ..errors import UpstreamBusy, UpstreamError, UpstreamInvalid, UpstreamTimeout
from .client import RawHeaders, UpstreamResponse, describe_error
from .framing import parsed_head_error


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
                 transport: httpx.AsyncBaseTransport, pool_timeout: float = 5.0) -> None:
        self._transport = transport
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout,
                                      write=read_timeout, pool=pool_timeout).as_dict()

    async def send(self, method: str, url: str, headers: RawHeaders,
                   body: AsyncIterator[bytes] | bytes) -> UpstreamResponse:
        request = httpx.Request(method, url, headers=headers, content=body,
                                extensions={"timeout": self._timeout})
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.PoolTimeout as exc:
            raise UpstreamBusy(f"no connection to the origin became free in time "
                               f"({describe_error(exc)})") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"origin gave no answer in time ({describe_error(exc)})") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"origin unreachable: {describe_error(exc)}") from exc
        raw = [(name.lower(), value) for name, value in response.headers.raw]
        problem = parsed_head_error(response.status_code, raw)
        if problem is not None:
            await response.aclose()
            raise UpstreamInvalid(problem)
        return _HttpxResponse(response.status_code, raw, response)

    async def aclose(self) -> None:
        await self._transport.aclose()
