"""OriginProxy through the real server (`edge-personalizer serve`) and a real origin process."""

from __future__ import annotations

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


def test_large_download_streams_without_buffering(proxy: Server) -> None:
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


def test_large_upload_streams_to_origin(proxy: Server) -> None:
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
    assert origin_headers(data, "forwarded") == [
        'for=203.0.113.9, for=127.0.0.2;proto=https;host="www.shop.example"']


def test_location_pointing_at_origin_is_rewritten_to_public_host(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/redirect", headers={"host": "www.shop.example"})
    assert response.status_code == 302
    assert response.headers["location"] == "http://www.shop.example/target?x=1"
    assert response.headers["content-location"] == "http://www.shop.example/content"
    other = httpx.get(f"{proxy.url}/foreign-redirect")
    assert other.headers["location"] == "https://elsewhere.example/page"


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
    reply = raw_request(proxy.port,
                        b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"part 0" in body and b"part 4" in body


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
