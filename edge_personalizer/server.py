"""Running the app under uvicorn (uvloop + httptools), one process or several workers."""

from __future__ import annotations

import os
from typing import Any

import uvicorn

from .app import create_app
from .logs import configure_logging
from .settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "lifespan": "on",
        "log_config": None,
        "access_log": False,        # ours is AccessLog, without cookies or full IPs
        "proxy_headers": False,     # we read forwarding headers ourselves, trusted peers only
        "server_header": False,     # the origin's Server and Date headers pass through
        "date_header": False,
        "timeout_graceful_shutdown": 10,
    }


def serve(settings: Settings, *, worker_env: str) -> None:
    """Serve until interrupted. Builds the app first, so bad settings fail before binding."""
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings)
    if settings.workers == 1:
        uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings))).run()
        return
    os.environ[worker_env] = settings.to_json()
    uvicorn.run("edge_personalizer.cli:worker_app", factory=True, workers=settings.workers,
                **uvicorn_options(settings))
