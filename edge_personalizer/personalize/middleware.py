"""PersonalizeMiddleware: classify -> decide -> forward -> rewrite, around any ASGI app."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..classify.classifier import Classifier
from ..learn.attribution import Learning
from ..proxy.client_ip import TrustedProxies
from ..proxy.headers import DEBUG_HEADER, OUR_RESPONSE_HEADERS
from ..proxy.origin import OriginProxy
from ..proxy.pages import send_error_page
from ..rewrite.first_bytes import FirstBytesMemo
from ..rules.book import RuleBook
from ..rules.preview import PreviewSigner
from .exchange import Exchange, NoObserver, Observer
from .fail_open import FailOpen
from .page_edits import PageEditor
from .personalizer import CookiePolicy, Personalizer
from .response_headers import CachePolicy, PageHeaders, cookies_marked
from .rewriting import RewritingSend
from .segments import ALL_TAG_HEADERS
from .slot_presence import SlotPresence


class LowerCaseNames:
    """`app`, with the names of its response headers lower-case: a site app may send
    `Content-Type` or `Set-Cookie` (Django does), which the checks past the edges would
    not know. The X-EP- headers are ours both ways, as for an origin (proxy/headers.py):
    the app gets no X-EP-Debug (the admin token), and its own X-EP-Segment and the like
    do not stand beside ours."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def lower_case(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (name, bytes(value)) for name, value in (
                        (bytes(name).lower(), value) for name, value in message.get("headers", ()))
                    if name not in OUR_RESPONSE_HEADERS]}
            await send(message)

        if any(name == DEBUG_HEADER for name, _ in scope.get("headers", ())):
            scope = {**scope, "headers": [(name, value) for name, value in scope["headers"]
                                          if name != DEBUG_HEADER]}
        await self.app(scope, receive, lower_case)


class PersonalizeMiddleware:
    """Personalizes the responses of `app` for each visitor by the rules of a directory.

    Wraps an `OriginProxy` to sit in front of any site, or any ASGI app directly. For each
    request it classifies the visitor (lazily: only what the rules read is computed),
    decides with the serving rule set, answers redirects itself, and hands the app a
    `send` that adds the decision's headers and cookies and rewrites the page. Any error
    of its own is logged and counted, and the response goes out as `app` made it.
    """

    def __init__(self, app: ASGIApp, *, rules: RuleBook | Path | str | None = None,
                 classifier: Classifier | None = None,
                 trusted_proxies: TrustedProxies | None = None,
                 cookie_secure: bool = True, cookie_max_age_days: float = 395.0,
                 debug_token: str | None = None, preview: PreviewSigner | None = None,
                 variant_header: bool = False, keyed_caching: bool = False,
                 shared_max_age: int = 300,
                 cache_tag_headers: Sequence[str] = ALL_TAG_HEADERS,
                 first_bytes: FirstBytesMemo | None = None, learning: Learning | None = None,
                 compress_pages: bool = True,
                 observer: Observer | None = None,
                 clock: Callable[[], float] = time.time, learn_slots: bool = True,
                 head_hold_seconds: float = 0.5) -> None:
        """`learn_slots=False`: every page is taken to have every slot of the rules, as a
        replay needs (its stand-in pages are not the site's)."""
        # Header names are lower-case past the edges: the origin's are as the proxy's
        # clients read them; any other app's are made so here.
        self.app = app if isinstance(app, OriginProxy) else LowerCaseNames(app)
        self.rules = RuleBook(Path(rules)) if isinstance(rules, (str, Path)) else rules
        if classifier is None and self.rules is not None:
            classifier = Classifier()
        self.fail_open = FailOpen(observer or NoObserver())
        self.personalizer: Personalizer | None = None
        self.page_headers: PageHeaders | None = None
        if classifier is not None:   # else there is nothing to personalize with
            self.personalizer = Personalizer(
                rules=self.rules, classifier=classifier, trusted=trusted_proxies,
                debug_token=debug_token, preview=preview, observer=self.fail_open.observer,
                learning=learning, clock=clock, keyed_segments=keyed_caching,
                slot_presence=SlotPresence(self.rules, learn=learn_slots,
                                           hold_seconds=head_hold_seconds),
                cookies=CookiePolicy(cookie_secure, cookie_max_age_days))
            self.page_headers = PageHeaders(self.personalizer, rules=self.rules, cache=CachePolicy(
                keyed_caching, shared_max_age, tuple(cache_tag_headers), variant_header))
        self.editor = PageEditor(self.rules, memo=first_bytes or FirstBytesMemo())
        self.compress_pages = compress_pages   # rewritten pages compressed for the client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        personalizer, headers, fail_open = self.personalizer, self.page_headers, self.fail_open
        if scope["type"] != "http" or personalizer is None or headers is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exchange: Exchange | None = None
        with fail_open.stage("decide", scope["path"]):
            exchange = personalizer.begin(scope)                      # classify, decide
        if exchange is None:
            await self.app(scope, receive, send)                      # as if we were not here
            return
        location = personalizer.redirect_target(exchange, exchange.scope)
        if location is not None:
            await self._redirect(exchange, location, send, headers)
            fail_open.observer.personalization_took(time.perf_counter() - started)
            return
        if scope["method"] == "HEAD" and exchange.scope["method"] == "GET":
            send = WithoutBody(send)   # (asked as its GET: Personalizer.begin)
        responder = RewritingSend(                                    # headers, rewrite
            exchange, send, headers=headers, editor=self.editor, fail_open=fail_open,
            spent=time.perf_counter() - started,
            # the client's own Accept-Encoding (the origin may be asked for identity)
            accept_encoding=exchange.visitor.request.headers.get("accept-encoding", "")
            if self.compress_pages else "")
        try:
            await self.app(exchange.scope, receive, responder.take)   # forward
            if responder.on_time.sending is not None:   # its head went out on time
                await responder.finish()
        finally:
            responder.close()
        if responder.start is not None:
            # The app ended before the page did (the origin broke off) while its head was
            # held back: nothing reached the visitor, so the 502 can still be said.
            await send_error_page(send, 502, "The site's server broke off its answer. "
                                  "Please try again in a moment.", scope["headers"])

    async def _redirect(self, exchange: Exchange, location: str, send: Send,
                        headers: PageHeaders) -> None:
        redirect = exchange.decision.redirect
        status = redirect.status if redirect else 302
        lines = [(b"location", location.encode("latin-1")),
                 (b"cache-control", b"private, no-store"), (b"content-length", b"0")]
        exchange.settle_no_slots()   # the visitor sees a redirect: no variant, no exposure
        exchange.served(redirected=True)
        lines += headers.decision_headers(exchange)
        if not exchange.preview:
            cookie = headers.personalizer.profile_cookie(exchange)   # the landing visit counts
            if cookie is not None:
                lines.append((b"set-cookie", cookie))
        lines += cookies_marked(lines)
        await send({"type": "http.response.start", "status": status, "headers": lines})
        await send({"type": "http.response.body", "body": b""})


class WithoutBody:
    """A `send` with every body message emptied: the answer to a HEAD asked as its GET."""

    def __init__(self, send: Send) -> None:
        self.send = send

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await self.send(message)
