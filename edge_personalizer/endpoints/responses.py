"""Our own small JSON answers, and the small bodies our endpoints read."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Send

from ..proxy.pages import respond


async def send_json(send: Send, status: int, data: dict[str, Any],
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON answer that no cache keeps."""
    await respond(send, status, json.dumps(data).encode(), b"application/json",
                  [(b"cache-control", b"no-store"), *(extra or [])])


async def read_small_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past `limit` bytes (or when the client went away)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return body
