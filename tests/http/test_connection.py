"""One origin connection: what ends a response, what poisons the connection, which heads
are refused. Driven through the client against raw-socket origins (tests/http/raw_origin.py);
the wider table of misbehaving origins is tests/http/test_conformance.py."""

from __future__ import annotations

import asyncio

import pytest

from edge_personalizer.errors import UpstreamError
from edge_personalizer.http.client import Upstream

from .raw_origin import NEXT, RawOrigin, first_then_next, request_head

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_more_data_after_a_length_body_is_answered_then_the_connection_dropped() -> None:
    # Issue 20's bytes, in one write: the second "response" never reaches anyone.
    first = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
             b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED")
    origin = RawOrigin(first_then_next(first))
    async with origin as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        response = await upstream.send("GET", url + "/", [], b"")
        assert response.headers == [(b"content-length", b"5")]   # names lower-cased as read
        assert b"".join([chunk async for chunk in response.body()]) == b"hello"
        await response.aclose()
        assert upstream.pool.open_connections == 0   # poisoned: closed, not pooled
        response = await upstream.send("GET", url + "/", [], b"")
        assert b"".join([chunk async for chunk in response.body()]) == b"next"
        await response.aclose()
        await upstream.aclose()
    assert origin.connections == 2


async def test_more_data_in_a_later_read_also_poisons() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: smuggled=1\r\n\r\n")
        await writer.drain()
        await request_head(reader)   # never comes: the connection is not reused
        writer.write(NEXT)

    origin = RawOrigin(handler)
    async with origin as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        response = await upstream.send("GET", url + "/", [], b"")
        await asyncio.sleep(0.2)   # the extra bytes arrive while the answer is still held
        assert response.status == 204 and response.headers == []
        await response.aclose()
        assert upstream.pool.open_connections == 0
        await upstream.aclose()


async def test_trailer_fields_never_join_the_head() -> None:
    first = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
             b"0\r\nSet-Cookie: trailer=1\r\nX-Original-URL: /admin\r\n\r\n")
    async with RawOrigin(first_then_next(first)) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        response = await upstream.send("GET", url + "/", [], b"")
        assert b"".join([chunk async for chunk in response.body()]) == b"ok"
        assert response.headers == [(b"transfer-encoding", b"chunked")]
        await response.aclose()
        assert upstream.pool.open_connections == 1   # a clean end: pooled
        await upstream.aclose()


@pytest.mark.parametrize(("head", "problem"), [
    (b"Content-Length: 5\r\nTransfer-Encoding: chunked", "invalid HTTP|conflicting"),
    # Names are lower-cased as they are read: every check past the client compares them
    # as they are (an upper-case Transfer-Encoding is still refused here).
    (b"TRANSFER-ENCODING: gzip, chunked", "unsupported Transfer-Encoding"),
], ids=["conflicting lengths", "a coding named in capitals"])
async def test_a_head_whose_framing_cannot_be_trusted_is_an_error_not_a_response(
        head: bytes, problem: str) -> None:
    first = b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n0\r\n\r\nhello"
    async with RawOrigin(first_then_next(first)) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        with pytest.raises(UpstreamError, match=problem):
            await upstream.send("GET", url + "/", [], b"")
        assert upstream.pool.open_connections == 0
        await upstream.aclose()


@pytest.mark.parametrize("size", [100 * 1024, 140 * 1024], ids=["100 KiB", "140 KiB"])
@pytest.mark.parametrize("pieces", [1, 8], ids=["one write", "eight writes"])
async def test_a_head_s_size_is_judged_alike_however_it_arrives(size: int, pieces: int) -> None:
    # Split across reads, a head was counted twice (its bytes read, and its fields): one
    # of 100 KiB was refused as past the 128 KiB limit when it came in pieces.
    fields = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"v" * 1000) for n in range(size // 1016))
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + fields + b"\r\nok"
    step = -(-len(head) // pieces)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        for start in range(0, len(head), step):
            writer.write(head[start:start + step])
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()

    async with RawOrigin(handler) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        if size > 128 * 1024:
            with pytest.raises(UpstreamError, match="too many or too large headers"):
                await upstream.send("GET", url + "/", [], b"")
        else:
            response = await upstream.send("GET", url + "/", [], b"")
            assert b"".join([chunk async for chunk in response.body()]) == b"ok"
            await response.aclose()
        await upstream.aclose()
