"""Logging: setup for the server, and the one-line-per-request access log."""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import threading
import time
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .classify.client_ip import TrustedProxies, resolve_client_ip
from .metrics import Metrics
from .proxy.headers import header_values

access_logger = logging.getLogger("edge_personalizer.access")


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_TIME = "%Y-%m-%dT%H:%M:%S"


class JsonFormatter(logging.Formatter):
    """One JSON object a line; access lines carry their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, JSON_TIME),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes INFO lines (the access log above all) in batches.

    One write a line was a system call on every request. Lines now wait at most
    `interval` seconds (a background thread flushes) or until 64 KiB are pending; a
    WARNING or worse goes out at once, after everything logged before it. Exit flushes.
    """

    def __init__(self, stream: Any, interval: float = 0.2) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._size = 0
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(interval,),
                                         name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)   # logging holds this handler's lock around emit()
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= 65536:
            self._write()

    def _write(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._size = 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass   # a closed or broken stream: nothing left to tell it

    def flush(self) -> None:
        with self.lock:   # type: ignore[union-attr]
            self._write()

    def write_line(self, line: str) -> None:
        """Queue a line formatted by the caller exactly as this handler would (the access
        log's own path: a logging record costs more than the rest of its work)."""
        with self.lock:   # type: ignore[union-attr]
            self._pending.append(line)
            self._size += len(line)
            if self._size >= 65536:
                self._write()

    def _flush_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


def configure_logging(*, fmt: str, level: str) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BatchingStreamHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


_MASKED: dict[str, str] = {}   # addresses seen lately: visitors come back


def mask_ip(ip: str | None) -> str:
    """An address with its host part cut (IPv4 /24, IPv6 /48): never a full client IP."""
    if not ip:
        return "-"
    masked = _MASKED.get(ip)
    if masked is None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return "-"
        prefix = 24 if address.version == 4 else 48
        masked = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
        if len(_MASKED) >= 4096:
            _MASKED.clear()
        _MASKED[ip] = masked
    return masked


class AccessLog:
    """ASGI middleware: one log line a request, and request metrics. Never logs cookies
    or query strings (they carry personal data), only the path."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, trusted: TrustedProxies,
                 enabled: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.trusted = trusted
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0
        finished = False

        def observe(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no coroutine of its own.
            nonlocal status, sent, finished
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                finished = not message.get("more_body", False)
            return send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            seconds = time.perf_counter() - started
            final = status or 500
            self.metrics.request_finished(final, seconds)
            if self.enabled:
                self._log(scope, final, sent, seconds, complete=finished)

    def _log(self, scope: Scope, status: int, sent: int, seconds: float, *,
             complete: bool) -> None:
        client = scope.get("client")
        ip = resolve_client_ip(client[0] if client else None,
                               header_values(scope["headers"], b"x-forwarded-for"), self.trusted)
        user_agent = header_values(scope["headers"], b"user-agent")
        fields = {
            "client": mask_ip(ip),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "bytes": sent,
            "duration_ms": round(seconds * 1000, 2),
            "user_agent": user_agent[0][:200] if user_agent else "",
        }
        if not complete:
            fields["aborted"] = True
        direct = _direct_handler()
        if direct is not None:
            direct.write_line(_format_access(direct.formatter, fields))
            return
        access_logger.info('%s "%s %s" %d %d %.2fms', fields["client"], fields["method"],
                           fields["path"], status, sent, fields["duration_ms"],
                           extra={"access": fields})


def _direct_handler() -> BatchingStreamHandler | None:
    """The handler access lines may be written to directly: when logging is set up the way
    configure_logging leaves it (the access logger adds nothing of its own and passes INFO
    to one BatchingStreamHandler with one of our two formats). Anything else, such as a
    handler an embedding application attached, gets proper log records."""
    if access_logger.handlers or not access_logger.propagate or access_logger.disabled:
        return None
    root = logging.getLogger()
    if len(root.handlers) != 1 or not access_logger.isEnabledFor(logging.INFO):
        return None
    handler = root.handlers[0]
    if not isinstance(handler, BatchingStreamHandler) or handler.filters or \
            handler.level > logging.INFO:
        return None
    formatter = handler.formatter
    if isinstance(formatter, JsonFormatter) or (
            type(formatter) is logging.Formatter and formatter._fmt == TEXT_FORMAT
            and formatter.datefmt is None):
        return handler
    return None


_clock: list[Any] = [-1, "", ""]   # a second, its time as text lines and JSON lines show it


def _format_access(formatter: logging.Formatter | None, fields: dict[str, Any]) -> str:
    """An access line exactly as the handler's formatter would have written the record."""
    now = time.time()
    second = int(now)
    if second != _clock[0]:
        local = time.localtime(second)
        _clock[:] = [second, time.strftime("%Y-%m-%d %H:%M:%S", local),
                     time.strftime(JSON_TIME, local)]
    if isinstance(formatter, JsonFormatter):
        entry = {"time": _clock[2], "level": "info", "logger": access_logger.name, **fields}
        return json.dumps(entry, ensure_ascii=False) + "\n"
    message = (f'{fields["client"]} "{fields["method"]} {fields["path"]}" {fields["status"]} '
               f'{fields["bytes"]} {fields["duration_ms"]:.2f}ms')
    return f"{_clock[1]},{int(now % 1 * 1000):03d} INFO {access_logger.name}: {message}\n"
