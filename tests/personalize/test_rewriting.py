"""Pages rewritten through the real server (rules in tests/data/rules), and in process
around a site that sends megabytes of page in one small compressed body message."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import brotli
import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from edge_personalizer import PersonalizeMiddleware

from ..conftest import ROOT
from ..faults import watch
from ..servers import Server, start_proxy

RULES = ROOT / "tests" / "data" / "rules"

# Uncompressed unless a test asks (a rewritten page is compressed for clients that accept it)
PAGE = {"accept": "text/html,application/xhtml+xml", "accept-encoding": "identity",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
FACEBOOK = {**PAGE, "referer": "https://l.facebook.com/l.php?u=x"}
HERO = b'<section data-ep-slot="hero"><h1>Hello, friend from Facebook</h1>\n</section>'


def test_slot_is_rewritten_and_nothing_else_changes(proxy: Server, origin: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a", headers=FACEBOOK)
    original = httpx.get(f"{origin.url}/slotted/a", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert HERO in response.content
    expected = original.content.replace(
        b'<section data-ep-slot="hero"><h1>Default hero</h1></section>', HERO)
    assert response.content == expected
    headers = response.headers
    assert "x-ep-variant" not in headers   # rule names reach visitors only if turned on
    assert headers["server-timing"].startswith("ep;dur=")
    assert headers["cache-control"] == "private, max-age=60"
    for stale in ("etag", "content-md5"):
        assert stale not in headers
    # The slot is near the top: once it is written, the rest passes as it comes, so the
    # new length is known before the head leaves.
    assert headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in headers


def test_the_same_page_again_is_rewritten_the_same(proxy: Server, origin: Server) -> None:
    # Again and again: the rewritten first bytes are then remembered, and the rest of the
    # page goes out as the origin sent it, in a body message of its own.
    original = httpx.get(f"{origin.url}/slotted/again?long=1",
                         headers={"accept-encoding": "identity"})
    expected = original.content.replace(
        b'<section data-ep-slot="hero"><h1>Default hero</h1></section>', HERO)
    with httpx.Client() as client:
        for _ in range(3):
            response = client.get(f"{proxy.url}/slotted/again?long=1", headers=FACEBOOK)
            assert response.content == expected
            assert response.headers["content-length"] == str(len(expected))


def test_origin_is_asked_for_an_uncompressed_page(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a",
                         headers={**FACEBOOK, "accept-encoding": "gzip, br"})
    assert "Привет identity".encode() in response.content


def test_compressed_origin_page_is_rewritten_and_recompressed(proxy: Server) -> None:
    with httpx.stream("GET", f"{proxy.url}/slotted/a?gz=1",
                      headers={**FACEBOOK, "accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert HERO in gzip.decompress(raw)
    # Compressed anew as it streams: the origin's length no longer applies. A server that
    # has the whole answer at once may still frame it with the new, right length.
    assert response.headers.get("content-length", str(len(raw))) == str(len(raw))


def test_legacy_charset_page_is_rewritten_without_mojibake(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a?cs=windows-1251", headers=FACEBOOK)
    text = response.content.decode("windows-1251")
    assert "Привет" in text and "Hello, friend from Facebook" in text


def test_page_without_a_decision_is_untouched(proxy: Server, origin: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a", headers=PAGE)
    original = httpx.get(f"{origin.url}/slotted/a", headers=PAGE)
    assert response.content == original.content
    assert response.headers["etag"] == '"v1"'
    assert "x-ep-variant" not in response.headers


def test_head_and_body_injection_carry_the_csp_nonce(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a?inject=1&csp=1", headers=PAGE)
    body = response.content
    assert (b'<style nonce="abc123">.ep{}</style><script nonce="abc123">ep()</script></head>'
            in body)
    assert body.endswith(b"<p id=ep-end>end</p></body></html>")


def test_head_injection_and_slot_edit_together(proxy: Server, origin: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a?inject=head", headers=FACEBOOK)
    original = httpx.get(f"{origin.url}/slotted/a", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    expected = original.content.replace(
        b'<section data-ep-slot="hero"><h1>Default hero</h1></section>', HERO).replace(
        b"</head>", b"<style>.ep{}</style></head>")
    assert response.content == expected


def test_rewritten_page_streams(proxy: Server) -> None:
    started = time.monotonic()
    with httpx.stream("GET", f"{proxy.url}/slotted/a?slow=1", headers=FACEBOOK) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    assert first_at < 0.6 and HERO in first + rest
    assert time.monotonic() - started >= 1.0


def test_personalized_page_varies_on_what_the_rules_read(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/a", headers=FACEBOOK)
    vary = {v.strip() for v in ",".join(response.headers.get_list("vary")).split(",")}
    assert {"Referer", "Cookie"} <= vary


@pytest.mark.parametrize(("accept", "coding"), [
    ("gzip, deflate, br, zstd", "br"), ("gzip, deflate", "gzip"), ("br;q=0.5, gzip", "gzip")])
def test_a_rewritten_page_is_compressed_for_clients_that_accept_it(
        proxy: Server, origin: Server, accept: str, coding: str) -> None:
    original = httpx.get(f"{origin.url}/slotted/z?long=1",
                         headers={"accept-encoding": "identity"}).content
    with httpx.stream("GET", f"{proxy.url}/slotted/z?long=1",
                      headers={**FACEBOOK, "accept-encoding": accept}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == coding
    assert "accept-encoding" in response.headers["vary"].lower()
    plain = brotli.decompress(raw) if coding == "br" else gzip.decompress(raw)
    assert plain == original.replace(
        b'<section data-ep-slot="hero"><h1>Default hero</h1></section>', HERO)
    assert len(raw) < len(plain) / 10   # ~100 KB of repeated markup
    assert "Привет identity".encode() in plain   # the origin was asked for identity


def test_a_compressed_page_still_streams(proxy: Server) -> None:
    started = time.monotonic()
    with httpx.stream("GET", f"{proxy.url}/slotted/a?slow=1",
                      headers={**FACEBOOK, "accept-encoding": "gzip"}) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        # What came first decodes on its own (flushed), slot included.
        early = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(first)
        rest = b"".join(chunks)
    assert first_at < 0.6 and HERO in early
    assert time.monotonic() - started >= 1.0
    assert HERO in gzip.decompress(first + rest)


def test_compression_can_be_turned_off(origin: Server, tmp_path: Path) -> None:
    plain = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES),
                        env={"EP_COMPRESS_PAGES": "false"})
    try:
        response = httpx.get(f"{plain.url}/slotted/a",
                             headers={**FACEBOOK, "accept-encoding": "gzip, deflate, br"})
    finally:
        plain.stop()
    assert HERO in response.content and "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(response.content))


def _raw(server: Server, request: bytes) -> bytes:
    """One request on a raw connection, and what came back until the server closed it."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_head_of_a_personalized_page_completes_and_the_next_request_is_answered(
        proxy: Server) -> None:
    referer = FACEBOOK["referer"].encode()
    head = (b"HEAD /html-edge/a HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nReferer: "
            + referer + b"\r\nUser-Agent: " + PAGE["user-agent"].encode() + b"\r\n\r\n")
    then = b"GET /status/204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _raw(proxy, head + then)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 204" in answer          # the pipelined request after it is not lost


@pytest.mark.parametrize("accept", ["identity", "gzip, br"])
def test_a_head_of_a_page_answers_the_start_its_get_would(proxy: Server, accept: str) -> None:
    # RFC 9110 9.3.2: the same fields as the GET's, the length (known only once the page is
    # rewritten) left out, never the origin's; nor its validators, which a cache would
    # revalidate the variant with.
    headers = {**FACEBOOK, "accept-encoding": accept}
    with httpx.Client() as client:
        get = client.get(f"{proxy.url}/slotted/head-of-it", headers=headers)
        head = client.head(f"{proxy.url}/slotted/head-of-it", headers=headers)
    assert HERO in get.content   # (decoded)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-length", "etag", "content-md5", "last-modified", "accept-ranges"):
        assert name not in head.headers
    for name in ("content-type", "content-encoding", "vary", "cache-control", "x-ep-segment"):
        assert head.headers.get_list(name) == get.headers.get_list(name), name
    # A page no rule changes keeps the origin's length, as its GET does.
    plain = httpx.head(f"{proxy.url}/slotted/head-of-it", headers=PAGE)
    assert plain.headers["content-length"] == httpx.get(
        f"{proxy.url}/slotted/head-of-it", headers=PAGE).headers["content-length"]


def test_a_head_before_any_view_answers_the_start_its_get_would(proxy: Server,
                                                                origin: Server) -> None:
    # A HEAD of a page no view had read yet answered the origin's own start (its length
    # and validators, X-EP-Segment: default), another than its GET's. It is now asked of
    # the origin as its GET, which the rewriter reads (and learns), and answered without
    # the body.
    url = f"{proxy.url}/slotted/head-first-{time.time_ns()}"
    with httpx.Client() as client:
        head = client.head(url, headers=FACEBOOK)   # (its Accept asks for HTML)
        get = client.get(url, headers=FACEBOOK)
    assert head.status_code == 200 and head.content == b"" and HERO in get.content
    for name in ("etag", "last-modified"):
        assert name not in head.headers, name
    # (read whole before its head left, the rewritten page's length is known: the GET's)
    for name in ("content-type", "content-length", "vary", "cache-control", "x-ep-segment"):
        assert head.headers.get_list(name) == get.headers.get_list(name), name
    assert head.headers["x-ep-segment"] != "default"
    # A HEAD that does not ask for HTML (curl -I, a check of an image or an API) is never
    # made a download: asked as a HEAD, it answers the origin's own start.
    path = f"/slotted/head-first-{time.time_ns()}"
    other = httpx.head(f"{proxy.url}{path}", headers={**FACEBOOK, "accept": "*/*"})
    assert other.headers["etag"] == httpx.head(f"{origin.url}{path}").headers["etag"]


def test_an_empty_html_body_comes_through_complete(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/html-edge/a?kind=empty", headers=FACEBOOK, timeout=5)
    assert response.status_code == 200 and response.content == b""


def test_a_partial_response_passes_untouched(proxy: Server, origin: Server) -> None:
    url = "/html-edge/a?kind=partial"
    direct = httpx.get(origin.url + url)
    through = httpx.get(proxy.url + url, headers=FACEBOOK)
    assert through.status_code == 206
    assert through.content == direct.content
    assert through.headers["content-range"] == direct.headers["content-range"]


# A page whose hero is at its top (or, with `at_end`, at its end): 3.4 MB in all.
FILLER = b"<p>Lorem ipsum dolor sit amet.</p>" * 100_000
HELLO = b'<section data-ep-slot="hero"><h1>Hello</h1></section>'
COMPRESS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "br": brotli.compress}


def _page(*, at_end: bool = False) -> bytes:
    parts = [FILLER, HELLO] if at_end else [HELLO, FILLER]
    return b"<html><body>" + b"".join(parts) + b"</body></html>"


def _one_message_site(body: bytes, coding: str, rules: Path) -> PersonalizeMiddleware:
    """The product in front of a site that sends `body` (in `coding`) in one message;
    one rule fills the hero."""
    (rules / "site.yaml").write_text('slots:\n  hero: {}\nrules:\n  - name: all\n'
                                     '    then:\n      hero: {html: "<h1>x</h1>"}\n')

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"content-encoding", coding.encode())]})
        await send({"type": "http.response.body", "body": body})

    return PersonalizeMiddleware(site, rules=rules)


def _view(app: PersonalizeMiddleware) -> tuple[Message, list[bytes]]:
    """One page view through `app` for a client that takes no compression: the response
    start, and the body of each body message."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"host", b"site"), (b"accept", b"text/html"),
                                (b"accept-encoding", b"identity")],
                    "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert [m.get("more_body", False) for m in sent[1:]] == [True] * (len(sent) - 2) + [False]
    return sent[0], [message["body"] for message in sent[1:]]


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_a_page_in_one_small_compressed_message_goes_out_a_piece_at_a_time(
        tmp_path: Path, coding: str) -> None:
    # 3.4 MB of page in a few KB: what each 64 KiB of it makes goes out in a body message
    # of its own, never all of it at once (a client that takes no compression would make
    # the worker hold the whole page).
    app = _one_message_site(COMPRESS[coding](_page()), coding, tmp_path)
    for view in ("first view, its head held for its slots", "a later view"):
        start, bodies = _view(app)
        assert b"".join(bodies) == _page().replace(b"<h1>Hello</h1>", b"<h1>x</h1>"), view
        assert len(bodies) > 20 and max(map(len, bodies)) <= 256 * 1024, view
        headers = dict(start["headers"])
        assert b"content-encoding" not in headers and b"content-length" not in headers


def test_every_body_message_is_bytes(tmp_path: Path) -> None:
    # The server writes a body given as a memoryview a byte at a time (granian: a 100 KB
    # page at ~900 req/s against ~17,000 as bytes): the rest of a long page that passes
    # unchanged after its slot leaves as bytes, on a first view and on later ones (the
    # first bytes remembered).
    app = _one_message_site(_page(), "identity", tmp_path)
    for view in ("first view", "a later view", "first bytes remembered"):
        _, bodies = _view(app)
        assert b"".join(bodies) == _page().replace(b"<h1>Hello</h1>", b"<h1>x</h1>"), view
        assert {type(body) for body in bodies} == {bytes}, view


@pytest.mark.parametrize(("coding", "learned"), [
    ("gzip", False), ("br", False), ("br", True)])
def test_a_fault_of_ours_past_the_first_piece_of_a_message_serves_the_page_as_it_came(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coding: str, learned: bool) -> None:
    # The hero at the end: on a first view the head waits for it; on a later one (the page
    # known to have it), for what the first 64 KiB of page make (two brotli pieces). A
    # fault of ours on the page's second piece (here: while decoding it) comes while nothing
    # is out: the page goes as the origin sent it, once.
    body = COMPRESS[coding](_page(at_end=True))
    app = _one_message_site(body, coding, tmp_path)
    if learned:
        _, bodies = _view(app)
        assert b"<h1>x</h1>" in b"".join(bodies)
    module, factory, method = ((zlib, "decompressobj", "decompress") if coding == "gzip"
                               else (brotli, "Decompressor", "process"))
    decoders = watch(monkeypatch, module, factory, method, fail_at=2)
    start, bodies = _view(app)
    assert decoders.calls == [2]   # the fault came, with the second piece
    assert b"".join(bodies) == body
    assert dict(start["headers"])[b"content-encoding"] == coding.encode()
