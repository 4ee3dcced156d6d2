"""The client's request body as the origin gets it: streamed, within the size limit, and
cut off when it stalls or trickles (408, as nginx's client_body_timeout; a long upload
must keep a faster pace while others are turned away for want of an upload slot)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable

from starlette.types import Message, Receive

from ..errors import RequestRejected, UpstreamError

# Bytes a second a request body must average once `body_timeout` has passed: a client
# sending a byte every few seconds never pauses for long, and is still cut off.
BODY_MIN_RATE = 1024
# ... and a long upload, from the moment every upload slot is taken with an upload turned
# away in the last PRESSURE_SPAN seconds, after PRESSED_GRACE (a stall of a mobile link or
# a lost packet's retransmission passes): clients trickling just above BODY_MIN_RATE held
# every slot for hours (~28 h for 100 MiB) while others got 503s; now holding them while
# others wait takes 16 KiB/s each. With no one turned away, no upload is asked more than
# BODY_MIN_RATE.
PRESSED_MIN_RATE = 16 * 1024
PRESSED_GRACE = 5.0
PRESSURE_SPAN = 10.0
# A body in more messages than this must average SMALLEST_PARTS bytes a message: each costs
# the worker ~50-80 µs whatever its size, and a body sent in 1-byte chunks (1.8 MB on the
# wire for 300 KB) took half a minute of a worker's time. (A stream of small records, a
# line of NDJSON a chunk, stays above it.)
MANY_PARTS = 1024
SMALLEST_PARTS = 64
# A request body up to this size is read whole before the origin is asked (nginx's
# client_body_buffer_size is 8-16 KiB; in memory, per request under way).
FIRST_BYTES = 64 * 1024


class RequestBody:
    """The client's request body, streamed to the origin, within the size limit and
    `timeout` (None: none).

    After `stream()` ends early, `rejected` is the refusal to answer (413, 408, 400) and
    `client_gone` says the server ended the body itself (the client left, or sent a body
    it cannot frame)."""

    def __init__(self, receive: Receive, limit: int, timeout: float | None = None) -> None:
        self._receive = receive
        self._limit = limit
        self._timeout = timeout
        self.done: Callable[[], None] | None = None   # called once, when the body ends
        self.rejected: RequestRejected | None = None
        self.client_gone = False
        self.finished = False   # every message of the body received
        self._received = 0
        self._parts = 0      # the messages it came in
        self._waited = 0.0   # seconds spent waiting for the client (not for a slow origin)
        self._first = b""    # read by first(), streamed first
        self.pressed: Callable[[], bool] = _never   # uploads turned away, none free
        self._pressed_from: tuple[int, float] | None = None   # (received, waited) then
        self._receiving: asyncio.Future[Message] | None = None   # a receive waited for

    async def first(self) -> bytes | None:
        """Reads the body's first FIRST_BYTES, before the origin is asked: the whole body
        when it is no longer (a form, a JSON call: sent with its length, holding no origin
        connection while its client sends it), else None (stream() gives them first)."""
        parts = []
        size = 0
        # (to FIRST_BYTES and one message more: a body of just 64 KiB ends with an empty one)
        while not self.finished and size <= FIRST_BYTES:
            chunk, _ = await self._next()
            parts.append(chunk)
            size += len(chunk)
        self._first = b"".join(parts)
        return self._first if self.finished else None

    @property
    def has_first(self) -> bool:
        """Whether first() or first_part() has read the body's beginning."""
        return bool(self._first)

    async def first_part(self) -> None:
        """Reads the body's first message (a client that sent `Expect: 100-continue` is
        asked for its body now); stream() gives it first."""
        chunk, _ = await self._next()
        self._first = chunk

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            first, self._first = self._first, b""   # (not held for the whole upload)
            if first:
                yield first
            while not self.finished:
                chunk, _ = await self._next()
                if chunk:
                    yield chunk
        finally:
            if self.done is not None:
                self.done()

    async def _next(self) -> tuple[bytes, bool]:
        """The next message's bytes, and whether more follow."""
        timeout = self._timeout
        if timeout is None:
            message: Message = await self._receive()
        else:
            # The next bytes within `timeout`, and the whole body at the least rate on
            # average once `timeout` has passed.
            message = await self._within(timeout)
        if message["type"] == "http.disconnect":
            self.client_gone = True
            raise UpstreamError("client disconnected while sending the request body")
        chunk: bytes = message.get("body", b"")
        self._received += len(chunk)
        if self._received > self._limit:
            raise self._refuse(f"request body too large (over {self._limit} bytes)", 413)
        more = bool(message.get("more_body", False))
        self._parts += 1
        if more and self._parts > MANY_PARTS and self._received < self._parts * SMALLEST_PARTS:
            raise self._refuse(f"request body in parts too small ({self._received} bytes in "
                               f"{self._parts} parts; past 1,024 parts, {SMALLEST_PARTS} "
                               "bytes a part on average)", 400)
        self.finished = not more
        return chunk, more

    async def _within(self, timeout: float) -> Message:
        """The next message within `timeout` (a pause), the whole body at the least rate
        on average once `timeout` has passed, and at PRESSED_MIN_RATE since the pressure
        began while it lasts (asked again when the wait ends: a slot freed meanwhile ends
        it)."""
        loop = asyncio.get_running_loop()
        while True:
            budget = min(timeout, timeout + self._received / BODY_MIN_RATE - self._waited)
            why = (f"no bytes for {timeout:g} s" if budget == timeout else
                   f"{self._received} bytes in {self._waited + budget:.1f} s, under "
                   f"{BODY_MIN_RATE} bytes/s")
            pressed = self._pressed_budget()
            by_pressure = pressed is not None and pressed[0] < budget
            if by_pressure and pressed is not None:
                budget, why = pressed
            asked = loop.time()
            if pressed is None and self._receiving is None:
                # (a timeout refuses: the receive may go with it)
                try:
                    async with asyncio.timeout(max(0.0, budget)):
                        message: Message = await self._receive()
                except TimeoutError:
                    self._waited += loop.time() - asked
                    raise self._refuse(f"request body too slow ({why})", 408) from None
                self._waited += loop.time() - asked
                return message
            # Under pressure a wait that runs out as the pressure ends waits on, so the
            # receive goes on across the waits (cancelled, it could lose a message that
            # came at the last moment).
            receiving = self._receiving or asyncio.ensure_future(self._receive())
            self._receiving = receiving
            try:
                done, _ = await asyncio.wait((receiving,), timeout=max(0.0, budget))
            except BaseException:   # the request itself cancelled: its receive with it
                receiving.cancel()
                self._receiving = None
                raise
            self._waited += loop.time() - asked
            if done:
                self._receiving = None
                message = receiving.result()
                return message
            if by_pressure and not self.pressed():
                continue   # the pressure ended while it waited: waits on as before
            receiving.cancel()
            self._receiving = None
            raise self._refuse(f"request body too slow ({why})", 408)

    def _pressed_budget(self) -> tuple[float, str] | None:
        """The wait PRESSED_MIN_RATE leaves since the pressure began, and why it would be
        too slow; None while there is no pressure."""
        if not self.pressed():
            self._pressed_from = None
            return None
        if self._pressed_from is None:
            self._pressed_from = (self._received, self._waited)
        sent, waited = self._pressed_from
        budget = PRESSED_GRACE + (self._received - sent) / PRESSED_MIN_RATE \
            - (self._waited - waited)
        return budget, (f"{self._received - sent} bytes in "
                        f"{self._waited - waited + max(0.0, budget):.1f} s since other "
                        f"uploads were turned away for want of a slot, under "
                        f"{PRESSED_MIN_RATE} bytes/s")

    def _refuse(self, reason: str, status: int) -> RequestRejected:
        """Keeps the refusal to answer, and gives a copy to raise: the raised one's
        traceback holds this frame and so this body, which would hold it back, and the
        body (with the server's receive) would then wait for the cycle collector instead
        of going with the request."""
        self.rejected = RequestRejected(reason, status=status)
        return RequestRejected(reason, status=status)


class Uploads:
    """Requests whose bodies are being sent at once, at most `cap`: each holds an origin
    connection while its client sends, and clients that send a byte now and then must not
    take them all from the site's pages. A slot is given back once its body has ended
    (all sent, refused or abandoned), not when the origin answers."""

    def __init__(self, cap: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self.sending = 0
        self.clock = clock
        self._turned_away = -math.inf   # when an upload last found no slot

    def pressed(self) -> bool:
        """Whether every slot is taken and an upload was turned away within
        PRESSURE_SPAN seconds: those sending must keep up PRESSED_MIN_RATE."""
        return self.sending >= self.cap \
            and self.clock() - self._turned_away < PRESSURE_SPAN

    def take(self) -> Callable[[], None] | None:
        """A slot's release (harmless to call again), or None when all are taken."""
        if self.sending >= self.cap:
            self._turned_away = self.clock()
            return None
        self.sending += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.sending -= 1
        return release


async def to_send(body: RequestBody | None, uploads: Uploads,
                  length: int | None = None) -> AsyncIterator[bytes] | bytes | None:
    """What the origin is sent of a request's body: nothing, the body read whole, or the
    body still coming, which holds an upload slot (given back when it ends): None when
    none is free. A body whose `length` says it is long takes its slot before a byte of
    it is read (so one turned away is not sent: `Expect: 100-continue` is answered 503)."""
    if body is None:
        return b""
    if length is None or length <= FIRST_BYTES:
        whole = await body.first()
        if whole is not None:
            return whole
    body.done = uploads.take()
    if body.done is None:
        return None
    body.pressed = uploads.pressed
    if body.finished or body.has_first:
        return body.stream()
    await body.first_part()   # before the origin is asked: a client that sends nothing
    return body.stream()      # holds no origin connection


def _never() -> bool:
    return False
