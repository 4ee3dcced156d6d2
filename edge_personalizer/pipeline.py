"""PersonalizeMiddleware: classify -> decide -> forward -> rewrite, around any ASGI app."""

from __future__ import annotations

import hmac
import html
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .classify.classifier import Classifier, merge_headers, request_from_headers
from .classify.client_ip import TrustedProxies, resolve_client_ip
from .classify.profile import InterestMap, ProfileTracker
from .classify.visitor import Visitor
from .proxy.pages import respond
from .rewrite.html import Edit, RewriteAborted, csp_nonce, with_nonce
from .rewrite.stream import ResponseRewriter
from .rules.book import RuleBook
from .rules.evaluator import decide, explain
from .rules.model import NO_DECISION, Decision
from .rules.preview import PREVIEW_PARAM, PreviewSigner, preview_decision
from .rules.segment import ALL_TAG_HEADERS, SegmentKey, segment_of

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/__ep/"
DECIDE_PATH = "/__ep/decide"
FRAGMENT_PREFIX = "/__ep/fragment/"
_ORIGINAL_URI = (b"x-original-uri", b"x-original-url", b"x-ep-url")
DEBUG_HEADER = b"x-ep-debug"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TRACE_LIMIT = 6000   # bytes of the X-EP-Trace header; proxies reject much larger ones


class PipelineObserver(Protocol):
    """What the pipeline reports (metrics implement it)."""

    def personalization_took(self, seconds: float) -> None: ...
    def stage_failed(self, stage: str) -> None: ...
    def decided(self, decision: Decision) -> None: ...
    def bot_seen(self, category: str) -> None: ...


class _Silent:
    def personalization_took(self, seconds: float) -> None:
        pass

    def stage_failed(self, stage: str) -> None:
        pass

    def decided(self, decision: Decision) -> None:
        pass

    def bot_seen(self, category: str) -> None:
        pass


def is_page_view(method: str, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A browser navigation to a document: what a profile learns from."""
    if method != "GET":
        return False
    for name, value in headers:
        if name == b"sec-fetch-dest":
            return value in (b"document", b"iframe")
    return any(name == b"accept" and b"text/html" in value for name, value in headers)


# The response headers personalizing a page reads
_HEAD_READ = frozenset({b"content-type", b"content-encoding", b"content-length",
                        b"cache-control", b"content-security-policy"})


def read_head(headers: Sequence[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The response headers personalization reads, by lower-cased name (repeats joined
    by ", "), read once."""
    out: dict[bytes, str] = {}
    for name, value in headers:
        name = name.lower()
        if name in _HEAD_READ:
            text = value.decode("latin-1")
            out[name] = f"{out[name]}, {text}" if name in out else text
    return out


def _is_html(head: dict[bytes, str]) -> bool:
    return head.get(b"content-type", "").lower().startswith(_HTML_TYPES)


def _private(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Cache-Control that keeps shared caches from storing one visitor's response:
    `public` and `s-maxage` go, `private` is added."""
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


@dataclass
class _Exchange:
    """One request's visitor, and its decision once made."""

    visitor: Visitor
    decide: Callable[[], Decision]
    debug: bool
    preview: bool
    _decision: Decision | None = None

    @property
    def decision(self) -> Decision:
        # Made on first need: before the origin for page views (a redirect answers
        # without it), else only if the response turns out to be HTML.
        if self._decision is None:
            self._decision = self.decide()
        return self._decision


class PersonalizeMiddleware:
    """Personalizes the responses of `app` for each visitor by the rules of a directory.

    Wraps an `OriginProxy` to sit in front of any site, or any ASGI app directly. For each
    request it classifies the visitor (lazily: only what the rules read is computed),
    decides with the serving rule set, answers redirects itself, adds the decision's
    headers and cookies, and keeps the visitor's profile cookie up to date on page views.
    `/__ep/` paths are never handed to `app`. Any error of its own is logged and counted,
    and the response goes out as `app` made it.
    """

    def __init__(self, app: ASGIApp, *, rules: RuleBook | Path | str | None = None,
                 classifier: Classifier | None = None,
                 trusted_proxies: TrustedProxies | None = None,
                 cookie_secure: bool = True, cookie_max_age_days: float = 395.0,
                 debug_token: str | None = None, preview: PreviewSigner | None = None,
                 variant_header: bool = True, keyed_caching: bool = False,
                 shared_max_age: int = 300,
                 cache_tag_headers: Sequence[str] = ALL_TAG_HEADERS,
                 observer: PipelineObserver | None = None) -> None:
        self.app = app
        if isinstance(rules, (str, Path)):
            rules = RuleBook(Path(rules))
        self.rules = rules
        if classifier is None and rules is not None:
            classifier = Classifier()
        self.classifier = classifier
        self.trusted = trusted_proxies or TrustedProxies()
        self.cookie_secure = cookie_secure
        self.cookie_max_age_days = cookie_max_age_days
        self.debug_token = debug_token
        self.preview = preview
        self.variant_header = variant_header
        self.keyed_caching = keyed_caching
        self.shared_max_age = shared_max_age
        self.cache_tag_headers = tuple(cache_tag_headers)
        self.observer: PipelineObserver = observer or _Silent()
        self._interests_version: str | None = None
        self._segments: dict[tuple[tuple[str, str, str], ...], SegmentKey] = {}
        # A decision's page edits by (decision, CSP nonce), for variants without visitor data
        self._edits: dict[tuple[int, str | None],
                          tuple[Decision, tuple[Edit, ...], str, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            if scope["type"] == "http" and self.classifier is not None and (
                    scope["path"] == DECIDE_PATH or scope["path"].startswith(FRAGMENT_PREFIX)):
                await self._edge_endpoint(scope, send)
            else:
                await _not_found(scope, send)
            return
        if scope["type"] != "http" or self.classifier is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            exchange, scope = self._prepare(self.classifier, scope)
        except Exception:
            logger.exception("personalization failed for %s; serving it unchanged",
                             scope["path"])
            self.observer.stage_failed("decide")
            await self.app(scope, receive, send)
            return
        spent = time.perf_counter() - started
        redirect = self._redirect_target(exchange, scope)
        if redirect is not None:
            await self._send_redirect(exchange, redirect, send)
            self.observer.personalization_took(time.perf_counter() - started)
            return

        # The client's own Accept-Encoding (the origin may be asked for identity instead).
        accept_encoding = exchange.visitor.request.headers.get("accept-encoding", "")
        rewrite = _RewritingSend(self, exchange, send, spent, accept_encoding=accept_encoding,
                                 views=BODY_VIEWS in (scope.get("extensions") or ()))
        await self.app(scope, receive, rewrite)

    # Before the origin

    def _prepare(self, classifier: Classifier, scope: Scope) -> tuple[_Exchange, Scope]:
        self._refresh_interests()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        peer = client[0] if client else None
        merged = merge_headers(headers)
        forwarded = merged.get("x-forwarded-for")
        query_string = scope.get("query_string", b"").decode("latin-1")
        preview_token = None
        if PREVIEW_PARAM in query_string:
            pairs = parse_qsl(query_string, keep_blank_values=True)
            preview_token = next((v for k, v in pairs if k == PREVIEW_PARAM), None)
            query_string = urlencode([(k, v) for k, v in pairs if k != PREVIEW_PARAM])
            # The origin never sees the preview token.
            scope = {**scope, "query_string": query_string.encode("latin-1")}
        request = request_from_headers(
            method=scope["method"], path=scope["path"], query_string=query_string,
            host=merged.get("host", ""), headers=merged,
            client_ip=resolve_client_ip(peer, (forwarded,) if forwarded else (), self.trusted),
            trusted_edge=peer in self.trusted)
        visitor = classifier.visitor(request, now=time.time(),
                                     page_view=is_page_view(scope["method"], headers))
        rules = self.rules
        forced = None
        if rules is not None and preview_token and self.preview is not None:
            forced = preview_decision(self.preview, preview_token, rules.current)

        def make_decision() -> Decision:
            if forced is not None:
                return forced
            if rules is None:
                return NO_DECISION
            device = visitor.device
            if device.type == "bot":
                self.observer.bot_seen(device.bot_category or "other")
                if device.bot_category in ("search", "ai"):
                    return NO_DECISION   # crawlers index and learn the page as it is
            decision = decide(rules.current, visitor)
            self.observer.decided(decision)
            return decision

        exchange = _Exchange(visitor, make_decision, self._debug_requested(headers),
                             forced is not None)
        if visitor.page_view or exchange.preview:
            if exchange.decision.changes_page:
                # The page will be rewritten: ask the origin not to compress it.
                scope = {**scope, "headers": [*(h for h in headers
                                                 if h[0] != b"accept-encoding"),
                                               (b"accept-encoding", b"identity")]}
        return exchange, scope

    def _debug_requested(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        if self.debug_token is None:
            return False
        given = next((v for k, v in headers if k == DEBUG_HEADER), None)
        return given is not None and hmac.compare_digest(given, self.debug_token.encode())

    def _refresh_interests(self) -> None:
        tracker = self._tracker
        if tracker is None or self.rules is None:
            return
        current = self.rules.current
        if current.version != self._interests_version:
            tracker.interests = InterestMap(current.interests)
            self._interests_version = current.version

    @property
    def _tracker(self) -> ProfileTracker | None:
        return self.classifier.profiles if self.classifier is not None else None

    # Decisions at the edge

    def _described_scope(self, scope: Scope) -> Scope:
        """The page request an edge asks about: its URI from X-Original-URI (nginx
        auth_request), X-Original-URL, X-EP-URL or ?url=, its headers as they came."""
        headers = scope["headers"]
        uri = next((v.decode("latin-1") for k, v in headers if k in _ORIGINAL_URI), None)
        if uri is None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            uri = query.get("url", "/")
        parts = urlsplit(uri)
        return {**scope, "method": "GET", "path": parts.path or "/",
                "raw_path": (parts.path or "/").encode("latin-1"),
                "query_string": parts.query.encode("latin-1"),
                "headers": [(k, v) for k, v in headers if k not in _ORIGINAL_URI]}

    async def _edge_endpoint(self, scope: Scope, send: Send) -> None:
        if self.classifier is None:
            return
        described = self._described_scope(scope)
        try:
            exchange, described = self._prepare(self.classifier, described)
            decision = exchange.decision
            segment = self._segment(exchange)
        except Exception:
            logger.exception("deciding for %s failed", described["path"])
            self.observer.stage_failed("decide")
            await respond(send, 500, b'{"error": "decision failed"}', b"application/json")
            return
        headers = [(b"x-ep-segment", segment.key.encode()),
                   (b"x-ep-variant", decision.variant_header)]
        if scope["path"] == DECIDE_PATH:
            await self._send_decision(exchange, described, segment, headers, send)
        else:
            await self._send_fragment(exchange, scope["path"][len(FRAGMENT_PREFIX):], segment,
                                      headers, send)

    async def _send_decision(self, exchange: _Exchange, described: Scope, segment: SegmentKey,
                             headers: list[tuple[bytes, bytes]], send: Send) -> None:
        decision = exchange.decision
        location = self._redirect_target(exchange, described)
        if location is not None and decision.redirect is not None:
            headers += [(b"x-ep-redirect", location.encode("latin-1")),
                        (b"x-ep-redirect-status", str(decision.redirect.status).encode())]
        headers += decision.header_lines
        headers += decision.cookie_lines
        cookie = self._decision_cookie(exchange)
        if cookie is not None:
            headers.append((b"set-cookie", cookie))
        body = {
            "segment": segment.key, "tags": list(segment.tags),
            "slots": {slot: {"variant": c.variant, "reason": c.reason, "by": c.by}
                      for slot, c in sorted(decision.slots.items())},
            "redirect": ({"location": location, "status": decision.redirect.status}
                         if location is not None and decision.redirect is not None else None),
            "headers": dict(decision.headers), "cookies": dict(decision.cookies),
        }
        await respond(send, 200, json.dumps(body).encode(), b"application/json",
                       [*headers, (b"cache-control", b"private, no-store")])

    async def _send_fragment(self, exchange: _Exchange, slot: str, segment: SegmentKey,
                             headers: list[tuple[bytes, bytes]], send: Send) -> None:
        choice = exchange.decision.slots.get(slot)
        content = choice.content if choice is not None else None
        if self.keyed_caching:
            headers += [(b"cache-control", f"public, max-age=0, s-maxage="
                                           f"{self.shared_max_age}".encode()),
                        (b"vary", b"X-EP-Segment")]
        else:
            headers.append((b"cache-control", b"private, no-store"))
        if content is None or content.template is None or content.action not in (
                "inner", "replace", "append", "prepend", "before", "after", "text"):
            await respond(send, 204, b"", b"text/html; charset=utf-8", headers)
            return
        payload = content.template.render(exchange.visitor)
        if content.action == "text":
            payload = html.escape(payload)
        await respond(send, 200, payload.encode(), b"text/html; charset=utf-8", headers)

    def _decision_cookie(self, exchange: _Exchange) -> bytes | None:
        tracker = self._tracker
        visitor = exchange.visitor
        if tracker is None or not visitor.page_view:
            return None
        profile = visitor.profile
        for choice in exchange.decision.slots.values():
            if choice.reason == "experiment":
                profile = profile.with_variant(choice.by, choice.variant)
        if not (profile.stored and profile.changed):
            return None
        return tracker.set_cookie_header(profile, secure=self.cookie_secure,
                                         max_age_days=self.cookie_max_age_days)

    # Redirects

    def _redirect_target(self, exchange: _Exchange, scope: Scope) -> str | None:
        visitor = exchange.visitor
        if scope["method"] not in ("GET", "HEAD") or not (visitor.page_view or exchange.preview):
            return None   # API calls and assets are never redirected
        redirect = exchange.decision.redirect
        if redirect is None or visitor.device.type == "bot":
            return None   # crawlers see the page itself
        target = urlsplit(redirect.location)
        if target.path == scope["path"] and (not target.netloc
                                             or target.netloc == visitor.request.host):
            return None   # loop guard: already on the landing page
        location = redirect.location
        query = scope.get("query_string", b"").decode("latin-1")
        if redirect.keep_query and query:
            location += ("&" if target.query else "?") + query
        return location

    async def _send_redirect(self, exchange: _Exchange, location: str, send: Send) -> None:
        redirect = exchange.decision.redirect
        status = redirect.status if redirect else 302
        headers = [(b"location", location.encode("latin-1")),
                   (b"cache-control", b"private, no-store"), (b"content-length", b"0")]
        headers += self._extra_headers(exchange)
        if not exchange.preview:
            cookie = self._decision_cookie(exchange)   # the landing visit counts too
            if cookie is not None:
                headers.append((b"set-cookie", cookie))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    # After the origin

    def _extra_headers(self, exchange: _Exchange, *,
                       keyed: bool = False) -> list[tuple[bytes, bytes]]:
        """The decision's headers and cookies, and the debug trace if asked for. With keyed
        caching the page is shared by its segment, so cookies come from /__ep/decide."""
        decision = exchange.decision
        out = list(decision.header_lines)
        if not keyed:
            out += decision.cookie_lines
        if exchange.debug and self.rules is not None:
            trace = explain(self.rules.current, exchange.visitor)
            text = json.dumps(trace, separators=(",", ":"), ensure_ascii=True, default=str)
            out.append((b"x-ep-trace", text[:_TRACE_LIMIT].encode("ascii")))
        return out

    def _finish_headers(self, message: Message, exchange: _Exchange,
                        head: dict[bytes, str]) -> Message:
        """Headers of a page: the decision's own, the profile cookie, and what keeps
        caches correct. Anything but an HTML page passes as it is."""
        if not _is_html(head) or message["status"] >= 400 and not exchange.debug:
            return message
        headers = list(message.get("headers", []))
        try:
            headers += self._extra_headers(exchange, keyed=self.keyed_caching)
            if not self.keyed_caching:
                cookie = self._profile_cookie(message, exchange)
                if cookie is not None:
                    headers.append((b"set-cookie", cookie))
            if self.rules is not None:
                headers = self._cache_headers(headers, exchange, head)
        except Exception:
            logger.exception("personalizing the headers of %s failed; served unchanged",
                             exchange.visitor.request.path)
            self.observer.stage_failed("headers")
            return message
        return {**message, "headers": headers}

    def _segment(self, exchange: _Exchange) -> SegmentKey:
        """The decision's segment key; the same choices of static variants give the same
        key, so those are remembered (bounded) instead of hashed on every request."""
        key = exchange.decision.static_choices
        if key is None:
            return segment_of(exchange.decision, exchange.visitor)
        segment = self._segments.get(key)
        if segment is None:
            if len(self._segments) > 4096:
                self._segments.clear()
            segment = self._segments[key] = segment_of(exchange.decision, exchange.visitor)
        return segment

    def _cache_headers(self, headers: list[tuple[bytes, bytes]], exchange: _Exchange,
                       head: dict[bytes, str]) -> list[tuple[bytes, bytes]]:
        """Cache-Control, Vary and cache tags for a page the rules may personalize.

        By default it is private: no shared cache stores one visitor's page for others.
        With keyed caching, shared caches may keep it per segment (X-EP-Segment), which
        depends only on the variants chosen, never on the visitor's raw data.
        """
        if exchange.preview:
            headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
            return [*headers, (b"cache-control", b"private, no-store")]
        headers += self._segment(exchange).headers_for(self.cache_tag_headers)
        origin_cache = head.get(b"cache-control", "").lower()
        origin_private = "private" in origin_cache or "no-store" in origin_cache
        if self.keyed_caching and not origin_private:
            headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
            return [*headers,
                    (b"cache-control",
                     f"public, max-age=0, s-maxage={self.shared_max_age}".encode()),
                    (b"vary", b"X-EP-Segment"), (b"netlify-vary", b"header=X-EP-Segment")]
        vary = self.rules.current.vary_header if self.rules is not None else b""
        if vary:
            headers.append((b"vary", vary))
        if b"cache-control" not in head and not exchange.decision.sets_cache_control:
            headers.append((b"cache-control", b"private"))   # nothing to merge with
            return headers
        return _private(headers)

    def _response_rewriter(self, exchange: _Exchange, head: dict[bytes, str],
                           accept_encoding: str, *,
                           views: bool = False) -> ResponseRewriter | None:
        """The rewriter for a page whose decision changes slots; None if none applies."""
        if self.rules is None:
            return None
        nonce = csp_nonce(head.get(b"content-security-policy", ""))
        decision = exchange.decision
        if decision.static_choices is None:   # the variants print visitor data
            edits, head_html, body_end = self._page_edits(decision, exchange.visitor, nonce)
        else:
            # The same for everyone this decision is made for: worked out once.
            key = (id(decision), nonce)
            known = self._edits.get(key)
            if known is None or known[0] is not decision:
                if len(self._edits) >= 1024:
                    self._edits.clear()
                known = self._edits[key] = (
                    decision, *self._page_edits(decision, exchange.visitor, nonce))
            _, edits, head_html, body_end = known
        if not edits and not head_html and not body_end:
            return None
        return ResponseRewriter(
            edits, content_type=head.get(b"content-type", ""),
            content_encoding=head.get(b"content-encoding", ""),
            accept_encoding=accept_encoding, head=head_html, body_end=body_end,
            on_error=self._rewrite_failed, views=views)

    def _rewrite_failed(self, exc: Exception) -> None:
        self.observer.stage_failed("rewrite")

    def _page_edits(self, decision: Decision, visitor: Visitor,
                    nonce: str | None) -> tuple[tuple[Edit, ...], str, str]:
        """The page edits of a decision's slots, and the HTML to inject in the head and
        at the end of the body."""
        slots = self.rules.current.slots if self.rules is not None else {}
        edits: list[Edit] = []
        injected = {"head": "", "body_end": ""}
        for name, choice in decision.slots.items():
            content = choice.content
            if content is None:
                continue
            payload = content.template.render(visitor) if content.template else ""
            if name in injected:
                injected[name] += with_nonce(payload, nonce)
            elif name in slots:
                edits.append(Edit(slots[name].selector, content.action, payload,
                                  content.attribute))
        return tuple(edits), injected["head"], injected["body_end"]

    def _variant_headers(self, exchange: _Exchange, spent: float) -> list[tuple[bytes, bytes]]:
        out = [(b"server-timing", f"ep;dur={spent * 1000:.2f}".encode())]
        if self.variant_header:
            out.append((b"x-ep-variant", exchange.decision.variant_header))
        return out

    def _profile_cookie(self, message: Message, exchange: _Exchange) -> bytes | None:
        if message["status"] >= 400 or exchange.preview:   # an HTML page: checked before
            return None
        return self._decision_cookie(exchange)


# A scope extension of the product's own server: response body messages may carry
# memoryviews (the unchanged rest of an origin chunk goes out without a copy).
BODY_VIEWS = "edge_personalizer.body_views"

_STALE = frozenset({b"content-length", b"etag", b"content-md5", b"content-encoding"})


class _RewritingSend:
    """The `send` the wrapped app gets: personalizes headers, rewrites HTML bodies.

    The response start is held back while the rewriter reads the first KiB (to learn the
    charset); every error of ours is contained, and the origin's bytes go on unchanged.
    """

    def __init__(self, middleware: PersonalizeMiddleware, exchange: _Exchange, send: Send,
                 spent: float, *, accept_encoding: str, views: bool = False) -> None:
        self.middleware = middleware
        self.views = views
        self.exchange = exchange
        self.send = send
        self.spent = spent
        self.accept_encoding = accept_encoding
        self.start: Message | None = None
        self.rewriter: ResponseRewriter | None = None
        self.aborted = False
        self.head: dict[bytes, str] = {}
        self.consumed = 0   # origin body bytes fed to the rewriter
        self.produced = 0   # bytes it gave back
        self.held: list[bytes] = []   # the origin's body while the start is held back

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            began = time.perf_counter()
            self.head = read_head(message.get("headers", ()))
            message = self.middleware._finish_headers(message, self.exchange, self.head)
            self.rewriter = self._rewriter_for(message)
            self.spent += time.perf_counter() - began
            if self.rewriter is None:
                self.middleware.observer.personalization_took(self.spent)
                await self.send(message)
            else:
                self.start = message
            return
        if self.aborted:
            return
        if message["type"] != "http.response.body" or self.rewriter is None:
            await self.send(message)
            return
        try:
            await self._body(message)
        except _Unchanged:
            logger.exception("rewriting %s failed; served unchanged",
                             self.exchange.visitor.request.path)
            self.middleware.observer.stage_failed("rewrite")
            await self._send_unchanged(message)
        except RewriteAborted:
            # Part of the page is out and the rest cannot be matched up: an incomplete
            # response (the connection closes) is honest; a mangled page would not be.
            logger.exception("rewriting %s failed mid-page; closing the connection",
                             self.exchange.visitor.request.path)
            self.middleware.observer.stage_failed("rewrite")
            self.aborted = True

    def _rewriter_for(self, message: Message) -> ResponseRewriter | None:
        exchange = self.exchange
        if not (200 <= message["status"] < 300) or not _is_html(self.head):
            return None
        try:
            if not exchange.decision.changes_page:
                return None
            return self.middleware._response_rewriter(exchange, self.head,
                                                      self.accept_encoding, views=self.views)
        except Exception:
            logger.exception("preparing the rewrite of %s failed; served unchanged",
                             exchange.visitor.request.path)
            self.middleware.observer.stage_failed("rewrite")
            return None

    async def _body(self, message: Message) -> None:
        rewriter = self.rewriter
        if rewriter is None:
            return
        began = time.perf_counter()
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        try:
            out = rewriter.feed(chunk) if chunk else (None if not rewriter.decided else b"")
            # A long unchanged rest is sent after `out` as it came, not copied onto it.
            rest = rewriter.take_rest() if self.views else None
            tail = b"" if more else rewriter.finish()
            if rest is None and tail:
                out, tail = (out or b"") + tail, b""
        except RewriteAborted:
            raise
        except Exception as exc:
            # A fault of ours: unchanged while nothing is out yet, else cut off honestly.
            if self.start is None:
                raise RewriteAborted(str(exc)) from exc
            raise _Unchanged from exc
        if self.start is not None and not rewriter.decided:
            self.held.append(chunk)
        self.consumed += len(chunk)
        self.produced += (len(out) if out else 0) + (len(rest) if rest else 0) + len(tail)
        self.spent += time.perf_counter() - began
        if self.start is not None and rewriter.decided:
            await self._send_start(rewriter)
        if out is None or self.start is not None:
            return
        if rest is None:
            await self.send({"type": "http.response.body", "body": out, "more_body": more})
            return
        pieces = [piece for piece in (out, rest, tail) if piece]
        for index, piece in enumerate(pieces, 1):
            await self.send({"type": "http.response.body", "body": piece,
                             "more_body": more or index < len(pieces)})

    async def _send_unchanged(self, message: Message) -> None:
        """The origin's response as it came (with the decision's headers), from the
        start that was held back and every body byte received so far."""
        self.rewriter = None
        start, self.start = self.start, None
        if start is None:
            return
        self.middleware.observer.personalization_took(self.spent)
        await self.send(start)
        body = b"".join([*self.held, message.get("body", b"")])
        self.held = []
        await self.send({"type": "http.response.body", "body": body,
                         "more_body": message.get("more_body", False)})

    async def _send_start(self, rewriter: ResponseRewriter) -> None:
        start = self.start
        if start is None:
            return
        self.start = None
        headers: list[tuple[bytes, bytes]]
        if rewriter.rewriting:
            length = self.head.get(b"content-length", "")
            headers = [h for h in start.get("headers", ()) if h[0].lower() not in _STALE]
            if rewriter.content_encoding:
                headers.append((b"content-encoding", rewriter.content_encoding.encode()))
            if rewriter.verbatim and length.isdigit() and int(length) >= self.consumed:
                # The edits are behind us and the rest passes as it comes: the length
                # is known, and the client gets it instead of chunked encoding.
                total = self.produced + int(length) - self.consumed
                headers.append((b"content-length", str(total).encode()))
            headers += self.middleware._variant_headers(self.exchange, self.spent)
        else:
            headers = start.get("headers", [])
        self.middleware.observer.personalization_took(self.spent)
        await self.send({**start, "headers": headers})


class _Unchanged(Exception):
    """The rewriter failed before any of the page was sent: it goes out unchanged."""


async def _not_found(scope: Scope, send: Send) -> None:
    # The reserved prefix belongs to us: never forwarded to the site, whatever the path.
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await respond(send, 404, b"Not found: /__ep/ is reserved for edge-personalizer\n",
                  b"text/plain; charset=utf-8")
