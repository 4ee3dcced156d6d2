"""Running the app under uvicorn (uvloop + httptools), one process or several workers."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .app import create_app
from .logs import configure_logging
from .pipeline import BODY_VIEWS
from .settings import Settings

logger = logging.getLogger(__name__)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": CoalescingHttpToolsProtocol,
        "ws": "websockets-sansio",
        "lifespan": "on",
        "log_config": None,
        "access_log": False,        # ours is AccessLog, without cookies or full IPs
        "proxy_headers": False,     # we read forwarding headers ourselves, trusted peers only
        "server_header": False,     # the origin's Server and Date headers pass through
        "date_header": False,
        "timeout_graceful_shutdown": 10,
    }


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop leave in one system call.

    The server writes a response's head, each body chunk and the chunked-encoding end
    separately; on loopback or a LAN each write is a send() of its own, costing more than
    the bytes. Gathered and handed to `writelines` at the end of the turn (or once 64 KiB
    are pending), they go out together. Everything else is the real transport's.
    """

    __slots__ = ("_transport", "_loop", "_pending", "_size")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= 65536:
            self.flush()

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._size = 0
        if self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a CoalescingTransport.

    It writes any bytes-like body (uvloop's transports take buffers), so its scopes
    carry the BODY_VIEWS extension: the pipeline may then send memoryviews."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(
            CoalescingTransport(transport, self.loop))   # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        self.scope.setdefault("extensions", {})[BODY_VIEWS] = {}
        super().on_headers_complete()


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
