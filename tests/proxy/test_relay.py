"""The response relay: which responses are long-lived, and a body that stops when its
client goes (in-process, against a raw origin)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_personalizer.proxy import OriginProxy
from edge_personalizer.proxy.relay import is_long_lived, relay_body

from ..http.raw_origin import RawOrigin, eventually, request_head
from ..servers import Server, start_proxy
from .test_origin import OK, Visitor


@pytest.mark.parametrize(("value", "expected"), [
    (b"text/event-stream", True),
    (b" Text/Event-Stream; charset=utf-8", True),
    (b"multipart/x-mixed-replace; boundary=frame", True),
    (b"text/html", False),
])
def test_long_lived_responses_are_known_by_their_content_type(value: bytes,
                                                               expected: bool) -> None:
    assert is_long_lived([(b"content-type", value)]) is expected
    assert not is_long_lived([(b"content-length", b"5")])


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A plain download that never ends: a line every 50 ms until the client goes."""
    await request_head(reader)
    writer.write(OK + b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not reader.at_eof():
        writer.write(b"5\r\nline\n\r\n")
        await writer.drain()
        try:
            await asyncio.wait_for(reader.read(1), 0.05)
        except TimeoutError:
            pass


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_long_ordinary_body_stops_when_its_client_goes() -> None:
    origin = RawOrigin(trickle)
    async with origin as url:
        proxy = OriginProxy(url)
        visitor = Visitor(proxy, "/download")
        await asyncio.wait_for(visitor.started.wait(), 2)
        visitor.leave()
        left = time.monotonic()
        # Watched once it has streamed for a second: then the read stops at once.
        await asyncio.wait_for(visitor.task, 3)
        assert await eventually(lambda: origin.closed_by_client == 1, 1)
        assert time.monotonic() - left < 2
        body = visitor.messages[1:]
        assert body and all(m.get("more_body") for m in body)   # never made to look whole
        await proxy.aclose()


def test_an_answer_nobody_reads_is_given_up_and_frees_its_origin_connection(
        origin: Server, tmp_path: Path) -> None:
    # A few hundred clients that ask for a large file and never read held every origin
    # connection for as long as they stayed: everyone else got 503.
    proxy = start_proxy(tmp_path, "--origin", origin.url,
                        env={"EP_SEND_TIMEOUT": "5", "EP_MAX_CONNECTIONS": "1",
                             "EP_POOL_TIMEOUT": "1"})
    stalled = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", proxy.port))
        stalled.sendall(b"GET /download?size=200000000 HTTP/1.1\r\nHost: shop\r\n\r\n")
        # While it reads nothing, it holds the one origin connection ...
        held = time.monotonic() + 4
        while httpx.get(f"{proxy.url}/echo", timeout=10).status_code != 503:
            assert time.monotonic() < held, "the origin connection was never held"
        # ... until send_timeout has passed without a send going through.
        freed = time.monotonic() + 20
        while httpx.get(f"{proxy.url}/echo", timeout=10).status_code != 200:
            assert time.monotonic() < freed, "the origin connection was never freed"
        # Its own connection is closed: what was on its way, then the end.
        stalled.settimeout(20)
        received = 0
        while piece := _read(stalled):
            received += len(piece)
        assert received < 200_000_000
    finally:
        stalled.close()
        proxy.stop()


def _read(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except ConnectionResetError:
        return b""


class _Gappy:
    """An origin's answer in `pieces`, each after `gap` seconds; `ended` on the last."""

    def __init__(self, pieces: int, gap: float) -> None:
        self.pieces, self.gap, self.ended = pieces, gap, False

    async def body(self) -> AsyncIterator[bytes]:
        for n in range(self.pieces):
            await asyncio.sleep(self.gap)
            self.ended = n == self.pieces - 1
            yield b"data: %d\n\n" % n


async def _never_leaves() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("at_once", "watch"), [(True, True), (False, False)])
async def test_an_origin_slow_to_send_is_no_client_that_does_not_read(
        at_once: bool, watch: bool) -> None:
    # Only a send the client leaves waiting counts: an event stream whose origin is
    # quiet for longer than send_timeout between events was given up.
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    ended = await relay_body(_Gappy(4, 0.4), _never_leaves, send,  # type: ignore[arg-type]
                             watch=watch, at_once=at_once, stall=0.3)
    assert ended is True and len(sent) == 4 and not sent[-1]["more_body"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_send_the_client_leaves_waiting_is_given_up_after_the_stall() -> None:
    async def send(message: dict[str, Any]) -> None:
        await asyncio.Event().wait()   # a client that reads nothing

    began = time.monotonic()
    ended = await relay_body(_Gappy(3, 0.01), _never_leaves, send,  # type: ignore[arg-type]
                             watch=False, at_once=True, stall=0.5)
    assert ended is None and 0.4 < time.monotonic() - began < 5
