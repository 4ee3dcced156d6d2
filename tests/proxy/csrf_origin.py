"""An origin that checks a form post's Origin against its own Host, as Django's
CsrfViewMiddleware does ("Origin checking failed - ... does not match any trusted
origins"): run with `python -m tests.proxy.csrf_origin PORT`."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

ALLOWED_HOSTS = ("127.0.0.1", "localhost", "shop.example")   # Django's ALLOWED_HOSTS


async def login(request: Request) -> Response:
    host = request.headers.get("host", "")
    if host.rsplit(":", 1)[0] not in ALLOWED_HOSTS:
        return PlainTextResponse(f"Invalid HTTP_HOST header: {host!r}", status_code=400)
    if request.method == "GET":
        return HTMLResponse('<form method="post"><input name="user"></form>')
    # Django: good_origin = "%s://%s" % ("https" if request.is_secure() else "http",
    # request.get_host()); a proxy's X-Forwarded-Host only counts with
    # USE_X_FORWARDED_HOST, which is off by default.
    scheme = "https" if request.url.scheme == "https" else "http"
    origin = request.headers.get("origin")
    if origin != f"{scheme}://{host}":
        return PlainTextResponse(f"Forbidden (Origin checking failed - {origin} does not "
                                 "match any trusted origins.)", status_code=403)
    return PlainTextResponse(f"welcome, you posted to {host}")


app = Starlette(routes=[Route("/login", login, methods=["GET", "POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
