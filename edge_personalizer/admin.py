"""Admin endpoints under /__ep/: health for anyone, everything else behind a token."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from .classify.geo import GeoDatabaseInfo
from .metrics import CONTENT_TYPE, Metrics
from .pipeline import ADMIN_PREFIX
from .proxy.headers import header_values
from .proxy.pages import respond
from .http.client import ProbeResult
from .rules.book import RuleBook

OriginProbe = Callable[[], Awaitable[ProbeResult]]


class AdminEndpoints:
    """ASGI middleware answering /__ep/health, /__ep/health/live and /__ep/metrics.

    Health tells liveness (the process answers) and readiness (origin reachable, rules
    loaded); it is open so load balancers can use it. Other endpoints need
    `Authorization: Bearer <admin_token>`, and are refused when no token is configured.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, token: str | None,
                 origin_probe: OriginProbe | None = None, rules: RuleBook | None = None,
                 geo: GeoDatabaseInfo | None = None, probe_ttl: float = 1.0) -> None:
        self.app = app
        self.metrics = metrics
        self.token = token
        self.origin_probe = origin_probe
        self.rules = rules
        self.geo = geo
        self.probe_ttl = probe_ttl
        self._probe: tuple[float, ProbeResult] | None = None
        self.started = time.time()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        if path == "/__ep/health/live":
            await _json(send, 200, {"status": "alive"})
        elif path in ("/__ep/health", "/__ep/health/ready"):
            status, report = await self.health()
            await _json(send, status, report)
        elif path == "/__ep/metrics":
            if await self._authorized(scope, send):
                await respond(send, 200, self.metrics.render(), CONTENT_TYPE.encode(),
                              [(b"cache-control", b"no-store")])
        elif path == "/__ep/reload":
            if scope["method"] != "POST":
                await _json(send, 405, {"error": "use POST"}, extra=[(b"allow", b"POST")])
            elif await self._authorized(scope, send):
                await self._reload(send)
        else:
            await self.app(scope, receive, send)

    async def _authorized(self, scope: Scope, send: Send) -> bool:
        if self.token is None:
            await _json(send, 403, {"error": "admin endpoints are disabled: set admin_token "
                                             "(EP_ADMIN_TOKEN) to enable them"})
            return False
        given = "".join(header_values(scope["headers"], b"authorization"))
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return True
        await _json(send, 401, {"error": "missing or wrong admin token"},
                    extra=[(b"www-authenticate", b'Bearer realm="edge-personalizer"')])
        return False

    async def _reload(self, send: Send) -> None:
        if self.rules is None:
            await _json(send, 409, {"error": "no rules directory configured"})
            return
        ok = await anyio.to_thread.run_sync(self.rules.reload)
        await _json(send, 200 if ok else 422, {
            "reloaded": ok, "version": self.rules.current.version,
            "error": self.rules.last_error})

    async def _origin(self) -> ProbeResult | None:
        if self.origin_probe is None:
            return None
        now = time.monotonic()
        if self._probe is None or now - self._probe[0] > self.probe_ttl:
            self._probe = (now, await self.origin_probe())
        return self._probe[1]

    async def health(self) -> tuple[int, dict[str, Any]]:
        report: dict[str, Any] = {"uptime_seconds": round(time.time() - self.started, 1)}
        ready = True
        origin = await self._origin()
        if origin is not None:
            ready &= origin.reachable
            report["origin"] = {"reachable": origin.reachable,
                                "latency_ms": round(origin.seconds * 1000, 2),
                                "detail": origin.detail}
        if self.rules is not None:
            current = self.rules.current
            report["rules"] = {"loaded": True, "version": current.version,
                               "loaded_at": _iso(current.loaded_at),
                               "files": current.file_count, "rules": len(current.rules),
                               "experiments": len(current.experiments),
                               "last_error": self.rules.last_error}
        else:
            report["rules"] = {"loaded": False, "detail": "no rules directory configured"}
        if self.geo is not None:
            report["geo"] = {"type": self.geo.database_type, "built": _iso(self.geo.build_epoch)}
        report["status"] = "ready" if ready else "not ready"
        return (200 if ready else 503), report


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def _json(send: Send, status: int, data: dict[str, Any],
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond(send, status, json.dumps(data).encode(), b"application/json",
                  [(b"cache-control", b"no-store"), *(extra or [])])
