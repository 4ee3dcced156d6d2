"""OriginProxy through the real server (`edge-personalizer serve`) and a real origin process;
misbehaving origins as raw-socket servers (issue 20, the origin side); the pool's caps
in-process, with hundreds of long-lived responses."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message

from edge_personalizer.proxy import OriginProxy

from ..conftest import ADMIN_TOKEN
from ..http.raw_origin import (
    NEXT,
    RawOrigin,
    ThreadedOrigin,
    eventually,
    request_head,
    wait_for_eof,
)
from ..origin_app import pattern
from ..servers import Server, start_proxy

MiB = 1024 * 1024


def echo(proxy: Server, path: str = "/echo", **kwargs: Any) -> dict[str, Any]:
    response = httpx.get(proxy.url + path, **kwargs)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def origin_headers(data: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in data["headers"] if k.lower() == name]


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


# Streaming


@pytest.fixture
def fresh_proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    """A proxy of its own: the shared one's workers keep what earlier tests made them hold,
    and a worker's peak memory would be theirs."""
    server = start_proxy(server_logs, "--origin", origin.url)
    yield server
    server.stop()


def test_large_download_streams_without_buffering(fresh_proxy: Server) -> None:
    proxy = fresh_proxy
    size = 200 * MiB
    digest = hashlib.sha256()
    received = 0
    with httpx.stream("GET", f"{proxy.url}/download?size={size}", timeout=60) as response:
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    expected = hashlib.sha256()
    block = pattern(65536)
    for _ in range(size // 65536):
        expected.update(block)
    assert digest.hexdigest() == expected.hexdigest()
    assert proxy.peak_rss_kib() < 150 * 1024, "proxy held the download in memory"


def test_large_upload_streams_to_origin(fresh_proxy: Server) -> None:
    proxy = fresh_proxy
    size = 90 * MiB   # under the default 100 MiB body limit
    block = pattern(MiB)
    expected = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            expected.update(block)
            yield block

    response = httpx.post(f"{proxy.url}/upload", content=body(), timeout=60)
    assert response.status_code == 200
    assert response.json() == {"received": size, "sha256": expected.hexdigest()}
    assert proxy.peak_rss_kib() < 150 * 1024, "proxy held the upload in memory"


def test_upload_with_content_length_arrives_intact(proxy: Server) -> None:
    payload = pattern(3 * MiB + 17)
    response = httpx.put(f"{proxy.url}/upload", content=payload, timeout=30)
    assert response.json() == {"received": len(payload),
                               "sha256": hashlib.sha256(payload).hexdigest()}


def test_slow_origin_first_bytes_arrive_before_it_finishes(proxy: Server) -> None:
    started = time.monotonic()
    with httpx.stream("GET", f"{proxy.url}/slow-body?delay=1.0", timeout=10) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
        done_at = time.monotonic() - started
    assert first.startswith(b"first-chunk")
    assert first_at < 0.5
    assert done_at >= 1.0
    assert (first + rest) == b"first-chunk\nrest\n"


# Headers


def test_status_and_multiple_set_cookie_headers_preserved(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/cookies")
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 3
    assert cookies[0].startswith("a=1") and "HttpOnly" in cookies[1]
    assert "SameSite=strict" in cookies[2]
    assert httpx.get(f"{proxy.url}/status/418").status_code == 418
    assert httpx.get(f"{proxy.url}/status/503").status_code == 503


def test_hop_by_hop_headers_removed_both_ways(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/hop")
    assert response.headers["x-kept"] == "yes"
    for name in ("x-private", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers
    data = echo(proxy, headers={"connection": "x-secret-hop", "x-secret-hop": "1", "te": "trailers",
                                "proxy-authorization": "Basic abc", "x-end-to-end": "kept"})
    names = {k.lower() for k, _ in data["headers"]}
    assert "x-end-to-end" in names
    assert not names & {"x-secret-hop", "te", "proxy-authorization", "upgrade"}


def test_forwarding_headers_describe_the_client(proxy: Server, origin: Server) -> None:
    data = echo(proxy, headers={"host": "shop.example"})
    assert origin_headers(data, "host") == [f"127.0.0.1:{origin.port}"]
    assert origin_headers(data, "x-forwarded-for") == ["127.0.0.1"]
    assert origin_headers(data, "x-forwarded-proto") == ["http"]
    assert origin_headers(data, "x-forwarded-host") == ["shop.example"]
    assert origin_headers(data, "forwarded") == ['for=127.0.0.1;proto=http;host="shop.example"']


def test_untrusted_client_cannot_spoof_forwarding_headers(proxy: Server) -> None:
    data = echo(proxy, headers={"x-forwarded-for": "6.6.6.6", "x-forwarded-host": "evil.example",
                                "forwarded": "for=6.6.6.6", "x-real-ip": "6.6.6.6"})
    assert origin_headers(data, "x-forwarded-for") == ["127.0.0.1"]
    assert origin_headers(data, "x-real-ip") == ["127.0.0.1"]
    public = f"127.0.0.1:{proxy.port}"
    assert origin_headers(data, "forwarded") == [f'for=127.0.0.1;proto=http;host="{public}"']
    assert origin_headers(data, "x-forwarded-host") == [f"127.0.0.1:{proxy.port}"]


def test_trusted_proxy_chain_is_extended_and_client_ip_resolved(proxy: Server) -> None:
    # 127.0.0.2 is configured with --trusted-proxy: it acts as the CDN in front of us.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        response = client.get(f"{proxy.url}/echo", headers={
            "x-forwarded-for": "203.0.113.9, 127.0.0.2", "x-forwarded-proto": "https",
            "x-forwarded-host": "www.shop.example", "forwarded": "for=203.0.113.9"})
    data = response.json()
    assert origin_headers(data, "x-forwarded-for") == ["203.0.113.9, 127.0.0.2, 127.0.0.2"]
    assert origin_headers(data, "x-real-ip") == ["203.0.113.9"]
    assert origin_headers(data, "x-forwarded-proto") == ["https"]
    assert origin_headers(data, "x-forwarded-host") == ["www.shop.example"]
    # Forwarded named one hop of X-Forwarded-For's two: the origin is told X-Forwarded-For's
    assert origin_headers(data, "forwarded") == [
        'for=203.0.113.9, for=127.0.0.2, for=127.0.0.2;proto=https;host="www.shop.example"']


def test_a_clients_own_host_never_makes_the_origins_redirect_absolute(proxy: Server) -> None:
    # Host is the client's to forge: `Host: evil.example` must not send visitors there.
    response = httpx.get(f"{proxy.url}/redirect", headers={"host": "evil.example"})
    assert response.status_code == 302
    assert response.headers["location"] == "/target?x=1"
    assert response.headers["content-location"] == "/content"
    other = httpx.get(f"{proxy.url}/foreign-redirect")
    assert other.headers["location"] == "https://elsewhere.example/page"


def test_a_trusted_proxys_forwarded_host_makes_the_redirect_public(proxy: Server) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        response = client.get(f"{proxy.url}/redirect", headers={
            "x-forwarded-host": "www.shop.example", "x-forwarded-proto": "https"})
    assert response.headers["location"] == "https://www.shop.example/target?x=1"


def test_a_trusted_proxys_forwarded_host_that_is_no_host_leaves_the_redirect_a_path(
        proxy: Server) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        response = client.get(f"{proxy.url}/redirect", headers={
            "x-forwarded-host": "evil.example/x", "x-forwarded-proto": "https"})
    assert response.headers["location"] == "/target?x=1"   # not http://invalid.host/...
    with httpx.Client(transport=transport) as client:
        data = client.get(f"{proxy.url}/echo", headers={
            "x-forwarded-host": "evil.example/x", "host": "shop.example"}).json()
    # Not believed: the origin is told the request's own Host, never invalid.host.
    assert origin_headers(data, "x-forwarded-host") == ["shop.example"]


def test_the_configured_public_url_wins_over_any_host(origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url,
                         "--public-url", "https://www.shop.example")
    try:
        response = httpx.get(f"{server.url}/redirect", headers={"host": "evil.example"})
    finally:
        server.stop()
    assert response.headers["location"] == "https://www.shop.example/target?x=1"
    assert response.headers["content-location"] == "https://www.shop.example/content"


def test_client_accept_encoding_reaches_origin_unchanged(proxy: Server) -> None:
    data = echo(proxy, headers={"accept-encoding": "identity", "user-agent": "probe/1"})
    assert origin_headers(data, "accept-encoding") == ["identity"]
    assert origin_headers(data, "user-agent") == ["probe/1"]


# Pass-through semantics


def test_head_request_has_headers_and_no_body(proxy: Server) -> None:
    response = httpx.head(f"{proxy.url}/download?size=12345")
    assert response.status_code == 200
    assert response.headers["content-length"] == "12345"
    assert response.content == b""


def test_range_request_returns_206_partial_content(proxy: Server, origin: Server) -> None:
    full = httpx.get(f"{origin.url}/files/blob.bin").content
    response = httpx.get(f"{proxy.url}/files/blob.bin", headers={"range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-199/{len(full)}"
    assert response.content == full[100:200]


def test_conditional_request_gets_304(proxy: Server) -> None:
    first = httpx.get(f"{proxy.url}/files/page.html")
    etag = first.headers["etag"]
    again = httpx.get(f"{proxy.url}/files/page.html", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


def test_compressed_body_passes_through_untouched(proxy: Server, origin: Server) -> None:
    with httpx.stream("GET", f"{proxy.url}/compressed",
                      headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    with httpx.stream("GET", f"{origin.url}/compressed") as direct:
        assert raw == b"".join(direct.iter_raw())
    assert gzip.decompress(raw) == b"hello compressed world\n" * 100


def test_chunked_response_streams_through(proxy: Server) -> None:
    # A body whose end is not in sight when its first part goes out: chunked, both parts.
    # (A chunked origin body that arrives whole may go out with its length instead.)
    reply = raw_request(proxy.port, b"GET /slow-body?delay=0.3 HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"first-chunk" in body and b"rest" in body and body.endswith(b"0\r\n\r\n")
    reply = raw_request(proxy.port,
                        b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"part 0" in reply and b"part 4" in reply


# Never an open proxy


def test_host_header_cannot_redirect_the_request(proxy: Server, origin: Server) -> None:
    data = echo(proxy, headers={"host": "evil.example:80"})
    assert origin_headers(data, "host") == [f"127.0.0.1:{origin.port}"]


def test_absolute_form_target_goes_to_configured_origin(proxy: Server) -> None:
    reply = raw_request(proxy.port, b"GET http://evil.example/echo HTTP/1.1\r\n"
                        b"Host: evil.example\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200")
    body = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert body["raw_path"] == "/echo"


@pytest.mark.parametrize(("target", "expected"), [
    (b"/../../echo", "/echo"),
    (b"/echo/a/../../echo/b", "/echo/b"),
    (b"/echo/%2e%2e/%2E%2E/echo/c", "/echo/c"),
    (b"//evil.example/echo", "//evil.example/echo"),
])
def test_dot_segments_cannot_climb_out(proxy: Server, target: bytes, expected: str) -> None:
    reply = raw_request(proxy.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    status = reply.split(b" ", 2)[1]
    if expected.startswith("//"):
        assert status == b"404"   # stayed on the origin, which has no such page
    else:
        assert status == b"200", reply[:200]
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["raw_path"] == expected


# Origin failures


def test_origin_timeout_gives_504(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/slow-headers?delay=3", headers={"accept": "text/html"})
    assert response.status_code == 504
    assert "text/html" in response.headers["content-type"]
    assert "did not answer in time" in response.text
    assert "Traceback" not in response.text


def test_origin_reset_mid_body_breaks_the_client_connection(proxy: Server) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("GET", f"{proxy.url}/reset") as response:
            assert response.status_code == 200
            b"".join(response.iter_raw())
    time.sleep(0.2)
    assert "origin failed mid-response for GET /reset" in proxy.log()


def test_an_origin_silent_mid_body_is_told_once_without_a_traceback(proxy: Server) -> None:
    # The proxy closes the client's connection and says why in one warning; the compiled
    # build also logged the timeout as an exception the app had raised, with its traceback.
    before = len(proxy.log())
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("GET", f"{proxy.url}/slow-body?delay=2.5") as response:
            assert response.status_code == 200
            b"".join(response.iter_raw())
    deadline = time.monotonic() + 5
    while "origin failed mid-response for GET /slow-body" not in proxy.log()[before:] \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)   # what would come after it
    logged = proxy.log()[before:]
    assert "origin failed mid-response for GET /slow-body" in logged
    assert "Traceback" not in logged and "raised an exception" not in logged, logged
    assert '"path": "/slow-body", "status": 200, "bytes": 12' in logged
    assert '"aborted": true' in logged


@pytest.fixture(scope="module")
def named_origin_proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    """The origin by host name: HTTP clients keep cookies for names, not for addresses."""
    server = start_proxy(server_logs, "--origin", f"http://localhost:{origin.port}")
    yield server
    server.stop()


def test_one_visitors_cookies_never_reach_another_visitors_request(
        named_origin_proxy: Server) -> None:
    set_by_origin = httpx.get(f"{named_origin_proxy.url}/cookies")
    assert len(set_by_origin.headers.get_list("set-cookie")) == 3
    data = echo(named_origin_proxy)   # a different visitor, no cookies of their own
    assert origin_headers(data, "cookie") == []


# Misbehaving origins through the real server (issue 20, items 1 and 2)

OK = b"HTTP/1.1 200 OK\r\n"
MISBEHAVING = {
    # One write each: the answer, then bytes that pretend to be another answer.
    b"/more-after-length": OK + b"Content-Length: 5\r\n\r\nhello"
                           + OK + b"Content-Length: 8\r\n\r\nSMUGGLED",
    b"/more-after-204": b"HTTP/1.1 204 No Content\r\n\r\n"
                        + OK + b"Set-Cookie: smuggled=1\r\nContent-Length: 0\r\n\r\n",
    b"/two-lengths": OK + b"Content-Length: 5\r\nContent-Length: 8\r\n\r\nhelloSMUG",
    b"/length-and-chunked": OK + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"0\r\n\r\nhello",
    # Heads the server cannot send on (it stopped the worker, and twice the site).
    b"/status-000": b"HTTP/1.1 000 Weird\r\nContent-Length: 5\r\n\r\nhello",
    b"/huge-name": OK + b"X-" + b"n" * 70_000 + b": 1\r\nContent-Length: 5\r\n\r\nhello",
}
EVENTS = OK + b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"


async def misbehaving(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """MISBEHAVING's bytes by path; /events: an event every 100 ms until the client goes."""
    while True:
        try:
            head = await request_head(reader)
        except asyncio.IncompleteReadError:
            return
        path = head.split(b" ")[1]
        if path == b"/events":
            writer.write(EVENTS)
            while not reader.at_eof():
                writer.write(b"data: tick\n\n")
                await writer.drain()
                try:
                    await asyncio.wait_for(reader.read(1), 0.1)
                except TimeoutError:
                    pass
            return
        writer.write(MISBEHAVING.get(path, NEXT))
        await writer.drain()


@pytest.fixture(scope="module")
def raw_origin() -> Iterator[ThreadedOrigin]:
    origin = ThreadedOrigin(misbehaving)
    with origin:
        yield origin


@pytest.fixture(scope="module")
def raw_proxy(raw_origin: ThreadedOrigin, server_logs: Path) -> Iterator[Server]:
    server = start_proxy(server_logs, "--origin", raw_origin.url, "--read-timeout", "5",
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN})
    yield server
    server.stop()


def exchange_twice(port: int, path: bytes) -> bytes:
    """`path`, then /next on the same client connection: everything the client received."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize(("path", "first"), [
    (b"/more-after-length", b"hello"),
    (b"/more-after-204", b""),
])
def test_bytes_after_an_answer_never_reach_the_client(
        raw_proxy: Server, raw_origin: ThreadedOrigin, path: bytes, first: bytes) -> None:
    closed = raw_origin.closed_by_client
    reply = exchange_twice(raw_proxy.port, path)
    assert b"SMUGGLED" not in reply and b"smuggled" not in reply
    first_answer, _, rest = reply.partition(b"\r\n\r\n")
    assert first_answer.lower().count(b"content-length") <= 1
    # The next request got its own answer, on another connection: the one that carried
    # the extra bytes was closed by the proxy, not pooled.
    assert rest.startswith(first + b"HTTP/1.1 200") and rest.endswith(b"next")
    deadline = time.monotonic() + 2
    while raw_origin.closed_by_client == closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw_origin.closed_by_client == closed + 1


@pytest.mark.parametrize("path", [b"/two-lengths", b"/length-and-chunked", b"/status-000",
                                  b"/huge-name"])
def test_heads_that_cannot_be_passed_on_are_a_502_never_forwarded(
        raw_proxy: Server, path: bytes) -> None:
    workers = raw_proxy.worker_pids()
    reply = exchange_twice(raw_proxy.port, path)
    assert raw_proxy.worker_pids() == workers   # the worker that answered is still there
    assert reply.startswith(b"HTTP/1.1 502")
    assert b"SMUG" not in reply and b"hello" not in reply
    assert reply.endswith(b"next")
    assert b"sent an answer that cannot be passed on" in reply
    metrics = httpx.get(f"{raw_proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    assert 'ep_origin_errors_total{kind="invalid"}' in metrics


def test_a_client_that_goes_away_closes_its_origin_connection(
        raw_proxy: Server, raw_origin: ThreadedOrigin) -> None:
    before = raw_origin.closed_by_client
    with socket.create_connection(("127.0.0.1", raw_proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        received = b""
        while received.count(b"data: tick") < 8:   # the stream goes on while they stay
            data = sock.recv(65536)
            assert data, "the stream ended while its visitor was still there"
            received += data
        assert received.startswith(b"HTTP/1.1 200")
    left = time.monotonic()
    # The origin keeps sending; the proxy must stop reading and close, well before any
    # read timeout (5 s here) could.
    while raw_origin.closed_by_client == before and time.monotonic() - left < 3:
        time.sleep(0.02)
    assert raw_origin.closed_by_client == before + 1
    assert time.monotonic() - left < 2


# The pool's caps, in-process: hundreds of long-lived responses against one raw origin


class Visitor:
    """One request to the proxy as an ASGI server makes it; `leave()` disconnects."""

    def __init__(self, proxy: OriginProxy, path: str) -> None:
        self.messages: list[Message] = []
        self.started = asyncio.Event()
        self._gone = asyncio.Event()
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "headers": [(b"host", b"site")], "scheme": "http",
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080)}
        self.task = asyncio.ensure_future(proxy(scope, self._receive, self._send))

    async def _receive(self) -> Message:
        if not self.messages and not self.started.is_set():
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        self.messages.append(message)
        self.started.set()

    def leave(self) -> None:
        self._gone.set()

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.messages[0]["headers"]).get(name)


class Counted:
    """A ProxyObserver that remembers the 503s it was told of."""

    def __init__(self) -> None:
        self.busy: list[str] = []

    def origin_responded(self, seconds: float) -> None:
        pass

    def origin_failed(self, kind: str) -> None:
        pass

    def origin_busy(self, reason: str) -> None:
        self.busy.append(reason)


async def endless_events(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await request_head(reader)
        except asyncio.IncompleteReadError:
            return
        if b"/events" not in head:
            writer.write(NEXT)
            await writer.drain()
            continue
        writer.write(EVENTS + b"data: 1\n\n")
        await writer.drain()
        await wait_for_eof(reader)
        return


async def visit_all(proxy: OriginProxy, count: int) -> list[Visitor]:
    visitors = [Visitor(proxy, "/events") for _ in range(count)]
    await asyncio.wait_for(asyncio.gather(*(v.started.wait() for v in visitors)), 10)
    return visitors


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_520_streams_against_512_connections_leave_room_for_the_site() -> None:
    origin = RawOrigin(endless_events)
    async with origin as url:
        observer = Counted()
        # (a wait long enough for the 8 streams queued while 512 connect: no "pool" 503s)
        proxy = OriginProxy(url, max_connections=512, pool_timeout=5, observer=observer)
        streams = await visit_all(proxy, 520)
        statuses = sorted(v.status for v in streams)
        # Long-lived responses get at most half the connections; the rest a 503 at once.
        assert statuses.count(200) == 256 and statuses.count(503) == 264
        assert {v.header(b"retry-after") for v in streams if v.status == 503} == {b"5"}
        assert observer.busy == ["long_lived"] * 264
        page = Visitor(proxy, "/page")
        await asyncio.wait_for(page.task, 2)
        assert page.status == 200
        for visitor in streams:
            visitor.leave()
        await asyncio.wait_for(asyncio.gather(*(v.task for v in streams)), 5)
        # Every stream's origin connection closed: the 256 whose visitors left, and the
        # 264 refused ones (never read to the end, never pooled).
        assert await eventually(lambda: origin.closed_by_client == 520, 5)
        await proxy.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_full_pool_gives_others_a_bounded_wait_then_503() -> None:
    origin = RawOrigin(endless_events)
    async with origin as url:
        observer = Counted()
        proxy = OriginProxy(url, max_connections=512, max_long_lived=1000, pool_timeout=0.5,
                            observer=observer)
        streams = await visit_all(proxy, 520)
        assert sorted(v.status for v in streams).count(200) == 512
        started = time.monotonic()
        page = Visitor(proxy, "/page")
        await asyncio.wait_for(page.task, 3)
        assert 0.4 < time.monotonic() - started < 2
        assert page.status == 503 and page.header(b"retry-after") == b"5"
        assert observer.busy == ["pool"] * 9
        # Their visitors go: the reads stop, the connections close, the site answers again.
        for visitor in streams:
            visitor.leave()
        await asyncio.wait_for(asyncio.gather(*(v.task for v in streams)), 5)
        assert await eventually(lambda: origin.closed_by_client == 512, 5)
        page = Visitor(proxy, "/page")
        await asyncio.wait_for(page.task, 2)
        assert page.status == 200
        await proxy.aclose()


def _raw_answer(server: Server, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("hosts", [b"", b"Host: a\r\nHost: b\r\n", b"Host: \r\n"])
def test_an_http11_request_without_exactly_one_host_is_refused(proxy: Server,
                                                                hosts: bytes) -> None:
    answer = _raw_answer(proxy, b"GET /status/200 HTTP/1.1\r\n" + hosts
                         + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


@pytest.mark.parametrize("method", [b"TRACE", b"CONNECT"])
def test_trace_and_connect_are_never_forwarded(proxy: Server, method: bytes) -> None:
    target = b"x:443" if method == b"CONNECT" else b"/echo"
    answer = _raw_answer(proxy, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Basic c2VjcmV0\r\nConnection: close\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 405", b"HTTP/1.1 400")), answer[:200]
    assert b"c2VjcmV0" not in answer
