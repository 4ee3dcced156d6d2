"""The access log: one line a request, and the request metrics, without personal data."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable
from typing import Any

from lru import LRU
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import ACCESS_LOGGER, JsonFormatter, TextFormatter, access_message, direct_handler
from .metrics import Metrics

access_logger = logging.getLogger(ACCESS_LOGGER)


class IpMasker:
    """Addresses with their host part cut (IPv4 /24, IPv6 /48): never a full client IP.
    Visitors come back, so recent answers are remembered (bounded)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._seen: LRU[str, str] = LRU(max_entries)

    def mask(self, ip: str | None) -> str:
        if not ip:
            return "-"
        masked = self._seen.get(ip)
        if masked is None:
            masked = self._seen[ip] = _mask(ip)
        return masked


def _mask(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "-"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


class AccessLog:
    """ASGI middleware: one log line a request, and request metrics. Never logs cookies
    or query strings (they carry personal data), only the path. The client's address is
    read from the scope, where the client-address stage put the visitor's own."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, enabled: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled
        self.masker = IpMasker()

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
                self.log(scope, final, sent, seconds, complete=finished)

    def log(self, scope: Scope, status: int, sent: int, seconds: float, *,
            complete: bool) -> None:
        client = scope.get("client")
        user_agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        fields: dict[str, Any] = {
            "client": self.masker.mask(client[0] if client else None),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "bytes": sent,
            "duration_ms": round(seconds * 1000, 2),
            "user_agent": user_agent.decode("latin-1")[:200],
        }
        if not complete:
            fields["aborted"] = True
        handler = direct_handler(access_logger)
        # A logging record costs more than the rest of the access log's work: where
        # logging is ours, the formatter writes the line itself.
        if handler is not None and isinstance(handler.formatter, (TextFormatter,
                                                                  JsonFormatter)):
            handler.write_line(handler.formatter.access_line(fields))
            return
        access_logger.info("%s", access_message(fields), extra={"access": fields})
