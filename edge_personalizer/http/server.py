"""Running the app under uvicorn (uvloop, our HTTP/1.1 protocol), one process or several workers."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from typing import Any

import uvicorn

from .app import create_app
from .logs import configure_logging
from .protocol import HttpProtocol
from .settings import Settings

logger = logging.getLogger(__name__)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # Request heads past twice the header limit (the app answers 431 or 414 below it)
        # stop the parser before they are held whole.
        "http": functools.partial(HttpProtocol,
                                  max_head_bytes=2 * settings.max_header_bytes + 4096),
        "ws": "websockets-sansio",
        "lifespan": "on",
        "log_config": None,
        "access_log": False,        # ours is AccessLog, without cookies or full IPs
        "proxy_headers": False,     # we read forwarding headers ourselves, trusted peers only
        "server_header": False,     # the origin's Server and Date headers pass through
        "date_header": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keep_alive_timeout,
    }


# glibc's malloc gives memory back to the kernel whenever more than 128 KiB lie free at
# the heap's top, and serves blocks of 128 KiB or more (grown adaptively) by mmap: a proxy
# allocating and freeing a page body per request then pays a page fault for every 4 KiB of
# every body. Workers keep up to 1 MiB at the top instead. Operators' own MALLOC_*
# settings win.
_MALLOC_OPTIONS = ((-1, 1 << 20), (-3, 1 << 20))   # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
               "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES")


def tune_allocator() -> bool:
    """Keep freed page bodies in the process (glibc only); whether it was done."""
    if sys.platform != "linux" or any(name in os.environ for name in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False   # not glibc (musl has no mallopt)
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not all(mallopt(option, value) == 1 for option, value in _MALLOC_OPTIONS):
        return False
    logger.debug("malloc keeps up to 1 MiB freed at the heap's top (pid %d)", os.getpid())
    return True


def serve(settings: Settings, *, worker_env: str) -> None:
    """Serve until interrupted. Builds the app first, so bad settings fail before binding."""
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings)
    if settings.workers == 1:
        tune_allocator()
        uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings))).run()
        return
    os.environ[worker_env] = settings.to_json()
    uvicorn.run("edge_personalizer.cli:worker_app", factory=True, workers=settings.workers,
                **uvicorn_options(settings))
