"""Our own small JSON answers."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from ..proxy.pages import respond


async def send_json(send: Send, status: int, data: dict[str, Any],
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON answer that no cache keeps."""
    await respond(send, status, json.dumps(data).encode(), b"application/json",
                  [(b"cache-control", b"no-store"), *(extra or [])])
