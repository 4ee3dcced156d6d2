from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message

from edge_personalizer.endpoints.responses import send_json

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_json_answers_are_never_cached() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_json(send, 409, {"error": "no"}, extra=[(b"x-extra", b"1")])
    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 409
    assert headers[b"cache-control"] == b"no-store" and headers[b"x-extra"] == b"1"
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(body["body"]) == {"error": "no"}


async def test_small_bodies_are_read_whole_and_large_ones_refused() -> None:
    from edge_personalizer.endpoints.responses import read_small_body

    def receiver(*parts: bytes) -> Any:
        messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                    for i, p in enumerate(parts)]

        async def receive() -> Message:
            return messages.pop(0)

        return receive

    assert await read_small_body(receiver(b"ab", b"cd"), 4) == b"abcd"
    assert await read_small_body(receiver(b"ab", b"cde"), 4) is None
