"""PersonalizeMiddleware: classify -> decide -> forward -> rewrite, around any ASGI app."""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from .rules.book import RuleBook

ADMIN_PREFIX = "/__ep/"


class PersonalizeMiddleware:
    """Personalizes the HTML responses of `app` by the rules in a rules directory.

    Wraps an `OriginProxy` to sit in front of any site, or any ASGI app directly. It
    owns the serving rule set; until rules decide something for a request, requests and
    responses pass through untouched, and `/__ep/` paths are never handed to `app`.
    """

    def __init__(self, app: ASGIApp, *, rules: RuleBook | Path | str | None = None) -> None:
        self.app = app
        if isinstance(rules, (str, Path)):
            rules = RuleBook(Path(rules))
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(ADMIN_PREFIX):
            await _not_found(scope, send)
            return
        await self.app(scope, receive, send)


async def _not_found(scope: Scope, send: Send) -> None:
    # The reserved prefix belongs to us: never forwarded to the site, whatever the path.
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = b"Not found: /__ep/ is reserved for edge-personalizer\n"
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
