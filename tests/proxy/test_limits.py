"""Request limits and origin failures through the real server: clear 4xx and 502/504."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from starlette.types import Message

from edge_personalizer.proxy import OriginProxy

from ..http.raw_origin import RawOrigin, request_head
from ..servers import ADMIN_TOKEN, Server, free_port, start_proxy


@pytest.fixture(scope="module")
def strict_proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    """Limits set through EP_* variables, as an operator would in a container."""
    server = start_proxy(server_logs, "--origin", origin.url, env={
        "EP_MAX_BODY_BYTES": "1048576", "EP_MAX_HEADER_COUNT": "30",
        "EP_MAX_HEADER_BYTES": "4096"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def orphan_proxy(server_logs: Path) -> Iterator[Server]:
    """A proxy whose origin is down: nothing listens on the port."""
    server = start_proxy(server_logs, "--origin", f"http://127.0.0.1:{free_port()}",
                         "--connect-timeout", "1")
    yield server
    server.stop()


def test_body_over_limit_by_content_length_gets_413(strict_proxy: Server) -> None:
    response = httpx.post(f"{strict_proxy.url}/upload", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert "request body too large" in response.text


def test_streamed_body_over_limit_gets_413(strict_proxy: Server) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536

    response = httpx.post(f"{strict_proxy.url}/upload", content=body())
    assert response.status_code == 413


def test_body_within_limit_passes(strict_proxy: Server) -> None:
    response = httpx.post(f"{strict_proxy.url}/upload", content=b"z" * 1000)
    assert response.json()["received"] == 1000


def test_too_many_headers_get_431(strict_proxy: Server) -> None:
    headers = {f"x-h{i}": "1" for i in range(40)}
    response = httpx.get(f"{strict_proxy.url}/echo", headers=headers)
    assert response.status_code == 431
    assert "too many request headers" in response.text


def test_oversized_headers_get_431(strict_proxy: Server) -> None:
    response = httpx.get(f"{strict_proxy.url}/echo", headers={"x-big": "a" * 5000})
    assert response.status_code == 431


def test_overlong_url_gets_414(strict_proxy: Server) -> None:
    response = httpx.get(f"{strict_proxy.url}/echo?q=" + "a" * 5000)
    assert response.status_code == 414


def test_origin_down_gives_502_page_for_browsers(orphan_proxy: Server) -> None:
    response = httpx.get(orphan_proxy.url + "/", headers={"accept": "text/html,*/*"})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "could not be reached" in response.text
    assert "Traceback" not in response.text


def test_origin_down_gives_short_text_to_other_clients(orphan_proxy: Server) -> None:
    response = httpx.get(orphan_proxy.url + "/api", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert response.text.startswith("502 Bad Gateway: ")
    assert response.text.count("\n") == 1


def test_origin_down_is_logged_with_its_cause(orphan_proxy: Server) -> None:
    httpx.get(orphan_proxy.url + "/logged")
    assert "origin error for GET /logged -> 502: origin unreachable: cannot connect to " \
           "127.0.0.1:" in orphan_proxy.log()
    assert "Connection refused" in orphan_proxy.log()


def test_health_reports_unreachable_origin_as_not_ready(orphan_proxy: Server) -> None:
    response = orphan_proxy.health()
    assert response.status_code == 503
    assert response.json()["origin"]["reachable"] is False
    assert httpx.get(orphan_proxy.url + "/__ep/health/live").status_code == 200


async def busy_then_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An origin that takes a second before it reads a request's body, then answers."""
    head = await request_head(reader)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await asyncio.sleep(1.0)
    await reader.readexactly(length)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_body_timeout_counts_the_clients_pauses_not_a_busy_origins() -> None:
    # A client that sends 8 MiB at once to an origin busy for a second (twice the body
    # timeout) before it reads: the proxy stops asking the client for more meanwhile, and
    # that wait is the origin's, not the client's. (A server's receive() that yields to the
    # loop, as ASGI servers other than granian do, meets the deadline at once otherwise.)
    async with RawOrigin(busy_then_read) as url:
        proxy = OriginProxy(url, body_timeout=0.5)
        chunks = [b"x" * 65536] * 128
        sent: list[Message] = []

        async def receive() -> Message:
            await asyncio.sleep(0)   # the bytes are there; the server still yields once
            return {"type": "http.request", "body": chunks.pop(),
                    "more_body": bool(chunks)}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/up", "raw_path": b"/up",
                 "query_string": b"", "scheme": "http", "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 8080),
                 "headers": [(b"host", b"site"), (b"content-length", b"%d" % (8 << 20))]}
        await proxy(scope, receive, send)
        await proxy.aclose()
    assert sent[0]["status"] == 200, sent



@contextlib.contextmanager
def upload_proxy(origin: Server, tmp_path: Path, **env: str
                 ) -> Iterator[tuple[Server, Callable[..., socket.socket]]]:
    """A proxy with 2 upload slots (8 connections), and `connect(sent, timeout=None)`: a
    raw client that has sent `sent`; every one closed and the proxy stopped after."""
    proxy = start_proxy(tmp_path, "--origin", origin.url, env={"EP_MAX_CONNECTIONS": "8",
                                                               **env})
    opened: list[socket.socket] = []

    def connect(sent: bytes, timeout: float | None = None) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
        opened.append(client)
        client.sendall(sent)
        return client

    try:
        yield proxy, connect
    finally:
        for client in opened:
            client.close()
        proxy.stop()


def test_slow_uploads_take_at_most_a_quarter_of_the_origin_connections(
        origin: Server, tmp_path: Path) -> None:
    # Clients that send a request head and then a byte now and then each held an origin
    # connection; 1,100 of them left no answer for anyone. A body's first 64 KiB are read
    # before the origin is asked (holding no connection); a longer body still coming holds
    # one, and past a quarter of them (here 2 of 8) an upload gets a 503 at once.
    started = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
    with upload_proxy(origin, tmp_path) as (proxy, connect):
        slow = []
        for _ in range(3):
            slow.append(connect(started + b"x" * 70_000))
            time.sleep(0.3)
        third = slow[2].recv(65536)
        assert third.startswith(b"HTTP/1.1 503 ") and b"retry-after: 5" in third.lower()
        assert b"connection: close" in third.lower()   # the rest of its body is never read
        # Many short bodies, or slow ones, wait for no origin connection: the pages and
        # a checkout burst still come, however long the origin takes.
        trickling = connect(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nab")
        for _ in range(10):
            assert httpx.get(f"{proxy.url}/page/home", timeout=5).status_code == 200
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda _: httpx.post(
                f"{proxy.url}/slow-headers?delay=1", content=b"x" * 10, timeout=5).status_code,
                range(8))) == [200] * 8
        assert 'ep_origin_busy_total{reason="uploading"} 1.0' in httpx.get(
            f"{proxy.url}/__ep/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
        # One sent to its end, a long upload is taken again.
        slow[0].sendall(b"y" * 130_000)
        assert b" 200 " in slow[0].recv(65536)
        client = connect(started + b"x" * 70_000)
        time.sleep(0.3)
        client.sendall(b"y" * 130_000)
        assert b" 200 " in client.recv(65536)
        trickling.sendall(b"c" * 898)
        assert b" 200 " in trickling.recv(65536)


def test_long_uploads_trickling_cannot_hold_every_upload_slot(
        origin: Server, tmp_path: Path) -> None:
    # Clients sending a long body just above the least rate (here ~4 KiB/s) held every
    # upload slot for as long as their bodies lasted (hours), and every other long upload
    # got a 503. Once one is turned away with every slot taken (2 of 8 connections), those
    # sending must keep 16 KiB/s from then on (after 5 s); while no one waits, the same
    # pace is fine.
    started = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
    clients: list[socket.socket] = []   # the ones trickling

    def trickle(seconds: float) -> list[bytes]:
        """Each client sends 400 bytes every 0.1 s for `seconds`; what each got back."""
        answers = [b""] * len(clients)
        for _ in range(round(seconds * 10)):
            for index, client in enumerate(clients):
                if not answers[index]:
                    try:
                        client.sendall(b"x" * 400)
                    except OSError:
                        answers[index] = client.recv(65536)
            time.sleep(0.1)
            for index, client in enumerate(clients):
                client.setblocking(False)
                try:
                    answers[index] = answers[index] or client.recv(65536)
                except BlockingIOError:
                    pass
                client.setblocking(True)
        return answers

    with upload_proxy(origin, tmp_path, EP_BODY_TIMEOUT="5") as (_, connect):
        clients += [connect(started + b"x" * 70_000) for _ in range(2)]
        assert trickle(3.0) == [b"", b""]   # every slot taken, no one turned away: fine
        turned_away = connect(started + b"x" * 70_000)
        assert turned_away.recv(65536).startswith(b"HTTP/1.1 503 ")
        turned_away.close()
        answers = trickle(8.0)   # (a stall of up to 5 s passes: cut after ~6.6 s)
        cut = [answer for answer in answers if answer]
        assert len(cut) == 1 and cut[0].startswith(b"HTTP/1.1 408 "), answers
        assert b"turned away for want of a slot" in cut[0]
        # a long upload sent at a good pace takes the slot freed and goes through
        fast = connect(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
                       + b"x" * 200_000)
        assert b" 200 " in fast.recv(65536)


def test_a_long_upload_turned_away_is_told_before_it_sends_its_body(
        origin: Server, tmp_path: Path) -> None:
    # A long upload with every slot taken was read for its first 64 KiB before its 503,
    # and with `Expect: 100-continue` its client was asked for the body it would not send.
    long_head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
    with upload_proxy(origin, tmp_path) as (_, connect):
        for _ in range(2):   # both upload slots (2 of 8 connections) taken
            connect(long_head + b"\r\n" + b"x" * 1000)
        time.sleep(0.3)
        for expect in (b"", b"Expect: 100-continue\r\n"):
            waiting = connect(long_head + expect + b"\r\n", timeout=3)   # the head alone
            answer = waiting.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert b"100 Continue" not in answer


def test_a_body_in_a_great_many_tiny_chunks_is_refused(origin: Server, tmp_path: Path) -> None:
    # 300 KB sent in 1-byte chunks (1.8 MB on the wire) took a worker half a minute of
    # its time, and its slowness was charged to the client.
    proxy = start_proxy(tmp_path, "--origin", origin.url)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            client.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 20_000
                           + b"0\r\n\r\n")
            answer = client.recv(65536)
    finally:
        proxy.stop()
    assert answer.startswith(b"HTTP/1.1 400 ") and b"parts too small" in answer, answer
