"""RequestBody in-process, fed as an ASGI server feeds it (the slow and stalled bodies
through the real server are rows of tests/http/test_server_conformance.py)."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest
from starlette.types import Message

from edge_personalizer.errors import RequestRejected, UpstreamError
from edge_personalizer.proxy import request_body
from edge_personalizer.proxy.request_body import (
    BODY_MIN_RATE,
    PRESSED_MIN_RATE,
    PRESSURE_SPAN,
    RequestBody,
    Uploads,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Client:
    """Body messages, each `gap` seconds after the one before; then, if `leaves`, the
    client is gone."""

    def __init__(self, chunks: list[bytes], gap: float = 0.0, *, ends: bool = True,
                 leaves: bool = False) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": chunk,
             "more_body": not ends or index < len(chunks) - 1}
            for index, chunk in enumerate(chunks)]
        if leaves:
            self.messages.append({"type": "http.disconnect"})
        self.gap = gap

    async def receive(self) -> Message:
        if not self.messages:
            await asyncio.sleep(3600)   # a client that stopped sending
        await asyncio.sleep(self.gap)
        return self.messages.pop(0)


async def read(body: RequestBody) -> bytes:
    return b"".join([chunk async for chunk in body.stream()])


async def test_the_whole_body_streams_and_is_finished() -> None:
    body = RequestBody(Client([b"ab", b"", b"cd"]).receive, limit=10, timeout=1.0)
    assert await read(body) == b"abcd"
    assert body.finished and body.rejected is None and not body.client_gone


async def test_a_body_past_the_limit_is_413() -> None:
    body = RequestBody(Client([b"12345", b"67890", b"x"]).receive, limit=10)
    with pytest.raises(RequestRejected) as raised:
        await read(body)
    assert raised.value.status == 413 and body.rejected is not None
    assert (body.rejected.status, str(body.rejected)) == (raised.value.status, str(raised.value))
    assert not body.finished


async def test_a_pause_longer_than_the_timeout_is_408() -> None:
    body = RequestBody(Client([b"x"], ends=False).receive, limit=100, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(RequestRejected) as raised:
        await read(body)
    assert raised.value.status == 408 and body.rejected is not None
    assert (body.rejected.status, str(body.rejected)) == (raised.value.status, str(raised.value))
    assert 0.15 < time.monotonic() - started < 1.0


async def test_a_trickle_without_long_pauses_is_408_once_its_average_is_too_low() -> None:
    # A byte every 50 ms never pauses for the 0.2 s timeout, but averages 20 bytes/s.
    body = RequestBody(Client([b"x"] * 100, gap=0.05, ends=False).receive, limit=1000,
                       timeout=0.2)
    started = time.monotonic()
    with pytest.raises(RequestRejected) as raised:
        await read(body)
    assert raised.value.status == 408
    assert time.monotonic() - started < 0.2 + 100 / BODY_MIN_RATE + 0.5


async def test_while_uploads_are_turned_away_a_body_must_keep_a_faster_pace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_body, "PRESSED_GRACE", 0.5)   # (5 s in the server)
    # 256 bytes every 50 ms (5 KiB/s): above the least rate, below the pressed one
    def trickle() -> RequestBody:
        return RequestBody(Client([b"x" * 256] * 40, gap=0.05).receive, limit=1 << 20,
                           timeout=0.2)

    assert len(await read(trickle())) == 10240
    pressed = trickle()
    pressed.pressed = lambda: True
    started = time.monotonic()
    with pytest.raises(RequestRejected) as raised:
        await read(pressed)
    assert raised.value.status == 408 and "turned away" in str(raised.value)
    assert time.monotonic() - started < 1.9   # cut after about 1.5 s of pressure
    assert BODY_MIN_RATE < 5120 < PRESSED_MIN_RATE
    # counted from when the pressure began: a body slow before it has its grace then
    late = RequestBody(Client([b"x" * 256] * 80, gap=0.05).receive, limit=1 << 20,
                       timeout=0.2)
    looks = 0

    def pressed_after_a_second() -> bool:
        nonlocal looks
        looks += 1
        return looks > 20

    late.pressed = pressed_after_a_second
    with pytest.raises(RequestRejected):
        await read(late)
    assert 30 * 256 < late._received < 60 * 256   # (whole-body: cut at the 21st)


async def test_under_pressure_a_good_pace_outlasts_a_stall_of_a_few_seconds() -> None:
    # An upload at ~160 KiB/s was cut by one 1.9 s stall just after another was turned
    # away (the pressure's grace was a second).
    messages = [{"type": "http.request", "body": b"x" * 8192, "more_body": True}] * 20
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent = iter(messages)
    stalls = iter([2.0] + [0.05] * 20)   # the stall as the pressure begins

    async def stalling() -> Message:
        await asyncio.sleep(next(stalls))
        return next(sent)

    body = RequestBody(stalling, limit=1 << 20, timeout=3.0)
    body.pressed = lambda: True
    assert len(await read(body)) == 20 * 8192


async def test_a_body_of_just_64_kib_is_read_whole_as_granian_ends_it() -> None:
    # granian ends a body with an empty message: 65,536 bytes then b"" needed an upload
    # slot after the whole body had been read.
    parts = [b"x" * 16384] * 4 + [b""]
    body = RequestBody(Client(parts).receive, limit=1 << 20, timeout=5.0)
    assert await body.first() == b"x" * 65536


async def test_a_body_in_a_great_many_tiny_parts_is_refused() -> None:
    # 300 KB in 1-byte chunks took a worker half a minute of its time.
    body = RequestBody(Client([b"x"] * 3000, ends=True).receive, limit=1 << 20, timeout=5.0)
    with pytest.raises(RequestRejected) as raised:
        await read(body)
    assert raised.value.status == 400 and "parts too small" in str(raised.value)
    assert body._received == 1025   # refused past the first 1,024 parts
    lines = RequestBody(Client([b"x" * 80] * 3000).receive, limit=1 << 21, timeout=5.0)
    assert len(await read(lines)) == 240_000   # a stream of short records passes


async def test_uploads_are_pressed_while_all_slots_are_taken_and_one_was_turned_away(
        ) -> None:
    now = [0.0]
    uploads = Uploads(2, clock=lambda: now[0])
    first, second = uploads.take(), uploads.take()
    assert first is not None and second is not None and not uploads.pressed()
    assert uploads.take() is None and uploads.pressed()
    first()
    assert not uploads.pressed()   # a slot is free: the one turned away may come in
    assert uploads.take() is not None and uploads.pressed()
    now[0] += PRESSURE_SPAN
    assert not uploads.pressed()   # no one turned away for a while


async def test_a_steady_body_past_the_timeout_is_left_alone() -> None:
    # 2 KiB every 50 ms for 0.5 s: well above the least rate.
    body = RequestBody(Client([b"x" * 2048] * 10, gap=0.05).receive, limit=1 << 20,
                       timeout=0.2)
    assert len(await read(body)) == 20480


async def test_a_client_gone_mid_body_ends_the_stream() -> None:
    body = RequestBody(Client([b"ab"], ends=False, leaves=True).receive, limit=10)
    with pytest.raises(UpstreamError):
        await read(body)
    assert body.client_gone and body.rejected is None


async def test_a_refused_body_goes_with_its_request_not_with_the_cycle_collector() -> None:
    # What a refusal leaves behind holds no cycle: the body, and the server's receive it
    # holds, are freed when the request lets go of them (the server may keep a connection
    # open while its receive lives), not whenever the collector next runs.
    client = Client([b"a", b"b"], gap=0.3, ends=False)
    gone = weakref.ref(client)
    body = RequestBody(client.receive, limit=100, timeout=0.1)
    gc.disable()
    try:
        try:
            await read(body)
        except RequestRejected:
            pass   # (let go, as the server does once it has answered)
        assert body.rejected is not None and body.rejected.status == 408
        del client, body
        await asyncio.sleep(0.01)   # (the loop lets go of the cancelled wait)
        assert gone() is None
    finally:
        gc.enable()


async def test_upload_slots_are_capped_and_each_given_back_once() -> None:
    uploads = Uploads(2)
    first, second = uploads.take(), uploads.take()
    assert first is not None and second is not None and uploads.take() is None
    first()
    first()   # (the body's end and the exchange's both give it back)
    assert uploads.sending == 1
    third = uploads.take()
    assert third is not None and uploads.take() is None


async def test_a_body_gives_its_upload_slot_back_when_it_ends() -> None:
    uploads = Uploads(1)
    body = RequestBody(Client([b"ab", b"c"]).receive, 100)
    body.done = uploads.take()
    assert await read(body) == b"abc"
    assert uploads.sending == 0
    # ... and when it is refused half-way
    body = RequestBody(Client([b"ab", b"cd"]).receive, 3)
    body.done = uploads.take()
    with pytest.raises(RequestRejected):
        await read(body)
    assert uploads.sending == 0


async def test_a_body_read_whole_at_first_is_the_whole_body() -> None:
    # A form or a JSON call comes in one message: sent with its length, it never holds an
    # origin connection while its client sends it.
    assert await RequestBody(Client([b"name=x"]).receive, 100).first() == b"name=x"
    assert await RequestBody(Client([b"ab", b"", b"cd"]).receive, 100).first() == b"abcd"
    chunks = [b"x" * 40_000, b"y" * 40_000, b"z"]   # past FIRST_BYTES (64 KiB)
    body = RequestBody(Client(chunks).receive, 100_000)
    assert await body.first() is None and not body.finished
    assert await read(body) == b"".join(chunks) and body.finished
