"""Logging: setup for the server, and the one-line-per-request access log."""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .classify.client_ip import TrustedProxies, resolve_client_ip
from .metrics import Metrics
from .proxy.headers import header_values

access_logger = logging.getLogger("edge_personalizer.access")


class JsonFormatter(logging.Formatter):
    """One JSON object a line; access lines carry their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
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


def configure_logging(*, fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def mask_ip(ip: str | None) -> str:
    """An address with its host part cut (IPv4 /24, IPv6 /48): never a full client IP."""
    if not ip:
        return "-"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "-"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


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

        async def observe(message: Message) -> None:
            nonlocal status, sent, finished
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                finished = not message.get("more_body", False)
            await send(message)

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
        access_logger.info('%s "%s %s" %d %d %.2fms', fields["client"], fields["method"],
                           fields["path"], status, sent, fields["duration_ms"],
                           extra={"access": fields})
