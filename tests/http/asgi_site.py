"""A small ASGI app for the server tests, served by edge_personalizer.http.server.serve as
the factory `tests.http.asgi_site:create`: each path shows one way of answering that the
product's own app never takes on purpose (an exception, a header that would split the
response, a body a client does not read).

Run with `python -m tests.http.asgi_site PORT [WORKERS]`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from starlette.types import Receive, Scope, Send

from edge_personalizer.http.server import ServerOptions, serve

logger = logging.getLogger("asgi_site")

LARGE_PARTS = 256          # /large: 256 parts of 64 KiB, 16 MiB in all
PART = b"x" * 65536


class Site:
    def __init__(self) -> None:
        self.sent = 0      # body bytes /large got past send

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/fail":
            raise RuntimeError("the app broke")
        if path == "/split":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-evil", b"a\r\nset-cookie: stolen=1")]})
            await send({"type": "http.response.body", "body": b"split"})
        elif path == "/large":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % (LARGE_PARTS * len(PART)))]})
            for _ in range(LARGE_PARTS):
                await send({"type": "http.response.body", "body": PART, "more_body": True})
                self.sent += len(PART)
            await send({"type": "http.response.body", "body": b""})
        else:
            body = (b"%d" % self.sent) if path == "/sent" else b"pid %d" % os.getpid()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        logger.warning("lifespan startup in %d", os.getpid())
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await asyncio.sleep(0.05)   # something to close
        logger.warning("lifespan shutdown in %d", os.getpid())
        await send({"type": "lifespan.shutdown.complete"})


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(process)d %(levelname)s %(name)s: %(message)s")


def create() -> Site:
    setup_logging()
    return Site()


if __name__ == "__main__":
    setup_logging()
    serve("tests.http.asgi_site:create",
          ServerOptions(port=int(sys.argv[1]),
                        workers=int(sys.argv[2]) if len(sys.argv) > 2 else 1),
          setup_logging=setup_logging)
