"""The route table of /__ep/: a path (or path prefix) and method -> one handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from ..proxy.pages import respond
from ..proxy.target import may_hold_dot_segments, remove_dot_segments
from .responses import send_json

ADMIN_PREFIX: Final = "/__ep/"

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    methods: frozenset[str] = frozenset({"GET", "HEAD"})


def site_path(scope: Scope) -> str:
    """The path the site would be asked for, decoded as the server decodes `path`: the
    request target with its dot segments removed, as the proxy forwards it (so
    `/a%2Fb/../__ep/x` is /__ep/x, and `/x/..%2F__ep/x` is not)."""
    raw: bytes | None = scope.get("raw_path")
    if not raw or not may_hold_dot_segments(raw):
        return str(scope["path"])
    return unquote(remove_dot_segments(raw).decode("latin-1"), errors="replace")


class Endpoints:
    """ASGI middleware owning the /__ep/ prefix: routes by exact path, then by prefix
    (`/__ep/fragment/` + slot); anything else there is 404, never the site's."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, Route],
                 prefixes: Mapping[str, Route] | None = None) -> None:
        self.app = app
        self.routes = dict(routes)
        self.prefixes = dict(prefixes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = site_path(scope) if scope["type"] in ("http", "websocket") else ""
        if not path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        if path != scope["path"]:
            scope = {**scope, "path": path}   # what the handlers read their names from
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        route = self.route_for(path)
        if route is None:
            await respond(send, 404, b"Not found: /__ep/ is reserved for edge-personalizer\n",
                          b"text/plain; charset=utf-8")
        elif scope["method"] not in route.methods:
            allowed = ", ".join(sorted(route.methods)).encode()
            await send_json(send, 405, {"error": f"use {allowed.decode()}"},
                            extra=[(b"allow", allowed)])
        else:
            await route.handler(scope, receive, send)

    def route_for(self, path: str) -> Route | None:
        # Exactly as written: an edge that keeps `/__ep/decide` from visitors by its exact
        # path would let `/__ep/decide/` through to a handler that answered it.
        route = self.routes.get(path)
        if route is not None:
            return route
        return next((r for prefix, r in self.prefixes.items() if path.startswith(prefix)),
                    None)
