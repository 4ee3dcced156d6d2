"""The aiohttp client against a real origin process: errors map to ours."""

from __future__ import annotations

import pytest

from edge_personalizer.errors import UpstreamError, UpstreamTimeout
from edge_personalizer.proxy.upstream import Upstream

from ..servers import Server, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_sends_and_streams(origin: Server) -> None:
    upstream = Upstream(connect_timeout=2, read_timeout=2)
    response = await upstream.send("GET", f"{origin.url}/download?size=100000",
                                   [(b"host", b"origin")], b"")
    received = b"".join([chunk async for chunk in response.body()])
    await response.aclose()
    assert response.status == 200 and len(received) == 100000
    probe = await upstream.probe(f"{origin.url}/", "origin")
    assert probe.reachable
    await upstream.aclose()


async def test_refused_is_an_error_and_slow_is_a_timeout(origin: Server) -> None:
    upstream = Upstream(connect_timeout=1, read_timeout=0.5)
    with pytest.raises(UpstreamError) as refused:
        await upstream.send("GET", f"http://127.0.0.1:{free_port()}/", [], b"")
    assert not isinstance(refused.value, UpstreamTimeout)
    with pytest.raises(UpstreamTimeout):
        await upstream.send("GET", f"{origin.url}/slow-headers?delay=2", [], b"")
    assert not (await upstream.probe(f"http://127.0.0.1:{free_port()}/", "x")).reachable
    await upstream.aclose()
