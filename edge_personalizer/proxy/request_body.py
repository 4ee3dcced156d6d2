"""The client's request body as the origin gets it: streamed, within the size limit, and
cut off when it stalls or trickles (408, as nginx's client_body_timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.types import Message, Receive

from ..errors import RequestRejected, UpstreamError

# Bytes a second a request body must average once `body_timeout` has passed: a client
# sending a byte every few seconds never pauses for long, and is still cut off.
BODY_MIN_RATE = 1024


class RequestBody:
    """The client's request body, streamed to the origin, within the size limit and
    `timeout` (None: none).

    After `stream()` ends early, `rejected` is the refusal to answer (413, 408) and
    `client_gone` says the server ended the body itself (the client left, or sent a body
    it cannot frame)."""

    def __init__(self, receive: Receive, limit: int, timeout: float | None = None, *,
                 done: Callable[[], None] | None = None) -> None:
        self._receive = receive
        self._limit = limit
        self._timeout = timeout
        self._done = done   # called once the body has ended, whichever way
        self.rejected: RequestRejected | None = None
        self.client_gone = False
        self.finished = False   # every message of the body received

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks():
                yield chunk
        finally:
            if self._done is not None:
                self._done()

    async def _chunks(self) -> AsyncIterator[bytes]:
        received = 0
        timeout = self._timeout
        loop = asyncio.get_running_loop()
        waited = 0.0   # seconds spent waiting for the client (not for a slow origin)
        while True:
            if timeout is None:
                message: Message = await self._receive()
            else:
                # The next bytes within `timeout`, and the whole body at BODY_MIN_RATE on
                # average once `timeout` has passed.
                budget = min(timeout, timeout + received / BODY_MIN_RATE - waited)
                asked = loop.time()
                try:
                    async with asyncio.timeout(max(0.0, budget)):
                        message = await self._receive()
                except TimeoutError:
                    raise self._refuse(f"request body too slow ({received} bytes in "
                                       f"{waited + loop.time() - asked:.1f} s)", 408) from None
                waited += loop.time() - asked
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise UpstreamError("client disconnected while sending the request body")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self._limit:
                raise self._refuse(f"request body too large (over {self._limit} bytes)", 413)
            if not message.get("more_body", False):
                self.finished = True
                if chunk:
                    yield chunk
                return
            if chunk:
                yield chunk

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
