"""HttpProtocol: HTTP/1.1 on real sockets, under a real uvicorn server in this process."""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from edge_personalizer.pipeline import BODY_VIEWS
from edge_personalizer.protocol import HttpProtocol

Scenario = Callable[[int], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """A small site: each path shows one way of answering."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":   # the request body, read as the server hands it over
        parts = []
        while True:
            message = await receive()
            parts.append(message["body"])
            if not message.get("more_body"):
                break
        body = b"|".join(parts)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":   # no length: chunked on HTTP/1.1, ended by the close on 1.0
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": memoryview(b"three")})
    elif path == "/not-modified":
        await send({"type": "http.response.start", "status": 304,
                    "headers": [(b"content-length", b"1234"), (b"etag", b'"x"')]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/split":   # a header value that would split the response
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-evil", b"a\r\nset-cookie: stolen=1")]})
    elif path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"0.3"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"slow"})
    elif path == "/disconnect":   # waits for the client to go, then says so on the next one
        message = await receive()
        message = await receive()
        DISCONNECTS.append(message["type"])
    elif path == "/mixed":   # [name, value] lists, names in capitals: still read for framing
        await send({"type": "http.response.start", "status": 200,
                    "headers": [[b"Content-Length", b"2"], [b"Connection", b"Close"]]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/large":   # 16 MiB streamed: as fast as the client reads, no faster
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % (256 * 65536))]})
        for _ in range(256):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            SENT.append(65536)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fail":
        raise RuntimeError("the app broke")
    else:
        body = repr((scope["method"], scope["path"], scope["query_string"],
                     BODY_VIEWS in scope["extensions"])).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"Content-Type", b"text/plain"),
                                (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


DISCONNECTS: list[str] = []
SENT: list[int] = []     # body bytes the app got past send, a part each
SERVERS: list[uvicorn.Server] = []
WRITES: list[int] = []   # transport calls a connection made, one entry each


class RecordingProtocol(HttpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real = transport

        class Recorder:
            def write(self, data: bytes) -> None:
                WRITES.append(len(data))
                real.write(data)   # type: ignore[attr-defined]

            def writelines(self, lines: list[bytes]) -> None:
                WRITES.append(sum(map(len, lines)))
                real.writelines(lines)   # type: ignore[attr-defined]

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        super().connection_made(Recorder())   # type: ignore[arg-type]


def serve(scenario: Scenario, **options: Any) -> None:
    """Run uvicorn with the protocol on a free port while `scenario(port)` runs (it may
    find the server as SERVERS[-1])."""
    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        options.setdefault("http", RecordingProtocol)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                log_config=None, access_log=False, proxy_headers=False,
                                server_header=False, date_header=False, **options)
        server = uvicorn.Server(config)
        SERVERS.append(server)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            await asyncio.wait_for(scenario(port), 10)
        finally:
            server.should_exit = True
            await task

    WRITES.clear()
    asyncio.run(main())


async def exchange(port: int, data: bytes, *, until: bytes | None = None,
                   read_timeout: float = 3.0) -> bytes:
    """Send `data`; read until `until` has come, or until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        while until is None or until not in received:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            received += chunk
    finally:
        writer.close()
    return received


def test_kept_alive_requests_and_their_scope() -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in (b"/a?x=1", b"/b%20c"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Content-Type: text/plain\r\n" in head   # names go out as written
            assert b"connection" not in head
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            assert body in (b"('GET', '/a', b'x=1', True)", b"('GET', '/b c', b'', True)")
        writer.close()

    serve(scenario)


def test_head_and_body_of_a_page_leave_in_one_write() -> None:
    async def scenario(port: int) -> None:
        await exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    serve(scenario)
    assert len(WRITES) == 1
    assert WRITES[0] > 100


def test_pipelined_requests_are_answered_in_order() -> None:
    async def scenario(port: int) -> None:
        data = (b"GET /slow?0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        received = await exchange(port, data, until=b"hello")
        assert received.count(b"HTTP/1.1 200 OK") == 3
        assert received.index(b"slow") < received.index(b"/second") < received.index(b"hello")

    serve(scenario)


def test_response_without_length_is_chunked_on_http11() -> None:
    async def scenario(port: int) -> None:
        received = await exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
                                  until=b"0\r\n\r\n")
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        assert body == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n"

    serve(scenario)


def test_response_without_length_ends_with_the_connection_on_http10() -> None:
    async def scenario(port: int) -> None:
        received = await exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head
        assert b"connection: close" in head
        assert body == b"onetwothree"

    serve(scenario)


def test_head_and_not_modified_carry_no_body() -> None:
    async def scenario(port: int) -> None:
        head = await exchange(port, b"HEAD /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.endswith(b"\r\n\r\n")
        assert b"content-length: 25" in head
        received = await exchange(
            port, b"GET /not-modified HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\n\r\n",
            until=b"True)")
        assert received.startswith(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\n")
        assert received.count(b"HTTP/1.1 ") == 2   # the connection went on after the 304

    serve(scenario)


def test_a_client_that_does_not_read_holds_the_app_back() -> None:
    async def scenario(port: int) -> None:
        SENT.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=65536)
        transport: asyncio.Transport = writer.transport   # type: ignore[assignment]
        transport.pause_reading()   # a slow client: nothing read for a while
        writer.write(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.5)
        waiting = sum(SENT)
        transport.resume_reading()
        received = 0
        while received < 256 * 65536:
            chunk = await reader.read(1 << 20)
            assert chunk
            received += len(chunk)
        writer.close()
        # What the socket buffers and the transport's high-water mark allow, not 16 MiB.
        assert waiting < 8 * 1024 * 1024
        assert sum(SENT) == 256 * 65536

    serve(scenario)


def test_request_body_streams_in_with_100_continue() -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"3\r\nabc\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"2\r\nde\r\n0\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.close()
        assert body.replace(b"|", b"") == b"abcde"
        assert body.startswith(b"abc|")   # the first part was handed over before the rest came

    serve(scenario)


def test_a_header_that_would_split_the_response_is_refused() -> None:
    async def scenario(port: int) -> None:
        received = await exchange(port, b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n")
        assert received.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert b"stolen" not in received

    serve(scenario)


def test_framing_headers_are_read_whatever_their_case() -> None:
    async def scenario(port: int) -> None:
        received = await exchange(port, b"GET /mixed HTTP/1.1\r\nHost: x\r\n\r\n")
        assert received == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Close\r\n"
                            b"\r\nok")   # and the connection closed, as the app asked

    serve(scenario)


def test_app_errors_and_bad_requests() -> None:
    async def scenario(port: int) -> None:
        failed = await exchange(port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        assert failed.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert b"connection: close" in failed
        bad = await exchange(port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert bad.endswith(b"Invalid HTTP request received.")

    serve(scenario)


def test_an_endless_request_head_is_cut_off() -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        for _ in range(200):   # 200 KiB of headers, never ending
            writer.write(b"x-filler: " + b"a" * 1014 + b"\r\n")
        received = await asyncio.wait_for(reader.read(), 3)
        writer.close()
        assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"connection: close" in received

    serve(scenario, http=functools.partial(RecordingProtocol, max_head_bytes=100_000))


def test_stopping_finishes_the_answers_under_way_and_closes_idle_connections() -> None:
    async def scenario(port: int) -> None:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        idle_writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await idle_reader.readuntil(b"True)")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow?0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        SERVERS[-1].should_exit = True   # as on SIGINT or SIGTERM
        assert await asyncio.wait_for(idle_reader.read(), 2) == b""   # closed at once
        received = await asyncio.wait_for(reader.read(), 3)   # answered, then closed
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection: close\r\n" in received
        assert received.endswith(b"\r\n\r\nslow")
        idle_writer.close()
        writer.close()

    serve(scenario)


def test_idle_connections_close_after_the_keep_alive_timeout() -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        # A request that takes longer than the timeout is not cut off ...
        writer.write(b"GET /slow?1.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"slow")).startswith(b"HTTP/1.1 200 OK")
        answered = time.monotonic()
        assert answered - started >= 1.3
        # ... and the connection closes about a second after the answer.
        assert await asyncio.wait_for(reader.read(), 3) == b""
        assert 0.9 <= time.monotonic() - answered < 2.0
        writer.close()

    serve(scenario, timeout_keep_alive=1)


def test_the_app_hears_of_a_client_that_left() -> None:
    async def scenario(port: int) -> None:
        DISCONNECTS.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        writer.close()
        for _ in range(100):
            if DISCONNECTS:
                break
            await asyncio.sleep(0.02)
        assert DISCONNECTS == ["http.disconnect"]

    serve(scenario)


@pytest.mark.parametrize("request_line", [b"GET http://elsewhere.example/p?q=1 HTTP/1.1"])
def test_absolute_form_targets_give_their_path(request_line: bytes) -> None:
    async def scenario(port: int) -> None:
        received = await exchange(port, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert received.endswith(b"('GET', '/p', b'q=1', True)")

    serve(scenario)
