"""The origin's response body on its way to the client, as it comes; the client's leaving
stops the read (the origin connection is then closed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Final

from starlette.types import Receive, Send

from ..http.client import UpstreamResponse

# Responses that hold their origin connection for as long as the visitor stays.
_LONG_LIVED_TYPES: Final = (b"text/event-stream", b"multipart/x-mixed-replace")
_WATCH_AFTER: Final = 1.0   # seconds a body streams before the client's leaving is watched for


def is_long_lived(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the response holds its origin connection for as long as the visitor stays
    (server-sent events, multipart/x-mixed-replace)."""
    for name, value in headers:
        if name == b"content-type":
            return value.lower().lstrip().startswith(_LONG_LIVED_TYPES)
    return False


async def relay_body(response: UpstreamResponse, receive: Receive, send: Send, *,
                     watch: bool, at_once: bool) -> bool | None:
    """Send the body on as it comes: True when its last chunk said so, False when it ended
    unannounced, None when the client went away (the read stops, the origin connection
    is then closed by `aclose`).

    Watching for the client's leaving costs two tasks, so only bodies that last are
    watched: long-lived ones (`at_once`) from the start, others once they have been
    streaming for _WATCH_AFTER seconds (most pages are long done by then)."""
    chunks = response.body()
    ended = False
    if not (watch and at_once):
        deadline = time.monotonic() + _WATCH_AFTER if watch else float("inf")
        async for chunk in chunks:
            ended = response.ended   # the last chunk says so itself: no empty message to end
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            if ended:
                return True   # (without asking for more: the end of a body is an exception)
            if time.monotonic() > deadline:
                break
        else:
            return ended
    relaying = asyncio.ensure_future(_send_rest(chunks, response, send))
    leaving = asyncio.ensure_future(_client_leaves(receive))
    try:
        await asyncio.wait((relaying, leaving), return_when=asyncio.FIRST_COMPLETED)
        if leaving.done() and leaving.result() and not relaying.done():
            relaying.cancel()
            await asyncio.gather(relaying, return_exceptions=True)
            return None
        return await relaying
    finally:
        for task in (relaying, leaving):
            if not task.done():
                task.cancel()


async def _send_rest(chunks: AsyncIterator[bytes], response: UpstreamResponse,
                     send: Send) -> bool:
    ended = False
    async for chunk in chunks:
        ended = response.ended
        await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
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
