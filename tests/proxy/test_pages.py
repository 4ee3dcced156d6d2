from __future__ import annotations

import pytest
from starlette.types import Message

from edge_personalizer.proxy.pages import send_error_page, wants_html

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_browsers_want_html() -> None:
    assert wants_html([(b"accept", b"text/html,application/xhtml+xml")])
    assert not wants_html([(b"accept", b"application/json")])
    assert wants_html([(b"accept", b"TEXT/HTML")])   # media types are case-insensitive
    assert not wants_html([])


async def test_page_escapes_the_message_and_head_has_no_body() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_error_page(send, 502, "<script>", [(b"accept", b"text/html")])
    assert b"&lt;script&gt;" in sent[1]["body"]
    assert dict(sent[0]["headers"])[b"cache-control"] == b"no-store"
    assert dict(sent[0]["headers"])[b"date"].endswith(b" GMT")
    sent.clear()
    await send_error_page(send, 502, "x", [], head=True)
    assert sent[1]["body"] == b""
    assert int(dict(sent[0]["headers"])[b"content-length"]) > 0
