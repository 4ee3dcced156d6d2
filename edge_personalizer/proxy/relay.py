"""The origin's response body on its way to the client, as it comes; the client's leaving
stops the read (the origin connection is then closed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Final

from starlette.types import Receive, Send

from ..http.client import UpstreamResponse

# Responses that hold their origin connection for as long as the visitor stays.
_LONG_LIVED_TYPES: Final = (b"text/event-stream", b"multipart/x-mixed-replace")
_WATCH_AFTER: Final = 1.0   # seconds a body streams before the client's leaving is watched for
_WATCH_BYTES: Final = 1 << 20   # ... or bytes it sends
_PIECE: Final = 64 * 1024   # the most a watched body sends at once
logger = logging.getLogger(__name__)


def is_long_lived(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the response holds its origin connection for as long as the visitor stays
    (server-sent events, multipart/x-mixed-replace)."""
    for name, value in headers:
        if name == b"content-type":
            return value.lower().lstrip().startswith(_LONG_LIVED_TYPES)
    return False


async def relay_body(response: UpstreamResponse, receive: Receive, send: Send, *,
                     watch: bool, at_once: bool, stall: float | None = None) -> bool | None:
    """Send the body on as it comes: True when its last chunk said so, False when it ended
    unannounced, None when the client went away, or left a send unread for `stall`
    seconds (the read stops, the origin connection is then closed by `aclose`).

    Watching costs a task or two, so only bodies that last are watched: long-lived ones
    (`at_once`) from the start, others once they have streamed for _WATCH_AFTER seconds
    or _WATCH_BYTES (most pages are long done by then; a client that stops reading holds
    a send only once the server's buffers are full). `watch`: whether receive() is free
    to tell of the client's leaving (not while a request body is still read)."""
    chunks = response.body()
    ended = False
    if not at_once:
        deadline, sent = time.monotonic() + _WATCH_AFTER, 0
        async for chunk in chunks:
            ended = response.ended   # the last chunk says so itself: no empty message to end
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            if ended:
                return True   # (without asking for more: the end of a body is an exception)
            sent += len(chunk)
            if sent > _WATCH_BYTES or time.monotonic() > deadline:
                break
        else:
            return ended
    sending = _Sending(chunks, response, send)
    relaying = asyncio.ensure_future(sending.rest())
    leaving = asyncio.ensure_future(_client_leaves(receive)) if watch else None
    try:
        while True:
            waits = {relaying} if leaving is None else {relaying, leaving}
            waiting = sending.waiting_since
            left = None if stall is None else stall if waiting is None \
                else waiting + stall - time.monotonic()
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if relaying.done():
                return await relaying
            if leaving is not None and leaving.done():
                if leaving.result():
                    break   # gone
                leaving = None   # this server cannot say: the stall alone is watched
            elif sending.stalled(stall):
                logger.info("the client read none of the answer for %.0f s: given up", stall)
                break
        relaying.cancel()
        await asyncio.gather(relaying, return_exceptions=True)
        return None
    finally:
        for task in (relaying, leaving):
            if task is not None and not task.done():
                task.cancel()


class _Sending:
    """The rest of a body sent on, in pieces of at most _PIECE (a client that reads slowly
    makes room for one often), and since when a send waits for the client (None: none
    does; an origin that is slow to send is no client that does not read)."""

    def __init__(self, chunks: AsyncIterator[bytes], response: UpstreamResponse,
                 send: Send) -> None:
        self.chunks, self.response, self.send = chunks, response, send
        self.waiting_since: float | None = None

    def stalled(self, stall: float | None) -> bool:
        waiting = self.waiting_since
        return stall is not None and waiting is not None \
            and time.monotonic() - waiting >= stall

    async def rest(self) -> bool:
        ended = False
        async for chunk in self.chunks:
            ended = self.response.ended
            for start in range(0, max(len(chunk), 1), _PIECE):
                last = start + _PIECE >= len(chunk)
                self.waiting_since = time.monotonic()
                await self.send({"type": "http.response.body",
                                 "body": chunk[start:start + _PIECE],
                                 "more_body": not (ended and last)})
                self.waiting_since = None
            if ended:
                break
        return ended


async def _client_leaves(receive: Receive) -> bool:
    """True once the client has gone; False if this server cannot say (it answers
    receive() with something else, again and again)."""
    for _ in range(8):
        message = await receive()
        if message["type"] == "http.disconnect":
            return True
    return False
