"""Random request bytes against the real server (granian and the app), for a bounded time
(hypothesis): the client side's counterpart of test_fuzz.py.

Each example writes mostly-HTTP bytes (request lines, framing headers and chunked bodies
from the smuggling corners, sometimes a byte changed, sometimes noise) on a connection of
its own, in front of an origin that records what reaches it. Whatever the bytes: no 5xx of
the proxy's own making (501 aside: an unknown transfer coding), no request reaches the origin
with framing a careful origin would refuse or with trailer fields, no origin request is left
waiting once the client has gone, a plain request on a new connection then gets its own
answer, and the worker's memory stays bounded over the whole run.
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..servers import Server
from .raw_client import RawClient, RecordingOrigin, rss_kib, worker_pid

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))   # more: FUZZ_EXAMPLES=5000
BUDGET_SECONDS = 20.0 * max(1, EXAMPLES // 150)

METHODS = st.sampled_from([b"GET"] * 4 + [b"POST"] * 4 + [
    b"HEAD", b"OPTIONS", b"PUT", b"TRACE", b"CONNECT", b"get", b"G ET", b"", b"PRI"])
TARGETS = st.sampled_from([b"/", b"/a?b=1"] * 6 + [
    b"*", b"http://evil.example/x", b"x:443", b"/%2e%2e/etc", b"//x", b"/a b", b"/\x01",
    b"/" + b"a" * 5000, b"/__ep/health/live", b"/__ep/beacon", b""])
VERSIONS = st.sampled_from([b"HTTP/1.1"] * 12 + [
    b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"http/1.1", b""])
HOSTS = st.sampled_from([b"Host: x"] * 12 + [
    b"Host: ", b"Host: a\r\nHost: b", b"X-No-Host: 1", b"Host: evil.example/path"])
PAYLOADS = st.sampled_from([b"", b"hello", b"x" * 5000]) | st.binary(max_size=30)
# Framing headers and bodies that disagree with them.
ODD_FRAMING = st.sampled_from([
    b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: 5, 5", b"Content-Length: -1",
    b"Content-Length: +5", b"Content-Length: 99999999999999999999", b"Content-Length: 2000000",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: xchunked",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked\t",
    b"Transfer-Encoding : chunked", b"Transfer-Encoding:\r\n chunked",
    b"Expect: 100-continue",
])
ODD_BODIES = st.sampled_from([
    b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n",
    b"zz\r\nhello\r\n0\r\n\r\n", b"5\nhello\n0\n\n",
    b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n", b"5\r\nhello\r\n", b"3\r\nabcdef\r\n0\r\n\r\n",
]) | st.binary(max_size=30)
TRAILERS = st.sampled_from([b"", b"", b"X-Original-URL: /admin\r\nAuthorization: Basic eA==\r\n"])
EXTRA = st.sampled_from([b"Accept: text/html", b"Cookie: a=1", b"User-Agent: fuzz"] * 3 + [
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQ",
    b"Upgrade: websocket", b"X-A: a\x00b", b"X-B", b" folded", b"X-Big: " + b"a" * 5000,
    b"Expect: 100-continue",
])
AFTER = st.sampled_from([
    b"", b"", b"", b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"\r\n", b"garbage",
])
LINE_ENDS = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r"])


def chunked(payload: bytes, pieces: int, trailers: bytes) -> bytes:
    size = max(1, len(payload) // max(1, pieces))
    parts = [payload[i:i + size] for i in range(0, len(payload), size)]
    return (b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailers
            + b"\r\n")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Mostly well-formed requests (a Host, a body framed one way), with odd framing,
    heads and targets mixed in and maybe a pipelined request after; sometimes a byte of
    it changed; sometimes noise."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(min_size=1, max_size=300))
    end = draw(LINE_ENDS)
    line = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS)
    headers = [draw(HOSTS)]
    payload = draw(PAYLOADS)
    framing = draw(st.sampled_from(["none", "length", "chunked", "odd"]))
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(payload))
        body = payload
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        body = chunked(payload, draw(st.integers(1, 4)), draw(TRAILERS))
        # Chunking that breaks after the request started: sizes, line ends, a cut.
        old, new = draw(st.sampled_from([(b"", b"")] * 3 + [
            (b"\r\n", b"\n"), (b"0\r\n", b"zz\r\n"), (b"0\r\n", b"fffffffffffffffffff\r\n"),
            (b"\r\n0\r\n", b"XX0\r\n"), (b"0\r\n", b"0x0\r\n")]))
        if old:
            body = body.replace(old, new, 1) if old in body else body[:-3]
    elif framing == "odd":
        headers += draw(st.lists(ODD_FRAMING, min_size=1, max_size=2))
        body = draw(ODD_BODIES)
    else:
        body = b""
    headers += draw(st.lists(EXTRA, max_size=2))
    if draw(st.integers(0, 3)):
        headers.append(b"Connection: close")   # most examples end without a wait
    data = (line + end + b"".join(h + end for h in draw(st.permutations(headers))) + end
            + body + draw(AFTER))
    if kind == 1:   # one byte changed
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data


def exchange(port: int, data: bytes) -> list[int]:
    """The statuses of the answers to `data` (until the server closes, or is quiet for a
    moment)."""
    statuses: list[int] = []
    with RawClient(port) as client:
        sent = client.send(data)
        while (answer := client.answer(timeout=0.3, to_head=data.startswith(b"HEAD ")
                                       and not statuses)) is not None:
            statuses.append(answer.status)
            if not sent:
                break
    return statuses


def test_random_requests_never_break_the_server_desync_or_grow(
        recorded_server: Server, recording: RecordingOrigin) -> None:
    pid = worker_pid(recorded_server.log())
    port = recorded_server.port
    exchange(port, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    before = rss_kib(pid)
    started = time.monotonic()
    done = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=requests())
    def one(data: bytes) -> None:
        nonlocal done
        if time.monotonic() - started > BUDGET_SECONDS:
            return   # the time is spent: the remaining examples pass through
        recording.seen.clear()
        statuses = exchange(port, data)
        assert all(status < 500 or status == 501 for status in statuses), (statuses, data)
        seen = recording.settled(timeout=3)   # none left waiting for a body
        assert not [(s.summary, s.ambiguous) for s in seen if s.ambiguous], data
        assert not [s.trailers for s in seen if s.trailers], data
        with RawClient(port) as client:
            client.send(b"GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = client.answer()
        assert answer is not None and (answer.status, answer.body) == (200, b"ok"), data
        done += 1

    one()
    after = rss_kib(pid)
    print("fuzz", done, before, after, time.monotonic() - started)
    assert done >= min(EXAMPLES, 40), done   # enough of them ran within the budget
    assert after - before < 32 * 1024, (before, after)
    assert time.monotonic() - started < BUDGET_SECONDS + 15
