"""/__ep/ has one owner: the route table, in front of the site or the origin."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route as Route_
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_personalizer import create_app, load_settings
from edge_personalizer.endpoints import Endpoints
from edge_personalizer.endpoints.responses import send_json
from edge_personalizer.endpoints.router import Route

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://site")


async def test_reserved_prefix_never_reaches_the_site_it_personalizes() -> None:
    reached: list[str] = []

    async def catch_all(request: Request) -> HTMLResponse:
        reached.append(request.url.path)
        return HTMLResponse("site")

    site = Starlette(routes=[Route_("/{path:path}", catch_all)])
    app = create_app(load_settings({}, rules_dir=ROOT / "rules"), site=site)
    async with client_for(app) as client:
        assert (await client.get("/__ep/secret")).status_code == 404
        assert (await client.get("/__ep/health/live")).json() == {"status": "alive"}
        assert (await client.get("/normal")).text == "site"
    # Dot segments (as sent, or percent-encoded and decoded by the server) lead where the
    # site would be asked for: /__ep/ is answered here, never by the site.
    for raw, status in (("/x/../__ep/secret", 404), ("/x/./y/../../__ep/health/live", 200),
                        ("/a%2Fb/../__ep/health/live", 200), ("/a/../normal", 200),
                        ("/x/..%2F__ep/secret", 200)):
        assert (await _status_of(app, raw)) == status, raw
    # (the site is handed the path as it came; the proxy removes the dots when it forwards)
    assert reached == ["/normal", "/a/../normal", "/x/../__ep/secret"]


async def _status_of(app: ASGIApp, raw: str) -> int:
    """The status `app` answers a GET of the request target `raw` with, handed on as a
    server hands it (`path` percent-decoded, dot segments left in)."""
    path = unquote(raw)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
               "method": "GET", "scheme": "http", "path": path, "raw_path": raw.encode(),
               "query_string": b"", "root_path": "", "headers": [(b"host", b"site")],
               "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80)}, receive, send)
    return int(sent[0]["status"])


async def test_routes_by_exact_path_then_prefix_and_refuses_other_methods() -> None:
    seen: list[str] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["path"])
        await send_json(send, 200, {"ok": True})

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the site must not be reached")

    app = Endpoints(site, routes={"/__ep/one": Route(handler, frozenset({"POST"}))},
                    prefixes={"/__ep/many/": Route(handler)})
    async with client_for(app) as client:
        assert (await client.post("/__ep/one")).status_code == 200
        assert (await client.post("/__ep/one/")).status_code == 404
        refused = await client.get("/__ep/one")
        assert refused.status_code == 405 and refused.headers["allow"] == "POST"
        assert (await client.get("/__ep/many/x")).status_code == 200
        assert (await client.get("/__ep/many")).status_code == 404
    assert seen == ["/__ep/one", "/__ep/many/x"]
