"""The proxy's own answers, as an ASGI server would send them on (through the real server:
tests/http/test_server_conformance.py and tests/proxy/test_origin.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Message, Scope

from edge_personalizer.errors import (
    RequestRejected,
    UpstreamBusy,
    UpstreamError,
    UpstreamInvalid,
    UpstreamRefused,
    UpstreamTimeout,
)
from edge_personalizer.proxy.refusals import (
    closing,
    origin_failed,
    refuse_request,
    refuse_websocket,
    request_failed,
)
from edge_personalizer.proxy.request_body import RequestBody

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SCOPE: Scope = {"type": "http", "method": "POST", "path": "/a", "headers": []}


class Sent:
    """What the proxy sent; what it reported (the ProxyObserver)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.failed: list[str] = []
        self.busy: list[str] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    def origin_responded(self, seconds: float) -> None:
        pass

    def origin_failed(self, kind: str) -> None:
        self.failed.append(kind)

    def origin_busy(self, reason: str) -> None:
        self.busy.append(reason)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.messages[0]["headers"] if key == name]


async def test_closing_ends_the_connection_with_the_answer() -> None:
    sent = Sent()
    await closing(sent.send)({"type": "http.response.start", "status": 400, "headers": []})
    await closing(sent.send)({"type": "http.response.body", "body": b""})
    assert sent.header(b"connection") == [b"close"]
    assert sent.messages[1] == {"type": "http.response.body", "body": b""}


@pytest.mark.parametrize(("status", "closes"), [(400, True), (431, True), (405, False)])
async def test_a_refused_head_closes_only_where_its_framing_may_be_in_doubt(
        status: int, closes: bool) -> None:
    sent = Sent()
    await refuse_request(RequestRejected("no", status=status), SCOPE, sent.send)
    assert sent.status == status
    assert sent.header(b"connection") == ([b"close"] if closes else [])


async def test_a_body_refused_half_way_is_answered_with_its_own_status_and_closes() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"x" * 20, "more_body": True}

    body = RequestBody(receive, limit=10)
    with pytest.raises(RequestRejected) as raised:
        [chunk async for chunk in body.stream()]
    sent = Sent()
    # (the HTTP client may have wrapped the body's error: the body's own refusal wins)
    await request_failed(UpstreamError("wrapped"), body, SCOPE, sent.send, sent)
    assert raised.value.status == 413
    assert sent.status == 413 and sent.header(b"connection") == [b"close"]
    assert sent.failed == []


async def test_a_body_the_server_ended_is_400_and_closes() -> None:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    body = RequestBody(receive, limit=10)
    with pytest.raises(UpstreamError):
        [chunk async for chunk in body.stream()]
    sent = Sent()
    await request_failed(UpstreamError("gone"), body, SCOPE, sent.send, sent)
    assert sent.status == 400 and sent.header(b"connection") == [b"close"]


@pytest.mark.parametrize(("error", "status", "kind"), [
    (UpstreamTimeout("slow"), 504, "timeout"),
    (UpstreamInvalid("bad"), 502, "invalid"),
    (UpstreamError("down"), 502, "unreachable"),
])
async def test_origin_failures_are_counted_and_answered(error: UpstreamError, status: int,
                                                        kind: str) -> None:
    sent = Sent()
    await request_failed(error, None, SCOPE, sent.send, sent)
    assert sent.status == status and sent.failed == [kind]
    assert sent.header(b"connection") == []   # the client's request was read whole


async def test_a_busy_origin_is_503_with_retry_after() -> None:
    sent = Sent()
    await origin_failed(UpstreamBusy("pool"), SCOPE, sent.send, sent)
    assert sent.status == 503 and sent.header(b"retry-after") == [b"5"]
    assert sent.busy == ["pool"] and sent.failed == []


async def test_a_refused_websocket_closes_or_answers_by_what_the_server_allows() -> None:
    sent = Sent()
    scope = {**SCOPE, "type": "websocket"}
    await refuse_websocket(UpstreamTimeout("slow"), scope, sent.send, sent)
    assert sent.messages == [{"type": "websocket.close", "code": 1011}]
    assert sent.failed == ["timeout"]
    sent = Sent()
    await refuse_websocket(RequestRejected("no", status=403),
                           {**scope, "extensions": {"websocket.http.response": {}}},
                           sent.send, sent)
    assert sent.messages[0]["type"] == "websocket.http.response.start"
    assert sent.status == 403
    sent = Sent()   # the origin's own refusal: its status, and no origin failure counted
    await refuse_websocket(UpstreamRefused("origin said 401", status=401),
                           {**scope, "extensions": {"websocket.http.response": {}}},
                           sent.send, sent)
    assert sent.status == 401 and sent.failed == []


FORGED = '/a\n2026-12-06 05:00:00,000 WARNING edge_personalizer.admin: FAKE\x1b[2J" \\x0a'


@pytest.mark.parametrize("refuse", [
    lambda scope, sent: refuse_request(RequestRejected("no", status=400), scope, sent.send),
    lambda scope, sent: request_failed(UpstreamError("down"), None, scope, sent.send, sent),
    lambda scope, sent: origin_failed(UpstreamBusy("pool"), scope, sent.send, sent),
    lambda scope, sent: refuse_websocket(UpstreamTimeout("slow"),
                                         {**scope, "type": "websocket"}, sent.send, sent),
], ids=["rejected", "origin_failed", "busy", "websocket"])
async def test_a_refusal_logs_the_client_s_path_escaped(
        refuse: Callable[[Scope, Sent], Awaitable[None]],
        caplog: pytest.LogCaptureFixture) -> None:
    # The decoded path was logged raw: %0a began a forged line (indented, but a line of
    # its own to a reader), %1b reached the terminal.
    caplog.set_level(logging.INFO, logger="edge_personalizer.proxy.refusals")
    await refuse({**SCOPE, "path": FORGED}, Sent())
    [message] = [r.getMessage() for r in caplog.records]
    assert "/a\\x0a2026-12-06 05:00:00,000 WARNING edge_personalizer.admin: FAKE" \
        "\\x1b[2J\\x22 \\x5cx0a" in message, message
