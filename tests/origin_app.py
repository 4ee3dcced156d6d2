"""A real origin for the proxy tests: run with `python -m tests.origin_app PORT`.

Each endpoint exercises one thing a reverse proxy must get right.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import html
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

FILES = Path(__file__).parent / "data" / "origin_files"
# Cache controls CDNs and proxies obey over Cache-Control (an origin's, for /account/?cdn=1)
CDN_CONTROLS = ("surrogate-control", "cdn-cache-control", "cloudflare-cdn-cache-control",
                "x-accel-expires")


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 256   # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({
        "method": request.method,
        "raw_path": request.scope["raw_path"].decode("latin-1"),
        "query": request.scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
        "body_length": len(body),
    })


async def upload(request: Request) -> Response:
    digest = hashlib.sha256()
    total = 0
    async for chunk in request.stream():
        digest.update(chunk)
        total += len(chunk)
    return JSONResponse({"received": total, "sha256": digest.hexdigest()})


async def download(request: Request) -> Response:
    size = int(request.query_params.get("size", "1048576"))

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        block = pattern(65536)
        while sent < size:
            piece = block[: min(65536, size - sent)]
            sent += len(piece)
            yield piece

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"content-length": str(size)})


async def slow_body(request: Request) -> Response:
    delay = float(request.query_params.get("delay", "2"))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first-chunk\n"
        await asyncio.sleep(delay)
        yield b"rest\n"

    return StreamingResponse(chunks(), media_type="text/plain")


async def slow_headers(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("delay", "2")))
    return Response("late\n", media_type="text/plain")


async def cookies(request: Request) -> Response:
    response = Response("cookies\n", media_type="text/plain")
    response.set_cookie("a", "1", path="/")
    response.set_cookie("b", "2", httponly=True)
    response.set_cookie("c", "3", samesite="strict")
    return response


async def redirect(request: Request) -> Response:
    """A redirect to /target; ?html=1: with a small HTML body, as Django and Rails send."""
    own = f"http://{request.headers['host']}"
    headers = {"location": f"{own}/target?x=1", "content-location": f"{own}/content"}
    if request.query_params.get("html"):
        return Response('<a href="/target?x=1">moved</a>', status_code=302,
                        media_type="text/html", headers=headers)
    return Response(status_code=302, headers=headers)


async def foreign_redirect(request: Request) -> Response:
    return Response(status_code=301, headers={"location": "https://elsewhere.example/page"})


async def compressed(request: Request) -> Response:
    body = gzip.compress(b"hello compressed world\n" * 100, mtime=0)
    return Response(body, headers={"content-encoding": "gzip", "content-type": "text/plain",
                                   "vary": "Accept-Encoding"})


async def chunked(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"part {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def reset(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise ConnectionResetError("origin fell over mid-body")

    return StreamingResponse(chunks(), media_type="text/plain",
                             headers={"content-length": "100000"})


async def hop_headers(request: Request) -> Response:
    return Response("hop\n", media_type="text/plain", headers={
        "connection": "x-private, keep-alive",
        "x-private": "secret",
        "keep-alive": "timeout=5",
        "proxy-authenticate": "Basic",
        "x-kept": "yes",
    })


async def page(request: Request) -> Response:
    """A plain page; ?goal= sends that as the X-EP-Goal header (the origin reports a
    conversion)."""
    body = f"<!doctype html><title>{request.url.path}</title><p>page</p>"
    headers = {"cache-control": "public, max-age=60, s-maxage=300"}
    if request.query_params.get("goal"):
        headers["x-ep-goal"] = request.query_params["goal"]
    return Response(body, media_type="text/html", headers=headers)


SLOTTED = ('<!doctype html><html><head><meta charset="{cs}"><title>slotted</title></head>'
           '<body><header>Привет {ae}</header><div data-ep-slot="banner"></div>'
           '<section data-ep-slot="hero"><h1>Default hero</h1></section>'
           '<main>{filler}</main></body></html>')


async def slotted(request: Request) -> Response:
    """A page with slots; ?cs= its charset, ?gz=1 always gzip (even if asked for identity),
    ?gz=asked gzip when the request accepts it, ?slow=1 the body in two parts a second
    apart, ?cut=1 its first 2,000 bytes and then the connection reset, ?csp=1 a CSP nonce,
    ?long=1 ~100 KB, ?session=1 a session cookie, ?ours=1 the X-EP- headers
    edge-personalizer writes, ?vary= sent as Vary (the page printing the request headers
    it names), ?netlify_vary= sent as Netlify-Vary, ?tags= the origin's own purge tags
    (space-separated) in each dialect,
    ?validate=1 a 304 to If-None-Match: "v1" and a 206 to a Range of bytes=A-B."""
    charset = request.query_params.get("cs", "utf-8")
    accept_encoding = request.headers.get("accept-encoding", "-")
    vary = request.query_params.get("vary", "")
    named = [name.strip() for name in vary.split(",") if name.strip()]
    varied = "".join(f"<p>{html.escape(f'{name}: ' + request.headers.get(name, ''))}</p>"
                     for name in named)
    text = SLOTTED.format(cs=charset, ae=accept_encoding,
                          filler=varied + "<p>Lorem ipsum dolor sit amet.</p>"
                          * (3000 if request.query_params.get("long") else 300))
    body = text.encode(charset, "xmlcharrefreplace")
    headers = {"etag": '"v1"', "content-md5": "x", "cache-control": "public, max-age=60"}
    if vary:
        headers["vary"] = vary
    if request.query_params.get("netlify_vary"):
        headers["netlify-vary"] = request.query_params["netlify_vary"]
    if request.query_params.get("tags"):
        tags = request.query_params["tags"].split()
        headers |= {"surrogate-key": " ".join(tags), "cache-tag": ",".join(tags),
                    "edge-cache-tag": ",".join(tags)}
    if request.query_params.get("csp"):
        headers["content-security-policy"] = "script-src 'nonce-abc123'"
    if request.query_params.get("session"):
        headers["set-cookie"] = "sessionid=s3cr3t; Path=/; HttpOnly"
    if request.query_params.get("ours"):
        headers.update({"x-ep-segment": "s-origin", "x-ep-variant": "hero=origin",
                        "x-ep-trace": "{}"})
    media = f"text/html; charset={charset}"
    if request.query_params.get("validate"):
        if request.headers.get("if-none-match") == '"v1"':
            return Response(status_code=304, headers=headers)
        if (ranged := re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))):
            first, last = int(ranged[1]), min(int(ranged[2]), len(body) - 1)
            return Response(body[first:last + 1], status_code=206, media_type=media,
                            headers={**headers,
                                     "content-range": f"bytes {first}-{last}/{len(body)}"})
    gz = request.query_params.get("gz")
    if gz == "1" or gz == "asked" and "gzip" in accept_encoding:
        headers["content-encoding"] = "gzip"
        body = gzip.compress(body)
    if request.query_params.get("cut"):
        async def cut_short() -> AsyncIterator[bytes]:
            yield body[:2000]
            await asyncio.sleep(0.2)
            raise ConnectionResetError("the origin fell over mid-page")
        return StreamingResponse(cut_short(), media_type=media, headers=headers)
    if request.query_params.get("slow"):
        async def parts() -> AsyncIterator[bytes]:
            yield body[:2000]
            await asyncio.sleep(1.0)
            yield body[2000:]
        return StreamingResponse(parts(), media_type=media, headers=headers)
    return Response(body, media_type=media, headers=headers)


async def account(request: Request) -> Response:
    """A page made for whoever asks: it prints their `sid` cookie and the Authorization it
    got; under /secret/ it needs Basic auth (401 without). No caching headers unless asked:
    ?cc= is sent as Cache-Control, ?expires=N as an Expires N seconds from now; ?cdn=1 adds
    a CDN's own cache controls (an hour each), Last-Modified and Accept-Ranges; each
    ?header=Name:value is sent as it is."""
    authorization = request.headers.get("authorization", "")
    if request.url.path.startswith("/secret/") and not authorization.startswith("Basic "):
        return Response("who are you?\n", status_code=401, media_type="text/plain",
                        headers={"www-authenticate": 'Basic realm="secret"'})
    sid = html.escape(request.cookies.get("sid", "none"))
    body = (f'<!doctype html><title>account</title><section data-ep-slot="hero">'
            f"<h1>Default hero</h1></section><p>sid={sid}</p>"
            f"<p>auth={html.escape(authorization)}</p>")
    headers = {}
    if request.query_params.get("cc"):
        headers["cache-control"] = request.query_params["cc"]
    if request.query_params.get("expires"):
        headers["expires"] = formatdate(time.time() + int(request.query_params["expires"]),
                                        usegmt=True)
    if request.query_params.get("cdn"):
        headers |= {name: "max-age=3600" for name in CDN_CONTROLS}
        headers |= {"last-modified": "Tue, 01 Dec 2026 10:00:00 GMT", "accept-ranges": "bytes"}
    for header in request.query_params.getlist("header"):
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(body, media_type="text/html", headers=headers)


async def html_edge(request: Request) -> Response:
    """Pages at the edges of HTTP: ?kind=empty (text/html, Content-Length: 0), ?kind=partial
    (206 with a Content-Range), else the slotted page's first bytes."""
    kind = request.query_params.get("kind", "")
    if kind == "empty":
        return Response(b"", media_type="text/html")
    body = SLOTTED.format(cs="utf-8", ae="-", filler="<p>x</p>" * 50).encode()
    if kind == "partial":
        part = body[:400]
        return Response(part, status_code=206, media_type="text/html",
                        headers={"content-range": f"bytes 0-399/{len(body)}"})
    return Response(body, media_type="text/html")


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    if code in (204, 304) or code < 200:
        return Response(status_code=code)   # these carry no body (RFC 9110 6.4.1)
    return Response(f"status {code}\n", media_type="text/plain", status_code=code)


async def ws_echo(websocket: WebSocket) -> None:
    protocols = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=protocols[0] if protocols else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                if message["text"] == "close-please":
                    await websocket.close(code=4001, reason="asked to")
                    return
                if message["text"] == "whoami":
                    await websocket.send_text(json.dumps(dict(websocket.headers)))
                    continue
                if message["text"].startswith("bytes:"):   # bytes:N: one message of N bytes
                    await websocket.send_bytes(b"x" * int(message["text"][6:]))
                    continue
                await websocket.send_text("echo:" + message["text"])
            else:
                await websocket.send_bytes(b"echo:" + message["bytes"])
    except WebSocketDisconnect:
        return


async def ws_push(websocket: WebSocket) -> None:
    await websocket.accept()
    for i in range(3):
        await websocket.send_text(f"push {i}")
    await websocket.close(code=1000)


def create_origin() -> Starlette:
    return Starlette(routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        Route("/upload", upload, methods=["POST", "PUT"]),
        Route("/download", download, methods=["GET", "HEAD"]),
        Route("/slow-body", slow_body),
        Route("/slow-headers", slow_headers, methods=["GET", "HEAD", "POST"]),
        Route("/cookies", cookies),
        Route("/redirect", redirect),
        Route("/foreign-redirect", foreign_redirect),
        Route("/compressed", compressed),
        Route("/chunked", chunked),
        Route("/reset", reset),
        Route("/hop", hop_headers),
        Route("/status/{code:int}", status),
        Route("/html-edge/{rest:path}", html_edge, methods=["GET", "HEAD"]),
        Route("/page/{rest:path}", page),
        Route("/slotted/{rest:path}", slotted),
        Route("/account/{rest:path}", account),
        Route("/secret/{rest:path}", account),
        WebSocketRoute("/ws/echo", ws_echo),
        WebSocketRoute("/ws/push", ws_push),
        Mount("/files", StaticFiles(directory=FILES)),
    ])


if __name__ == "__main__":
    uvicorn.run(create_origin(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                ws="websockets-sansio")
