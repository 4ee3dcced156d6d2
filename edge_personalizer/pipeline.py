"""PersonalizeMiddleware: classify -> decide -> forward -> rewrite, around any ASGI app."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .classify.classifier import Classifier, request_info
from .classify.client_ip import TrustedProxies, resolve_client_ip
from .classify.profile import InterestMap, ProfileTracker
from .classify.visitor import Visitor
from .rules.book import RuleBook

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/__ep/"
_HTML_TYPES = (b"text/html", b"application/xhtml+xml")


class PipelineObserver(Protocol):
    """What the pipeline reports (metrics implement it)."""

    def personalization_took(self, seconds: float) -> None: ...
    def stage_failed(self, stage: str) -> None: ...


class _Silent:
    def personalization_took(self, seconds: float) -> None:
        pass

    def stage_failed(self, stage: str) -> None:
        pass


def is_page_view(method: str, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A browser navigation to a document: what a profile learns from."""
    if method != "GET":
        return False
    for name, value in headers:
        if name == b"sec-fetch-dest":
            return value in (b"document", b"iframe")
    return any(name == b"accept" and b"text/html" in value for name, value in headers)


def _is_html(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-type" and value.lower().startswith(_HTML_TYPES)
               for name, value in headers)


def _private(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Cache-Control that keeps shared caches from storing a response carrying one
    visitor's cookie: `public` and `s-maxage` go, `private` is added."""
    directives: list[bytes] = []
    rest: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() == b"cache-control":
            directives += [d.strip() for d in value.split(b",") if d.strip()]
        else:
            rest.append((name, value))
    kept = [d for d in directives if d.lower() != b"public"
            and not d.lower().startswith(b"s-maxage") and d.lower() != b"private"]
    return [*rest, (b"cache-control", b", ".join([b"private", *kept]))]


class PersonalizeMiddleware:
    """Personalizes the HTML responses of `app` for each visitor.

    Wraps an `OriginProxy` to sit in front of any site, or any ASGI app directly. For each
    request it classifies the visitor (lazily: only what is read gets computed), keeps
    the visitor's profile cookie up to date on page views, and serves the rule set of a
    rules directory. `/__ep/` paths are never handed to `app`. Any error of its own is
    logged and counted, and the response goes out as `app` made it.
    """

    def __init__(self, app: ASGIApp, *, rules: RuleBook | Path | str | None = None,
                 classifier: Classifier | None = None,
                 trusted_proxies: TrustedProxies | None = None,
                 cookie_secure: bool = True, cookie_max_age_days: float = 395.0,
                 observer: PipelineObserver | None = None) -> None:
        self.app = app
        if isinstance(rules, (str, Path)):
            rules = RuleBook(Path(rules))
        self.rules = rules
        self.classifier = classifier
        self.trusted = trusted_proxies or TrustedProxies()
        self.cookie_secure = cookie_secure
        self.cookie_max_age_days = cookie_max_age_days
        self.observer: PipelineObserver = observer or _Silent()
        self._interests_version: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            await _not_found(scope, send)
            return
        if scope["type"] != "http" or self.classifier is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            visitor = self._classify(scope)
        except Exception:
            logger.exception("classification failed for %s; serving unpersonalized",
                             scope["path"])
            self.observer.stage_failed("classify")
            await self.app(scope, receive, send)
            return
        spent = time.perf_counter() - started

        async def personalized_send(message: Message) -> None:
            nonlocal spent
            if message["type"] == "http.response.start":
                began = time.perf_counter()
                message = self._finish_headers(message, visitor)
                spent += time.perf_counter() - began
                self.observer.personalization_took(spent)
            await send(message)

        await self.app(scope, receive, personalized_send)

    def _classify(self, scope: Scope) -> Visitor:
        assert self.classifier is not None
        self._refresh_interests()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
        host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
        request = request_info(
            method=scope["method"], path=scope["path"],
            query_string=scope.get("query_string", b"").decode("latin-1"), host=host,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            client_ip=resolve_client_ip(peer, forwarded, self.trusted))
        return self.classifier.visitor(request, now=time.time(),
                                       page_view=is_page_view(scope["method"], headers))

    def _refresh_interests(self) -> None:
        tracker = self._tracker
        if tracker is None or self.rules is None:
            return
        current = self.rules.current
        if current.version != self._interests_version:
            tracker.interests = InterestMap(current.interests())
            self._interests_version = current.version

    @property
    def _tracker(self) -> ProfileTracker | None:
        return self.classifier.profiles if self.classifier is not None else None

    def _finish_headers(self, message: Message, visitor: Visitor) -> Message:
        tracker = self._tracker
        if tracker is None or not visitor.page_view or message["status"] >= 400:
            return message
        headers = list(message.get("headers", []))
        if not _is_html(headers):
            return message
        try:
            profile = visitor.profile
            if not (profile.stored and profile.changed):
                return message
            cookie = tracker.set_cookie_header(profile, secure=self.cookie_secure,
                                               max_age_days=self.cookie_max_age_days)
        except Exception:
            logger.exception("profile update failed for %s; page served without it",
                             visitor.request.path)
            self.observer.stage_failed("profile")
            return message
        headers = _private(headers)
        headers.append((b"set-cookie", cookie))
        return {**message, "headers": headers}


async def _not_found(scope: Scope, send: Send) -> None:
    # The reserved prefix belongs to us: never forwarded to the site, whatever the path.
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = b"Not found: /__ep/ is reserved for edge-personalizer\n"
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
