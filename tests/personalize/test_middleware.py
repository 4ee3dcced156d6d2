"""PersonalizeMiddleware around any ASGI app (the README's Starlette example)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import socket
from pathlib import Path

import httpx
import lolhtml
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_personalizer import PersonalizeMiddleware
from edge_personalizer.rules.model import Decision

from ..conftest import ADMIN_TOKEN
from ..faults import watch
from ..http.raw_origin import Handler, ThreadedOrigin, request_head
from ..servers import start_proxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://site")

ROOT = Path(__file__).resolve().parents[2]
PAGE = '<html><body><section data-ep-slot="hero"><h1>Hello</h1></section></body></html>'


async def home(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"x-site": "mine"})


async def test_starlette_site_wrapped_by_the_middleware_serves_its_pages() -> None:
    site = Starlette(routes=[Route("/", home)])
    app = PersonalizeMiddleware(site, rules=ROOT / "rules")
    async with client_for(app) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.text == PAGE
    assert response.headers["x-site"] == "mine"
    assert app.rules is not None and len(app.rules.current.rules) >= 5


async def test_a_fault_in_the_rewriter_serves_the_page_unchanged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = Starlette(routes=[Route("/", home)])
    app = PersonalizeMiddleware(site, rules=ROOT / "rules")
    rewriters = watch(monkeypatch, lolhtml, "HTMLRewriter", "write", fail_at=1)
    async with client_for(app) as client:
        response = await client.get("/", headers={"referer": "https://www.facebook.com/",
                                                  "accept": "text/html"})
    assert rewriters.calls == [1]   # the fault came
    assert response.status_code == 200
    assert response.text == PAGE
    assert response.headers["x-site"] == "mine"
    assert "x-ep-variant" not in response.headers


class FailsTiming:
    """An observer that fails where a rewritten page's start is finished (the time
    personalization took) once armed, noting the stages that failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.armed = False

    def personalization_took(self, seconds: float) -> None:
        if self.armed:
            self.armed = False
            raise ValueError("a bug")

    def stage_failed(self, stage: str) -> None:
        self.failed.append(stage)

    def origin_failed(self, kind: str) -> None:
        pass

    def decided(self, decision: Decision) -> None:
        pass

    def bot_seen(self, category: str) -> None:
        pass


async def test_a_fault_while_the_rewritten_pages_start_is_made_serves_it_unchanged() -> None:
    # The first view of a path is held while its slots are looked for; later views start
    # as soon as the rewriter has decided: a fault of ours in either start is contained.
    observer = FailsTiming()
    site = Starlette(routes=[Route("/", home)])
    app = PersonalizeMiddleware(site, rules=ROOT / "rules", variant_header=True,
                                observer=observer)
    async with client_for(app) as client:
        for view in ("held first view", "later view"):
            observer.armed = True
            response = await client.get("/", headers={"referer": "https://www.facebook.com/",
                                                      "accept": "text/html"})
            assert (view, response.status_code, response.text) == (view, 200, PAGE)
            assert response.headers["x-site"] == "mine"
            assert "x-ep-variant" not in response.headers
    assert observer.failed == ["headers", "headers"]


async def test_each_response_gets_its_own_csp_nonce_for_the_same_decision(
        tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(
        "rules:\n  - name: inject\n    then:\n"
        "      head: {html: \"<script>ep()</script>\"}\n")

    async def page(request: Request) -> HTMLResponse:
        nonce = request.query_params["nonce"]
        return HTMLResponse("<html><head></head><body></body></html>",
                            headers={"content-security-policy": f"script-src 'nonce-{nonce}'"})

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), rules=tmp_path)
    async with client_for(app) as client:
        for nonce in ("first", "second", "first", ""):
            query = f"?nonce={nonce}" if nonce else "?nonce="
            response = await client.get("/" + query, headers={"accept": "text/html"})
            expected = (f'<script nonce="{nonce}">ep()</script>' if nonce
                        else "<script>ep()</script>")
            assert expected in response.text, response.text


async def test_a_site_s_header_names_are_read_whatever_their_case(tmp_path: Path) -> None:
    # Django's handler writes `Content-Type` and `Set-Cookie`; the checks past the edges
    # compare lower-case names, so the middleware lower-cases a site app's.
    (tmp_path / "site.yaml").write_text(
        "slots:\n  hero: {}\nrules:\n  - name: all\n    then:\n"
        "      hero: {html: \"<h1>x</h1>\"}\n")

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"Content-Type", b"text/html; charset=utf-8"),
            (b"Cache-Control", b"public, max-age=60"), (b"X-EP-Goal", b"signup")]})
        await send({"type": "http.response.body", "body": PAGE.encode()})

    app = PersonalizeMiddleware(site, rules=tmp_path)
    async with client_for(app) as client:
        response = await client.get("/", headers={"accept": "text/html"})
    assert "<h1>x</h1>" in response.text
    assert response.headers.get_list("cache-control") == ["private, max-age=60"]
    assert "x-ep-goal" not in response.headers


async def test_the_x_ep_headers_are_ours_both_ways_with_a_site_app(tmp_path: Path) -> None:
    # As with an origin: the site app got the visitor's X-EP-Debug (the admin token), and
    # its own X-EP-Segment stood beside ours.
    (tmp_path / "site.yaml").write_text(
        "slots:\n  hero: {}\nrules:\n  - name: all\n    then:\n"
        "      hero: {html: \"<h1>x</h1>\"}\n")
    seen: list[list[tuple[bytes, bytes]]] = []

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/html; charset=utf-8"), (b"X-EP-Segment", b"s-site"),
            (b"x-ep-variant", b"hero=site"), (b"x-ep-goal", b"signup")]})
        await send({"type": "http.response.body", "body": PAGE.encode()})

    async with client_for(PersonalizeMiddleware(site, rules=tmp_path)) as client:
        response = await client.get("/", headers={"accept": "text/html",
                                                  "x-ep-debug": "a-token"})
    assert "<h1>x</h1>" in response.text
    (segment,) = response.headers.get_list("x-ep-segment")
    assert segment != "s-site" and "site" not in response.headers.get("x-ep-variant", "")
    assert not [name for name, _ in seen[0] if name == b"x-ep-debug"]


async def test_a_site_s_response_without_headers_is_served(tmp_path: Path) -> None:
    # ASGI lets a response start without "headers" (none, then).
    (tmp_path / "site.yaml").write_text("slots:\n  hero: {}\nrules: []\n")

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"plain"})

    async with client_for(PersonalizeMiddleware(site, rules=tmp_path)) as client:
        response = await client.get("/", headers={"accept": "text/html"})
    assert (response.status_code, response.text) == (200, "plain")


@pytest.mark.parametrize(("origin", "rule", "expected"), [
    (None, None, "private"),
    ("public, max-age=60, s-maxage=300", None, "private, max-age=60"),
    (None, "public, max-age=600", "private, max-age=600"),
    ("no-cache", "public, max-age=600", "private, no-cache, max-age=600"),
])
async def test_personalizable_pages_are_private_whatever_their_cache_control(
        tmp_path: Path, origin: str | None, rule: str | None, expected: str) -> None:
    then = "      hero: {html: \"<h1>x</h1>\"}\n"
    if rule:
        then += f"      headers: {{Cache-Control: \"{rule}\"}}\n"
    (tmp_path / "site.yaml").write_text(
        f"slots:\n  hero: {{}}\nrules:\n  - name: all\n    then:\n{then}")

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"cache-control": origin} if origin else {})

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), rules=tmp_path)
    async with client_for(app) as client:
        response = await client.get("/", headers={"accept": "text/html"})
    assert response.headers.get_list("cache-control") == [expected]
    assert "<h1>x</h1>" in response.text


CUT_OFF = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"20\r\n<html><body><p>cut off here")   # no charset: the head waits for more


async def cut_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError):
        await request_head(reader)
        writer.write(CUT_OFF)
        await writer.drain()
    writer.close()


def get(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
                     b"Connection: close\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def through_proxy(origin: Handler, logs: Path, *targets: bytes) -> list[bytes]:
    """What a client got for each of `targets` from the product (the test rules) in front
    of the raw-socket `origin`."""
    with ThreadedOrigin(origin) as url:
        proxy = start_proxy(logs, "--origin", url, "--rules", str(ROOT / "tests" / "data" /
                                                                    "rules"))
        try:
            return [get(proxy.port, target) for target in targets]
        finally:
            proxy.stop()


async def test_a_page_the_origin_cuts_off_before_its_head_left_is_a_502(
        server_logs: Path) -> None:
    rewritten, passed = through_proxy(cut_off, server_logs, b"/page?inject=1", b"/page")
    # Rewritten: the head was still held back when the origin broke off (nginx: 502).
    assert rewritten.startswith(b"HTTP/1.1 502 ")
    assert b"cut off here" not in rewritten
    # Passed through: the head had left; the answer ends without its last chunk (the
    # connection closes), never looking complete.
    assert passed.startswith(b"HTTP/1.1 200 ")
    assert passed.endswith(b"cut off here\r\n") and not passed.endswith(b"0\r\n\r\n")


DAMAGED = gzip.compress(b"<html><head></head><body>" + b"x" * 3000 + b"</body></html>")[:-10]


async def damaged_gzip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # An origin that compresses although it was asked for identity, and whose page lost
    # its last bytes: the whole (damaged) page arrives in one piece.
    with contextlib.suppress(asyncio.IncompleteReadError):
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                     b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%b"
                     % (len(DAMAGED), DAMAGED))
        await writer.drain()
    writer.close()


async def test_a_damaged_compressed_page_that_was_to_be_rewritten_is_a_502(
        server_logs: Path) -> None:
    # The origin's fault, counted and logged as the origin's: it was an error of the
    # rewriter's ("failed mid-page; closing", with its traceback, nothing being out).
    with ThreadedOrigin(damaged_gzip) as url:
        proxy = start_proxy(server_logs, "--origin", url, "--rules",
                            str(ROOT / "tests" / "data" / "rules"),
                            env={"EP_ADMIN_TOKEN": ADMIN_TOKEN})
        try:
            assert get(proxy.port, b"/page?inject=1").startswith(b"HTTP/1.1 502 ")
            metrics = httpx.get(proxy.url + "/__ep/metrics", headers={
                "authorization": f"Bearer {ADMIN_TOKEN}"}).text
            assert 'ep_origin_errors_total{kind="encoding"} 1.0' in metrics
            assert 'ep_errors_total{stage="rewrite"}' not in metrics
            assert "/page cannot be decompressed" in proxy.log()
            assert "answering 502" in proxy.log() and "Traceback" not in proxy.log()
        finally:
            proxy.stop()


async def test_a_page_cut_off_mid_slot_lets_go_of_the_rewriters_parser(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # lol-html's parser may only be freed on the thread that made it: a page that breaks
    # off while a slot is being read lets go of its parser there (the garbage collector,
    # kept off here, would free it on whichever thread it runs on).
    async def breaks_off(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "more_body": True,
                    "body": b'<html><body><section data-ep-slot="hero"><h1>Hel'})
        raise ConnectionResetError("the site's server went away")

    app = PersonalizeMiddleware(breaks_off, rules=ROOT / "rules")
    rewriters = watch(monkeypatch, lolhtml, "HTMLRewriter", "write")
    gc.disable()
    try:
        async with client_for(app) as client:
            with pytest.raises(ConnectionResetError):
                await client.get("/", headers={"referer": "https://www.facebook.com/",
                                               "accept": "text/html"})
        assert rewriters.calls == [1] and rewriters.freed == [0]   # read the slot, let go
    finally:
        gc.enable()


async def test_a_personalized_page_leaves_nothing_for_the_garbage_collector(
        tmp_path: Path) -> None:
    # A request's objects (its exchange, visitor, rewriter) go when it ends: in a reference
    # cycle they would wait for the garbage collector, whose passes every request then pays.
    (tmp_path / "site.yaml").write_text(
        'slots:\n  hero: {}\nrules:\n  - name: all\n    then:\n      hero: {html: "<h1>x</h1>"}\n')

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": PAGE.encode()})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"host", b"site"), (b"accept", b"text/html")],
                    "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    app = PersonalizeMiddleware(site, rules=tmp_path)
    await app(scope, receive, send)   # (what the first request builds stays)
    gc.collect()
    gc.disable()
    try:
        await app(scope, receive, send)
        assert b"<h1>x</h1>" in sent[-1]["body"]
        sent.clear()
        assert gc.collect() == 0
    finally:
        gc.enable()
