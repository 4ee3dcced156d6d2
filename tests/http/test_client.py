"""The origin client against real servers: the test origin process, and raw sockets on
127.0.0.1 for what a well-behaved server never does (interim answers, bodies ended by
closing, keep-alive connections closed under the client, broken framing)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from edge_personalizer.errors import UpstreamError, UpstreamTimeout
from edge_personalizer.http.client import Upstream, _split, probe

from ..servers import Server, free_port
from .raw_origin import RawOrigin, request_head

pytestmark = pytest.mark.anyio

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def read(response: object) -> bytes:
    return b"".join([chunk async for chunk in response.body()])  # type: ignore[attr-defined]


async def get(upstream: Upstream, url: str, method: str = "GET") -> tuple[int, bytes]:
    response = await upstream.send(method, url, [(b"host", b"origin")], b"")
    body = await read(response)
    await response.aclose()
    return response.status, body


async def test_sends_and_streams(origin: Server) -> None:
    upstream = Upstream(connect_timeout=2, read_timeout=2)
    status, received = await get(upstream, f"{origin.url}/download?size=100000")
    assert status == 200 and len(received) == 100000
    result = await probe(upstream, f"{origin.url}/", "origin")
    assert result.reachable
    await upstream.aclose()


async def test_refused_is_an_error_and_slow_is_a_timeout(origin: Server) -> None:
    upstream = Upstream(connect_timeout=1, read_timeout=0.5)
    port = free_port()
    with pytest.raises(UpstreamError) as refused:
        await upstream.send("GET", f"http://127.0.0.1:{port}/", [], b"")
    assert not isinstance(refused.value, UpstreamTimeout)
    assert f"cannot connect to 127.0.0.1:{port}" in str(refused.value)
    with pytest.raises(UpstreamTimeout):
        await upstream.send("GET", f"{origin.url}/slow-headers?delay=2", [], b"")
    assert not (await probe(upstream, f"http://127.0.0.1:{free_port()}/", "x")).reachable
    await upstream.aclose()


async def test_stalled_body_is_a_timeout_and_a_reset_an_error(origin: Server) -> None:
    upstream = Upstream(connect_timeout=1, read_timeout=0.5)
    response = await upstream.send("GET", f"{origin.url}/slow-body?delay=2", [], b"")
    with pytest.raises(UpstreamTimeout, match="mid-body"):
        await read(response)
    await response.aclose()
    response = await upstream.send("GET", f"{origin.url}/reset", [], b"")
    with pytest.raises(UpstreamError, match="broke off"):
        await read(response)
    await response.aclose()
    await upstream.aclose()


async def test_keeps_connections_alive_and_survives_head_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await request_head(reader)
            except asyncio.IncompleteReadError:
                return
            # HEAD gets the length of the GET body, and no body: the next answer follows.
            body = b"" if head.startswith(b"HEAD") else b"hello"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n" + body)
            await writer.drain()

    raw = RawOrigin(handler)
    async with raw as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        for method in ("GET", "HEAD", "GET", "HEAD", "GET"):
            status, body = await get(upstream, url + "/x", method)
            assert (status, body) == (200, b"" if method == "HEAD" else b"hello")
        await upstream.aclose()
    assert raw.connections == 1


async def test_interim_answers_are_skipped_and_eof_ends_a_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    raw = RawOrigin(handler)
    async with raw as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        response = await upstream.send("GET", url + "/", [], b"")
        assert response.status == 200
        assert response.headers == [(b"content-type", b"text/plain")]
        assert await read(response) == b"until the end"
        await response.aclose()
        # That connection ended with its body: the next request opens another.
        assert (await get(upstream, url + "/"))[1] == b"until the end"
        await upstream.aclose()
    assert raw.connections == 2


async def test_kept_alive_connection_closed_under_a_request() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await request_head(reader)   # the next request arrives ... and is not answered

    async def body() -> AsyncIterator[bytes]:
        yield b"payload"

    raw = RawOrigin(handler)
    async with raw as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        assert await get(upstream, url + "/") == (200, b"ok")
        # Idempotent: sent again, once, on a new connection.
        assert await get(upstream, url + "/") == (200, b"ok")
        assert raw.connections == 2
        # A streamed POST is never sent twice.
        with pytest.raises(UpstreamError, match="closed a kept-alive connection"):
            await upstream.send("POST", url + "/", [], body())
        await upstream.aclose()
    assert raw.connections == 2


async def test_streamed_bodies_arrive_whole_with_or_without_length(origin: Server) -> None:
    payload = bytes(range(256)) * 1000

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 50000):
            yield payload[start:start + 50000]

    upstream = Upstream(connect_timeout=1, read_timeout=2)
    for headers in ([(b"host", b"origin")],
                    [(b"host", b"origin"), (b"content-length", str(len(payload)).encode())]):
        response = await upstream.send("POST", f"{origin.url}/upload", headers, body())
        answer = await read(response)
        await response.aclose()
        assert f'"received":{len(payload)}' in answer.decode().replace(" ", "")
        assert hashlib.sha256(payload).hexdigest() in answer.decode()
    await upstream.aclose()


async def test_the_read_timeout_starts_once_the_body_is_sent(origin: Server) -> None:
    # An upload of 0.8 s at a steady pace, to an origin that answers when it has it all:
    # the 0.3 s read timeout ran from the request's head, and cut such an upload with a
    # 504 "origin gave no answer in time" while the origin was still reading it.
    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            await asyncio.sleep(0.1)
            yield b"x" * 1000

    upstream = Upstream(connect_timeout=1, read_timeout=0.3)
    response = await upstream.send("POST", f"{origin.url}/upload", [(b"host", b"origin")],
                                   body())
    assert response.status == 200 and b'"received":8000' in (await read(response)).replace(
        b" ", b"")
    await response.aclose()
    # Once it is all sent, a silent origin is one.
    with pytest.raises(UpstreamTimeout, match="no answer in time"):
        await upstream.send("POST", f"{origin.url}/slow-headers?delay=2",
                            [(b"host", b"origin")], body())
    await upstream.aclose()


async def test_invalid_answers_and_short_bodies_are_errors() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await request_head(reader)
        if b"/garbage" in head:
            writer.write(b"SMTP ready\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly some")
        await writer.drain()

    async with RawOrigin(handler) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=1)
        with pytest.raises(UpstreamError, match="invalid HTTP"):
            await upstream.send("GET", url + "/garbage", [], b"")
        response = await upstream.send("GET", url + "/short", [], b"")
        with pytest.raises(UpstreamError, match="mid-body"):
            await read(response)
        await response.aclose()
        await upstream.aclose()


async def test_pool_limit_queues_requests_instead_of_opening_more() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await request_head(reader)
            except asyncio.IncompleteReadError:
                return
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    raw = RawOrigin(handler)
    async with raw as url:
        upstream = Upstream(connect_timeout=1, read_timeout=2, max_connections=2)
        results = await asyncio.gather(*(get(upstream, url + f"/{i}") for i in range(8)))
        assert results == [(200, b"ok")] * 8
        await upstream.aclose()
    assert raw.connections == 2


async def test_nothing_is_added_to_or_kept_from_requests(origin: Server) -> None:
    upstream = Upstream(connect_timeout=1, read_timeout=1)
    status, _ = await get(upstream, f"{origin.url}/cookies")
    assert status == 200
    response = await upstream.send("GET", f"{origin.url}/echo?x=%2F", [(b"host", b"origin")], b"")
    echoed = (await read(response)).decode()
    await response.aclose()
    assert '"cookie"' not in echoed and "user-agent" not in echoed
    assert "%2F" in echoed   # the target goes as the client wrote it
    await upstream.aclose()


async def test_a_body_ends_with_its_last_chunk_not_an_empty_message(origin: Server) -> None:
    from edge_personalizer.proxy.origin import OriginProxy

    proxy = OriginProxy(origin.url)
    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    # A page with a Content-Length: its last bytes and its end arrive together.
    scope = {"type": "http", "method": "GET", "path": "/slotted/a", "raw_path": b"/slotted/a",
             "query_string": b"", "headers": [(b"host", b"site")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080), "scheme": "http"}
    await proxy(scope, receive, send)   # type: ignore[arg-type]
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies).endswith(b"</html>")  # type: ignore[misc]
    assert bodies[-1]["more_body"] is False and bodies[-1]["body"]
    await proxy.aclose()


async def test_an_endless_or_crowded_head_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        if b"/crowded" in head:
            writer.write(b"x-h: 1\r\n" * 600 + b"content-length: 0\r\n\r\n")
        else:
            for _ in range(200):   # a head that never ends, in many small writes
                writer.write(b"x-long: " + b"a" * 1000 + b"\r\n")
                await writer.drain()
        await writer.drain()
        await asyncio.sleep(0.5)

    async with RawOrigin(handler) as url:
        upstream = Upstream(connect_timeout=1, read_timeout=2)
        for path in ("/crowded", "/endless"):
            with pytest.raises(UpstreamError, match="too many or too large headers"):
                await upstream.send("GET", url + path, [], b"")
        await upstream.aclose()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/a/b?x=1", "http://127.0.0.1:8080/", "https://shop.example/p",
    "http://user@[::1]:81/x", "http://h:8080?q=1", "http://h", "https://h:443/a/b/c?d#e",
])
def test_origin_part_remembered_splits_like_the_first_time(url: str) -> None:
    upstream = Upstream(connect_timeout=1, read_timeout=1)
    for _ in range(2):
        assert upstream._split_remembered(url) == _split(url)
    with pytest.raises(UpstreamError, match="not an http"):
        upstream._split_remembered("ftp://h/x")
