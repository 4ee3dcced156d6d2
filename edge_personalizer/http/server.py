"""Running an ASGI app under granian (HTTP/1.1, uvloop): one worker process or several.

In: the app as the import path of a factory ("package.module:function"), which every worker
process calls once, and ServerOptions. Out: the app served until SIGINT or SIGTERM. Whatever
the factory needs (settings, logging) it finds itself, for example in the environment the
caller prepared. Nothing of the domain is imported here.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server
from granian.server.common import AbstractServer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    """How the server runs; every field maps onto one granian option."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # Seconds an idle connection stays open, and (granian has one timer for both) the
    # most a client may take to send a request head: a slow head is closed, not waited for.
    keep_alive_timeout: float = 5.0
    # Request heads larger than this are refused with 431 before the app sees them.
    max_head_bytes: int = 64 * 1024
    # Requests one worker runs at once; more wait their turn. None: granian's default
    # (its listen backlog, 1024, divided among the workers).
    backpressure: int | None = None
    # Seconds a stopping worker gets to finish the answers under way before it is killed.
    graceful_timeout: float = 10.0
    log_level: str = "info"
    # Tokio's single-threaded runtime in each worker ("st"); "mt" runs it on its own
    # threads. st measured ~10% less CPU a request in the peer kit (2 workers, 3 rounds).
    runtime_mode: str = "st"


def granian_server(factory: str, options: ServerOptions) -> AbstractServer[Any]:
    """The granian server for `factory`, with `options` applied (not yet serving)."""
    return Server(
        factory,
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGI,       # with lifespan (granian's "asginl" has none)
        http=HTTPModes.http1,
        websockets=True,
        loop=Loops.uvloop,
        runtime_mode=RuntimeModes(options.runtime_mode),
        workers=options.workers,
        backpressure=options.backpressure,
        http1_settings=HTTP1Settings(
            header_read_timeout=round(options.keep_alive_timeout * 1000),
            keep_alive=True,
            max_buffer_size=max(8192, options.max_head_bytes),   # hyper's lower bound
        ),
        workers_kill_timeout=math.ceil(options.graceful_timeout),
        respawn_failed_workers=True,     # a worker that crashed is replaced; the site stays up
        factory=True,
        log_access=False,                # the app logs its own requests
        log_level=LogLevels(options.log_level),
        log_dictconfig=_logging_config(),
    )


def _logging_config() -> dict[str, Any]:
    """granian's own lines go to the root logger (and so through the app's handler and
    format) instead of the handlers granian would install. A fresh dict each time: the
    logging machinery may change what it is given."""
    return {
        "formatters": {},
        "handlers": {},
        "loggers": {"_granian": {"handlers": [], "propagate": True},
                    "granian.access": {"handlers": [], "propagate": False}},
    }


def serve(factory: str, options: ServerOptions, *,
          setup_logging: Callable[[], None] | None = None,
          build: Callable[[], Any] | None = None,
          on_hangup: Callable[[], object] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP is passed on to every worker (and runs
    `on_hangup` in a thread of this process).

    granian sets up logging its own way (closing the handlers there were) when the server
    is made: `setup_logging` then puts the caller's back in this process; each worker's
    factory does its own. With `build`, each worker calls it instead of the factory (a
    forked worker: it may use what this process made before).
    """
    server = granian_server(factory, options)
    if setup_logging is not None:
        setup_logging()
    if options.workers > 1 and migrates_queued_connections() is False:
        logger.warning(
            "net.ipv4.tcp_migrate_req is 0: each worker listens on a socket of its own, and "
            "the connections queued for a worker that dies are refused or reset; "
            "`sysctl -w net.ipv4.tcp_migrate_req=1` hands them to another worker")
    # Lines a handler still holds when a worker is forked would be written by both.
    os.register_at_fork(before=_flush_logs)
    server.on_startup(functools.partial(_pass_hangups_to_workers, on_hangup))
    server.serve(target_loader=load_in_worker if build is None
                 else functools.partial(load_in_worker, build=build))


MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def migrates_queued_connections(setting: Path = MIGRATE_REQ) -> bool | None:
    """Whether the kernel hands the connections queued for a closed listening socket to
    another socket of the port (Linux 5.14+); None where it cannot be read."""
    try:
        return setting.read_text().strip() != "0"
    except OSError:
        return None


def check_port(host: str, port: int) -> None:
    """Raises OSError when something already listens on host:port. granian's workers share
    their port (SO_REUSEPORT), so a second server would otherwise start beside the first
    and visitors would be shared out between the two."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # past TIME_WAIT only
        probe.bind((host, port))


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def load_in_worker(factory: str, build: Callable[[], Any] | None = None) -> Any:
    """Runs in each worker process: build the app (its factory, or `build`, sets up
    logging), then tune the allocator."""
    server_pid = os.getppid()   # taken first: the server may die while the app is built
    if build is None:
        module, _, name = factory.partition(":")
        build = getattr(importlib.import_module(module), name)
    app = build()
    tune_allocator()
    _stop_when_orphaned(server_pid)
    return app


def _stop_when_orphaned(server_pid: int, every: float = 1.0) -> None:
    """A worker outlives its server when the server is killed outright (SIGKILL, the OOM
    killer): it would go on serving the old settings beside a server started anew on the
    same port. Once its parent is gone it stops the way SIGTERM stops it (the answers
    under way are finished)."""
    def watch() -> None:
        while os.getppid() == server_pid:
            time.sleep(every)
        logger.warning("the server (pid %d) is gone: worker %d stops", server_pid, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="server-watch", daemon=True).start()


def _pass_hangups_to_workers(on_hangup: Callable[[], object] | None = None) -> None:
    # granian answers SIGHUP by starting new workers; one that cannot start (a broken file
    # it reads at startup) would stop the whole server. The workers get the signal instead
    # and do what the app does on SIGHUP (reload what can be reloaded, keep what works).
    def to_workers() -> None:
        for worker in multiprocessing.active_children():
            if worker.pid is not None:
                os.kill(worker.pid, signal.SIGHUP)

    def after_hangup() -> None:   # this process first: a worker replaced meanwhile
        assert on_hangup is not None   # starts from what it does (see serving.py)
        on_hangup()
        to_workers()

    def forward(signum: int, frame: FrameType | None) -> None:
        if on_hangup is None:
            to_workers()
        else:
            threading.Thread(target=after_hangup, name="hangup", daemon=True).start()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, forward)


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

