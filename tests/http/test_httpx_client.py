"""Upstream and OriginProxy without sockets: the origin is an httpx.MockTransport."""

from __future__ import annotations

import httpx
import pytest

from edge_personalizer.errors import UpstreamError, UpstreamTimeout
from edge_personalizer.http.client import probe
from edge_personalizer.http.httpx_client import HttpxUpstream
from edge_personalizer.proxy import OriginProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def upstream_for(handler: httpx.MockTransport) -> HttpxUpstream:
    return HttpxUpstream(connect_timeout=1, read_timeout=1, transport=handler)


async def test_client_headers_reach_origin_without_httpx_defaults() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    upstream = upstream_for(httpx.MockTransport(handler))
    response = await upstream.send("GET", "http://o/x", [(b"x-a", b"1")], b"")
    await response.aclose()
    assert response.status == 200
    assert "accept-encoding" not in seen[0].headers
    assert "user-agent" not in seen[0].headers
    assert seen[0].headers["x-a"] == "1"
    await upstream.aclose()


@pytest.mark.parametrize(("error", "expected"), [
    (httpx.ConnectError("refused"), UpstreamError),
    (httpx.ConnectTimeout("slow"), UpstreamTimeout),
    (httpx.ReadTimeout("slow"), UpstreamTimeout),
    (httpx.RemoteProtocolError("bad"), UpstreamError),
])
async def test_httpx_errors_become_ours(error: Exception, expected: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    upstream = upstream_for(httpx.MockTransport(handler))
    with pytest.raises(expected):
        await upstream.send("GET", "http://o/", [], b"")


async def test_probe_reports_reachability() -> None:
    up = upstream_for(httpx.MockTransport(lambda r: httpx.Response(500)))
    assert (await probe(up, "http://o/", "o")).reachable is True

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    down = await probe(upstream_for(httpx.MockTransport(refuse)), "http://o/", "o")
    assert down.reachable is False and "ConnectError" in down.detail


async def test_origin_proxy_as_asgi_app() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = f"{request.method} {request.url.path}".encode()
        return httpx.Response(201, headers={"location": "http://o:9/new", "x-a": "b"},
                              stream=httpx.ByteStream(body))

    proxy = OriginProxy("http://o:9", upstream=upstream_for(httpx.MockTransport(handler)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy),
                                 base_url="http://public.example") as client:
        response = await client.post("/things/../items", content=b"data")
    assert response.status_code == 201
    assert response.text == "POST /items"
    assert response.headers["location"] == "/new"   # the client's Host is never the public address
    assert response.headers["x-a"] == "b"


async def test_origin_timeout_before_headers_is_504() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    proxy = OriginProxy("http://o:9", upstream=upstream_for(httpx.MockTransport(handler)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy),
                                 base_url="http://p") as client:
        response = await client.get("/", headers={"accept": "text/plain"})
    assert response.status_code == 504
    assert response.text.startswith("504 Gateway Timeout")
