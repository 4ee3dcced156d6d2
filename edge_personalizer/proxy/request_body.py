"""The client's request body as the origin gets it: streamed, within the size limit, and
cut off when it stalls or trickles (408, as nginx's client_body_timeout; a long upload
must keep a faster pace while the upload slots are nearly all taken)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.types import Message, Receive

from ..errors import RequestRejected, UpstreamError

# Bytes a second a request body must average once `body_timeout` has passed: a client
# sending a byte every few seconds never pauses for long, and is still cut off.
BODY_MIN_RATE = 1024
# ... and a long upload, while three quarters of the upload slots are taken, after a
# second's grace (not `body_timeout`'s): clients trickling just above BODY_MIN_RATE would
# otherwise hold every slot for hours (~28 h for 100 MiB), or reconnect each timeout;
# holding them all now takes 16 KiB/s each, and a slow mobile uplink still passes.
PRESSED_MIN_RATE = 16 * 1024
PRESSED_GRACE = 1.0
# A request body up to this size is read whole before the origin is asked (nginx's
# client_body_buffer_size is 8-16 KiB; in memory, per request under way).
FIRST_BYTES = 64 * 1024


class RequestBody:
    """The client's request body, streamed to the origin, within the size limit and
    `timeout` (None: none).

    After `stream()` ends early, `rejected` is the refusal to answer (413, 408) and
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
        self._waited = 0.0   # seconds spent waiting for the client (not for a slow origin)
        self._first = b""    # read by first(), streamed first
        self.pressed: Callable[[], bool] = _never   # the upload slots nearly all taken

    async def first(self) -> bytes | None:
        """Reads the body's first FIRST_BYTES, before the origin is asked: the whole body
        when it is no longer (a form, a JSON call: sent with its length, holding no origin
        connection while its client sends it), else None (stream() gives them first)."""
        parts = []
        size = 0
        while not self.finished and size < FIRST_BYTES:
            chunk, _ = await self._next()
            parts.append(chunk)
            size += len(chunk)
        self._first = b"".join(parts)
        return self._first if self.finished else None

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
            loop = asyncio.get_running_loop()
            pressed = self.pressed()
            rate, grace = (PRESSED_MIN_RATE, min(timeout, PRESSED_GRACE)) if pressed \
                else (BODY_MIN_RATE, timeout)
            budget = min(timeout, grace + self._received / rate - self._waited)
            asked = loop.time()
            try:
                async with asyncio.timeout(max(0.0, budget)):
                    message = await self._receive()
            except TimeoutError:
                why = " while the upload slots are nearly all taken" if pressed else ""
                raise self._refuse(f"request body too slow ({self._received} bytes in "
                                   f"{self._waited + loop.time() - asked:.1f} s, under "
                                   f"{rate} bytes/s{why})", 408) from None
            self._waited += loop.time() - asked
        if message["type"] == "http.disconnect":
            self.client_gone = True
            raise UpstreamError("client disconnected while sending the request body")
        chunk: bytes = message.get("body", b"")
        self._received += len(chunk)
        if self._received > self._limit:
            raise self._refuse(f"request body too large (over {self._limit} bytes)", 413)
        more = bool(message.get("more_body", False))
        self.finished = not more
        return chunk, more

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

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.sending = 0

    def pressed(self) -> bool:
        """Whether three quarters of the slots are taken (uploads must keep up a rate)."""
        return self.sending * 4 >= self.cap * 3

    def take(self) -> Callable[[], None] | None:
        """A slot's release (harmless to call again), or None when all are taken."""
        if self.sending >= self.cap:
            return None
        self.sending += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.sending -= 1
        return release


async def to_send(body: RequestBody | None,
                  uploads: Uploads) -> AsyncIterator[bytes] | bytes | None:
    """What the origin is sent of a request's body: nothing, the body read whole, or the
    body still coming, which holds an upload slot (given back when it ends): None when
    none is free."""
    if body is None:
        return b""
    whole = await body.first()
    if whole is not None:
        return whole
    body.done = uploads.take()
    if body.done is None:
        return None
    body.pressed = uploads.pressed
    return body.stream()


def _never() -> bool:
    return False
