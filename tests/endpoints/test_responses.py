from __future__ import annotations

import json

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
