"""Flow control of an origin connection, through the client against raw-socket origins: a
response body nobody reads holds the origin back, a request body the origin does not read
holds the sender back (until the read timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge_personalizer.errors import UpstreamTimeout
from edge_personalizer.http.client import Upstream
from edge_personalizer.http.flow import HIGH_WATER, BodyBuffer

from .raw_origin import RawOrigin, request_head

pytestmark = pytest.mark.anyio

TOTAL = 64 * 1024 * 1024
PIECE = b"x" * 65536


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_body_nobody_reads_stops_the_origin_instead_of_filling_memory() -> None:
    total = TOTAL
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        piece = b"x" * 65536
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)

    async with RawOrigin(handler) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=5)
        response = await upstream.send("GET", url + "/", [], b"")
        await asyncio.sleep(0.5)
        held = sent
        await asyncio.sleep(0.3)
        assert sent == held < total   # the origin waits on TCP: reading has paused
        received = 0
        async for chunk in response.body():
            received += len(chunk)
        assert received == total == sent
        await response.aclose()
        await upstream.aclose()


def test_a_body_buffer_pauses_reading_past_its_high_water_and_resumes_when_taken() -> None:
    class Transport:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def pause_reading(self) -> None:
            self.calls.append("pause")

        def resume_reading(self) -> None:
            self.calls.append("resume")

    transport = Transport()
    buffer = BodyBuffer(transport)  # type: ignore[arg-type]
    assert buffer.take(True) is None
    buffer.add(b"a" * HIGH_WATER)
    assert transport.calls == []
    buffer.add(b"b")
    buffer.add(b"c")
    assert transport.calls == ["pause"]   # once, however much more arrives
    assert buffer.take(False) == b"a" * HIGH_WATER + b"bc"
    assert transport.calls == ["pause"] and buffer.chunks == []   # closed: nothing resumed
    buffer.add(b"d" * (HIGH_WATER + 1))
    assert buffer.take(True) == b"d" * (HIGH_WATER + 1)
    assert transport.calls == ["pause", "resume"]


class Sender:
    """A request body of TOTAL bytes; `sent` counts what the client has taken of it."""

    def __init__(self) -> None:
        self.sent = 0

    async def body(self) -> AsyncIterator[bytes]:
        while self.sent < TOTAL:
            self.sent += len(PIECE)
            yield PIECE


async def test_a_request_body_waits_while_the_origin_does_not_read_it() -> None:
    sender = Sender()
    held: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        await asyncio.sleep(0.5)
        held.append(sender.sent)
        await reader.readexactly(TOTAL)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with RawOrigin(handler) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=5)
        response = await upstream.send("POST", url + "/", [(b"content-length", b"%d" % TOTAL)],
                                       sender.body())
        assert response.status == 200
        assert b"".join([chunk async for chunk in response.body()]) == b"ok"
        await response.aclose()
        await upstream.aclose()
    assert held[0] < TOTAL == sender.sent   # it waited, then went on to the end


async def test_a_request_body_the_origin_never_reads_ends_in_a_timeout_not_in_memory() -> None:
    sender = Sender()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        await asyncio.sleep(5)

    async with RawOrigin(handler) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=0.5)
        # (the answer's wait and the body's wait end together: either one says so)
        with pytest.raises(UpstreamTimeout, match="no answer in time|stopped reading"):
            await upstream.send("POST", url + "/", [(b"content-length", b"%d" % TOTAL)],
                                sender.body())
        await upstream.aclose()
    assert sender.sent < TOTAL
