"""create_app(settings) -> the ASGI app the server runs: wiring and lifespan, no logic."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from .admin import AdminEndpoints
from .classify.client_ip import TrustedProxies
from .classify.geo import GeoDatabase
from .logs import AccessLog
from .metrics import Metrics
from .pipeline import PersonalizeMiddleware
from .proxy import OriginProxy
from .rules.book import RuleBook
from .settings import Settings

logger = logging.getLogger(__name__)


class EdgeApp:
    """The whole product as one ASGI app: access log > admin > personalize > origin proxy.

    Building it opens every resource that can be wrong (rules, geo database), so a bad
    setting fails at startup; the lifespan closes them on shutdown.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        trusted = TrustedProxies(settings.trusted_proxies)
        self.metrics = Metrics()
        self.geo = GeoDatabase(settings.geo_db) if settings.geo_db else None
        self.rules = RuleBook(settings.rules_dir) if settings.rules_dir else None
        if self.rules is not None:
            self.metrics.rules_loaded.set(self.rules.current.loaded_at)
        self.proxy = OriginProxy(
            settings.origin_url, trusted_proxies=trusted,
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            max_body_bytes=settings.max_body_bytes, observer=self.metrics)
        personalized = PersonalizeMiddleware(self.proxy, rules=self.rules)
        token = settings.admin_token.reveal() if settings.admin_token else None
        admin = AdminEndpoints(personalized, metrics=self.metrics, token=token,
                               origin_probe=self.proxy.probe, rules=self.rules,
                               geo=self.geo.info if self.geo else None)
        self.app: ASGIApp = AccessLog(admin, metrics=self.metrics, trusted=trusted,
                                      enabled=settings.access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                logger.info("forwarding to %s; rules: %s; geo database: %s",
                            self.settings.origin_url,
                            f"{self.settings.rules_dir} (version {self.rules.current.version})"
                            if self.rules else "none",
                            self.geo.info.database_type if self.geo else "none")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        await self.proxy.aclose()
        if self.geo is not None:
            self.geo.close()


def create_app(settings: Settings) -> EdgeApp:
    """Build the product's ASGI app; raises our errors for bad rules or geo database."""
    return EdgeApp(settings)
