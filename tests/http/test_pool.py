"""The pool's caps and its bounded wait, against raw-socket origins that hold responses open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from edge_personalizer.errors import UpstreamBusy
from edge_personalizer.http.client import Upstream, UpstreamResponse
from edge_personalizer.http.pool import Pool, _Slots

from .raw_origin import RawOrigin, eventually, request_head, wait_for_eof

pytestmark = pytest.mark.anyio

STREAM = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An event stream that never ends (until the client closes the connection)."""
    await request_head(reader)
    writer.write(STREAM)
    await writer.drain()
    await wait_for_eof(reader)


async def open_streams(upstream: Upstream, url: str, count: int) -> list[UpstreamResponse]:
    return list(await asyncio.gather(*(upstream.send("GET", url + f"/{i}", [], b"")
                                       for i in range(count))))


async def test_a_full_pool_answers_busy_after_a_bounded_wait() -> None:
    origin = RawOrigin(endless)
    async with origin as url:
        upstream = Upstream(connect_timeout=1, read_timeout=5, max_connections=3,
                            pool_timeout=0.3)
        streams = await open_streams(upstream, url, 3)
        started = time.monotonic()
        with pytest.raises(UpstreamBusy, match="within 0.3 s"):
            await upstream.send("GET", url + "/other", [], b"")
        assert 0.25 < time.monotonic() - started < 1.5
        # A stream that ends (its client went away: never read to the end) frees its slot,
        # and its connection is closed, not pooled.
        await streams[0].aclose()
        assert upstream.pool.open_connections == 2
        waiting = asyncio.ensure_future(upstream.send("GET", url + "/again", [], b""))
        assert (await waiting).status == 200
        await waiting.result().aclose()
        for stream in streams[1:]:
            await stream.aclose()
        await upstream.aclose()
        assert await eventually(lambda: origin.closed_by_client == origin.connections == 4)


async def test_a_waiting_request_gets_the_first_slot_that_frees() -> None:
    async with RawOrigin(endless) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=5, max_connections=1,
                            pool_timeout=2)
        (stream,) = await open_streams(upstream, url, 1)
        waiting = asyncio.ensure_future(upstream.send("GET", url + "/next", [], b""))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await stream.aclose()
        response = await asyncio.wait_for(waiting, 1)
        await response.aclose()
        await upstream.aclose()


async def test_the_cap_per_origin_leaves_other_origins_alone() -> None:
    async with RawOrigin(endless) as busy, RawOrigin(endless) as other:
        upstream = Upstream(connect_timeout=1, read_timeout=5, max_connections=4,
                            max_connections_per_origin=2, pool_timeout=0.2)
        streams = await open_streams(upstream, busy, 2)
        with pytest.raises(UpstreamBusy):
            await upstream.send("GET", busy + "/third", [], b"")
        streams += await open_streams(upstream, other, 2)   # the same pool, another origin
        with pytest.raises(UpstreamBusy):
            await upstream.send("GET", other + "/third", [], b"")
        for stream in streams:
            await stream.aclose()
        await upstream.aclose()


@pytest.mark.parametrize(("caps", "message"), [
    ({"max_connections": 0}, "max_connections must be >= 1"),
    ({"max_connections_per_origin": 0}, "max_connections_per_origin must be >= 1"),
])
def test_caps_must_allow_a_connection(caps: dict[str, int], message: str) -> None:
    settings = {"max_connections": 4, "max_connections_per_origin": None, **caps}
    with pytest.raises(ValueError, match=message):
        Pool(connect_timeout=1, read_timeout=1, wait_timeout=1, keepalive_timeout=1,
             **settings)  # type: ignore[arg-type]


async def test_slots_go_to_waiters_in_order_and_never_get_lost() -> None:
    slots = _Slots(1)
    assert slots.try_take() and not slots.try_take()
    first = asyncio.ensure_future(slots.take())
    second = asyncio.ensure_future(slots.take())
    await asyncio.sleep(0)
    first.cancel()   # a wait that timed out: it takes nothing
    await asyncio.sleep(0)
    slots.give()
    await asyncio.wait_for(second, 1)
    assert slots.free == 0
    # Handed over at the moment the wait is cancelled: passed on, not lost.
    third = asyncio.ensure_future(slots.take())
    await asyncio.sleep(0)
    slots.give()
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert slots.free == 1 and slots.try_take()


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on a connection with a short 200, keeping it open."""
    while True:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


async def _one(upstream: Upstream, method: str, url: str,
               body: bytes | AsyncIterator[bytes]) -> None:
    response = await upstream.send(method, url, [(b"host", b"o")], body)
    async for _ in response.body():
        pass
    await response.aclose()


async def test_a_request_that_cannot_be_sent_again_takes_no_connection_idle_for_long() -> None:
    origin = RawOrigin(keep_alive)
    async with origin as url:
        upstream = Upstream(connect_timeout=1, read_timeout=5)
        await _one(upstream, "GET", url + "/a", b"")
        await _one(upstream, "GET", url + "/b", b"")        # the idle one, reused
        assert origin.connections == 1
        for conn in upstream.pool._idle.values():           # as if idle for 2 s
            for idle in conn:
                idle.idle_since -= 2.0

        async def streamed() -> AsyncIterator[bytes]:
            yield b"x"

        await _one(upstream, "POST", url + "/c", streamed())  # a body that streams: fresh
        assert origin.connections == 2
        assert sum(len(idle) for idle in upstream.pool._idle.values()) >= 1   # older kept
        await upstream.aclose()
