"""One conformance table for every origin client behind the seam (ours and an httpx
transport, as uvicorn's tests run over both its protocols): a raw-socket origin answers
the first request with a case's bytes, in one write; the table says what a client of the
proxy may see. The classic response-smuggling set and the misbehaving origins of issue 20.

Outcomes: "ok" (that status and body, the connection pooled or not as `pooled` says),
"refused" (UpstreamError before any response: the head never reaches a client), "broken"
(the head came, the body raises UpstreamError: the proxy closes the client connection).
After every case a second request must get the origin's next answer: no desync.

Where the httpx transport (httpcore and h11) knowingly differs, `differs` says so: it
pools a connection that has bytes after the response ("desync": the next request reads
the smuggled answer, or fails), collapses equal Content-Length values, and unfolds obs-fold
lines. Those rows show why the proxy runs its own client (issue 14).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import httpx
import pytest

from edge_personalizer.errors import UpstreamError
from edge_personalizer.http.client import OriginClient, Upstream, UpstreamResponse
from edge_personalizer.http.httpx_client import HttpxUpstream

from .raw_origin import RawOrigin, first_then_next

pytestmark = pytest.mark.anyio

Outcome = Literal["ok", "refused", "broken", "desync"]
OK = b"HTTP/1.1 200 OK\r\n"


@dataclass(frozen=True)
class Case:
    id: str
    response: bytes
    outcome: Outcome
    status: int = 200
    body: bytes = b""
    method: str = "GET"
    close: bool = False              # the origin closes after writing the case's bytes
    pooled: bool | None = None       # whether the connection may carry the next request
    absent: tuple[bytes, ...] = ()   # header names that must not reach the caller
    differs: dict[str, Outcome] = field(default_factory=dict)   # known, by client


CASES = [
    # Well-formed answers, for contrast.
    Case("content-length", OK + b"Content-Length: 5\r\n\r\nhello", "ok", body=b"hello",
         pooled=True),
    Case("chunked", OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "ok",
         body=b"hello", pooled=True),
    Case("until-close", OK + b"Content-Type: text/plain\r\n\r\nto the end", "ok",
         body=b"to the end", close=True, pooled=False),
    Case("early-hints", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
         + OK + b"Content-Length: 2\r\n\r\nok", "ok", body=b"ok", pooled=True),
    Case("chunk-extension", OK + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
         "ok", body=b"hello", pooled=True),
    # Bytes after the end of a response: answered, never pooled (issue 20, item 1).
    Case("more-after-length", OK + b"Content-Length: 5\r\n\r\nhello"
         + OK + b"Content-Length: 8\r\n\r\nSMUGGLED", "ok", body=b"hello", pooled=False,
         differs={"httpx": "desync"}),
    Case("more-after-204", b"HTTP/1.1 204 No Content\r\n\r\n"
         + OK + b"Set-Cookie: smuggled=1\r\nContent-Length: 0\r\n\r\n", "ok", status=204,
         pooled=False, absent=(b"set-cookie",), differs={"httpx": "desync"}),
    Case("more-after-304", b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\nhello", "ok",
         status=304, pooled=False, differs={"httpx": "desync"}),
    Case("body-after-head", OK + b"Content-Length: 5\r\n\r\nhello", "ok", method="HEAD",
         pooled=False, differs={"httpx": "desync"}),
    Case("more-after-chunked", OK + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
         + OK + b"Set-Cookie: smuggled=1\r\n\r\n", "ok", pooled=False,
         absent=(b"set-cookie",), differs={"httpx": "desync"}),
    Case("trailer-fields", OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
         b"0\r\nSet-Cookie: trailer=1\r\n\r\n", "ok", body=b"hello",
         absent=(b"set-cookie",)),
    # Conflicting or unreadable lengths: never a response (CL.CL, CL.TE, TE.CL, obfuscated TE).
    Case("two-lengths", OK + b"Content-Length: 5\r\nContent-Length: 8\r\n\r\nhelloSMUG",
         "refused"),
    Case("two-equal-lengths", OK + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
         "refused", differs={"httpx": "ok"}),   # h11 collapses equal values into one
    Case("length-list", OK + b"Content-Length: 5, 5\r\n\r\nhello", "refused",
         differs={"httpx": "ok"}),
    Case("length-and-chunked", OK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n", "refused"),
    Case("chunked-and-length", OK + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n", "refused"),
    Case("negative-length", OK + b"Content-Length: -1\r\n\r\n", "refused"),
    Case("signed-length", OK + b"Content-Length: +5\r\n\r\nhello", "refused"),
    Case("space-before-colon", OK + b"Transfer-Encoding : chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n", "refused"),
    Case("xchunked", OK + b"Transfer-Encoding: xchunked\r\n\r\nhello", "refused", close=True),
    Case("chunked-gzip", OK + b"Transfer-Encoding: chunked, gzip\r\n\r\nhello", "refused",
         close=True),
    Case("identity-coding", OK + b"Transfer-Encoding: identity\r\n\r\nhello", "refused",
         close=True),
    Case("two-chunked", OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n", "refused"),
    Case("folded-header", OK + b"X-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", "refused",
         differs={"httpx": "ok"}),   # h11 unfolds obs-fold lines; llhttp refuses them
    Case("nul-in-value", OK + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n", "refused"),
    Case("no-colon", OK + b"X-A\r\nContent-Length: 0\r\n\r\n", "refused"),
    Case("bad-status", b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", "refused"),
    # Heads the server could not send on: no status under 100, no name of 70,000 bytes
    # (either took a worker down), no switch of protocols nobody asked for.
    Case("status-000", b"HTTP/1.1 000 Weird\r\nContent-Length: 0\r\n\r\n", "refused"),
    Case("status-099", b"HTTP/1.1 099 Weird\r\nContent-Length: 0\r\n\r\n", "refused"),
    Case("huge-name", OK + b"X-" + b"n" * 70_000 + b": 1\r\nContent-Length: 0\r\n\r\n",
         "refused"),
    Case("unasked-upgrade", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         b"Connection: Upgrade\r\n\r\n", "refused", close=True),
    Case("not-http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "refused", close=True),
    Case("bare-lf-head", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "refused",
         differs={"httpx": "ok"}),   # h11 takes a bare LF for a line end
    Case("huge-head", OK + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n", "refused"),
    # Bodies that break off or cannot be framed.
    Case("short-length", OK + b"Content-Length: 100\r\n\r\nonly some", "broken", close=True),
    Case("cut-chunked", OK + b"Transfer-Encoding: chunked\r\n\r\n10\r\nonly", "broken",
         close=True),
    Case("bad-chunk-size", OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
         "broken"),
    Case("chunk-size-overflow", OK + b"Transfer-Encoding: chunked\r\n\r\n"
         b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", "broken"),
    Case("bare-lf-chunk", OK + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
         "broken"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["own", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[OriginClient]:
    """Every case runs against both clients behind the seam."""
    implementation: OriginClient
    if request.param == "own":
        implementation = Upstream(connect_timeout=1, read_timeout=1)
    else:
        implementation = HttpxUpstream(connect_timeout=1, read_timeout=1,
                                       transport=httpx.AsyncHTTPTransport())
    yield implementation
    await implementation.aclose()


def name_of(client: OriginClient) -> str:
    return "own" if isinstance(client, Upstream) else "httpx"


async def read(response: UpstreamResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.body()])
    finally:
        await response.aclose()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_origin_answer(client: OriginClient, case: Case) -> None:
    origin = RawOrigin(first_then_next(case.response, close=case.close))
    async with origin as url:
        outcome = case.differs.get(name_of(client), case.outcome)
        if outcome == "desync":
            await desync(client, url, case)
            return
        if outcome == "refused":
            with pytest.raises(UpstreamError):
                await client.send(case.method, url + "/", [(b"host", b"o")], b"")
        else:
            response = await client.send(case.method, url + "/", [(b"host", b"o")], b"")
            assert response.status == case.status
            names = [name.lower() for name, _ in response.headers]
            assert not set(case.absent) & set(names)
            assert names.count(b"content-length") <= 1
            if outcome == "broken":
                with pytest.raises(UpstreamError):
                    await read(response)
            elif case.differs.get(name_of(client)) is None:
                assert await read(response) == case.body
            else:
                await read(response)
        # The next request gets the next answer, on the same connection only if allowed.
        response = await client.send("GET", url + "/next", [(b"host", b"o")], b"")
        assert (response.status, await read(response)) == (200, b"next")
    if case.pooled is not None and outcome == "ok":
        assert origin.connections == (1 if case.pooled else 2)


async def desync(client: OriginClient, url: str, case: Case) -> None:
    """The first answer looks right; the connection is pooled with the bytes after it,
    and the next request gets them instead of its own answer (or fails on them)."""
    response = await client.send(case.method, url + "/", [(b"host", b"o")], b"")
    assert response.status == case.status
    await read(response)
    try:
        response = await client.send("GET", url + "/next", [(b"host", b"o")], b"")
        answer = (response.status, await read(response))
    except UpstreamError:
        return
    assert answer != (200, b"next")
