"""Short, clear answers we give ourselves: origin failures and rejected requests."""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

from starlette.types import Send

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {phrase}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}
small{{color:#777}}</style></head>
<body><h1>{status} {phrase}</h1><p>{message}</p>
<p><small>edge-personalizer</small></p></body></html>
"""


async def respond(send: Send, status: int, body: bytes, content_type: bytes,
                  headers: Sequence[tuple[bytes, bytes]] = (), *, head: bool = False) -> None:
    """A whole small response of our own, in one go (for HEAD: its headers only)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()),
                            (b"date", formatdate(usegmt=True).encode()), *headers]})
    await send({"type": "http.response.body", "body": b"" if head else body})


def wants_html(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """True for browsers: they list text/html in Accept."""
    return any(k == b"accept" and b"text/html" in v.lower() for k, v in headers)


async def send_error_page(
    send: Send, status: int, message: str, request_headers: Sequence[tuple[bytes, bytes]],
    *, head: bool = False,
) -> None:
    """An HTML page for browsers, one line of text for everything else; never cached."""
    phrase = HTTPStatus(status).phrase
    if wants_html(request_headers):
        body = _PAGE.format(status=status, phrase=phrase, message=html.escape(message)).encode()
        content_type = b"text/html; charset=utf-8"
    else:
        body = f"{status} {phrase}: {message}\n".encode()
        content_type = b"text/plain; charset=utf-8"
    await respond(send, status, body, content_type, [(b"cache-control", b"no-store")],
                  head=head)
