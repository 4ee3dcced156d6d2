"""Decisions for edges: /__ep/decide (the decision as headers and JSON, for a CDN or
nginx auth_request in front) and /__ep/fragment/<slot> (one slot's variant as HTML)."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from starlette.types import Receive, Scope, Send

from ..errors import RequestRejected
from ..personalize.exchange import Exchange
from ..personalize.fail_open import FailOpen
from ..personalize.response_headers import PageHeaders, keyed_as
from ..personalize.segments import SEGMENT_HEADER, Segment
from ..proxy.client_ip import client_address
from ..proxy.pages import respond
from ..rules.fields import suggest
from .router import Route

DECIDE_PATH = "/__ep/decide"
FRAGMENT_PREFIX = "/__ep/fragment/"
_ORIGINAL_URI = (b"x-original-uri", b"x-original-url", b"x-ep-url")
_VARY_PAGE = b"X-EP-Segment, X-Original-URI, X-Original-URL, X-EP-URL"
_SEGMENT_HEADER = SEGMENT_HEADER.encode()
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"   # with letters, digits and "_.-": kept as they are
_FRAGMENT_ACTIONS = frozenset({"inner", "replace", "append", "prepend", "before", "after",
                               "text"})


def described_scope(scope: Scope) -> Scope:
    """The page request an edge asks about: its URI from X-Original-URI (nginx
    auth_request), X-Original-URL, X-EP-URL or ?url=, its headers as they came; its path
    decoded as a server gives it, raw path and query percent-encoded.

    RequestRejected (400) when those headers name different pages: an edge sets one of
    them and forwards the visitor's headers, so the other could be the visitor's, and
    which came first says nothing of which the edge set."""
    headers = scope["headers"]
    raw = {v.decode("latin-1") for k, v in headers if k in _ORIGINAL_URI}
    given = sorted({k.decode() for k, _ in headers if k in _ORIGINAL_URI})
    urls = {v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            if k == "url"}   # (arrives decoded: compared with the headers decoded)
    asked = urls.pop() if len(urls) == 1 else None
    if urls or asked is not None:
        given.append("?url=")
    differs = asked is not None and raw and {unquote(v) for v in raw} != {asked}
    if len(raw) > 1 or urls or differs:   # (urls: a second ?url= left over)
        raise RequestRejected(f"the page is named more than once, differently "
                              f"({', '.join(given)}): the edge must name it once (one of "
                              "X-Original-URI, X-Original-URL, X-EP-URL or ?url=) and clear "
                              "the other headers", status=400)
    uri = raw.pop() if raw else asked or "/"
    # ?url= arrives decoded: what a request line cannot hold (controls, spaces, non-ASCII)
    # is encoded again, or it would end up raw in X-EP-Redirect (issue 20, item 14).
    parts = urlsplit(quote(uri, safe=_URI_SAFE))
    path = parts.path or "/"
    return {**scope, "method": "GET", "path": unquote(path), "raw_path": path.encode("ascii"),
            "query_string": parts.query.encode("latin-1"),
            "headers": [(k, v) for k, v in headers if k not in _ORIGINAL_URI]}


class EdgeDecisions:
    """The decision for a page, without the page: what an edge needs to serve it."""

    def __init__(self, headers: PageHeaders, *, trusted_only: bool = False) -> None:
        self.headers = headers
        self.personalizer = headers.personalizer
        self.fail_open = FailOpen(self.personalizer.observer)
        self.trusted_only = trusted_only   # edge_trusted_only: anyone else gets a 403

    async def _refused(self, scope: Scope, send: Send) -> bool:
        """Whether the asker is refused: with edge_trusted_only, anyone but a trusted
        proxy (a decision counts its exposures, and names the rules that made it)."""
        if not self.trusted_only or client_address(scope, self.personalizer.trusted).trusted_peer:
            return False
        await respond(send, 403, b"this endpoint answers the site's trusted proxies only "
                      b"(edge_trusted_only)\n", b"text/plain; charset=utf-8",
                      [(b"cache-control", b"no-store")])
        return True

    def prefixes(self) -> dict[str, Route]:
        return {FRAGMENT_PREFIX: Route(self.fragment)}

    def routes(self) -> dict[str, Route]:
        return {DECIDE_PATH: Route(self.decide)}

    async def _begin(self, scope: Scope, send: Send, *,
                     named_segment: bool = True) -> tuple[Exchange, Segment] | None:
        try:
            described = described_scope(scope)
        except RequestRejected as exc:
            body = json.dumps({"error": str(exc)}).encode()
            await respond(send, exc.status, body, b"application/json",
                          [(b"cache-control", b"no-store")])
            return None
        if not named_segment:
            # /__ep/decide works the segment out: a segment header the visitor sent along
            # (an edge forwards their headers) must not choose it for them.
            described["headers"] = [(k, v) for k, v in described["headers"]
                                    if k != _SEGMENT_HEADER]
        begun = None
        with self.fail_open.stage("decide", described["path"]):
            exchange = self.personalizer.begin(described)
            begun = exchange, self.headers.segment(exchange)
        if begun is None:   # our own error: the edge gets a clear 500, never a traceback
            await respond(send, 500, b'{"error": "decision failed"}', b"application/json")
        return begun

    def _settle_known(self, exchange: Exchange) -> None:
        """Drops the choices for the slots the page is known (from its views through the
        proxy) to lack, or to hide (inside a slot whose variant takes away what it held):
        the visitor will not see their variants, so none are named or counted. (The
        segment stays that of the whole decision: the page made for it is.)"""
        with self.fail_open.stage("slots", exchange.visitor.request.path):
            slots = self.personalizer.slots
            gone = slots.known_gone(exchange.page, exchange.decision)
            if gone:
                exchange.settle(slots.trim(exchange.decision, gone))

    async def decide(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._refused(scope, send):
            return
        begun = await self._begin(scope, send, named_segment=False)
        if begun is None:
            return
        exchange, segment = begun
        location = self.personalizer.redirect_target(exchange, exchange.scope)
        redirect = exchange.decision.redirect if location is not None else None
        if redirect is not None:   # the edge redirects: the visitor is shown no variant
            exchange.settle_no_slots()
        else:
            self._settle_known(exchange)
        exchange.served(redirected=redirect is not None)
        decision = exchange.decision
        headers = [(b"x-ep-segment", segment.key.encode())]
        if decision.variant_header:   # no empty header when no slot changes
            headers.append((b"x-ep-variant", decision.variant_header))
        if location is not None and redirect is not None:
            headers += [(b"x-ep-redirect", location.encode("latin-1")),
                        (b"x-ep-redirect-status", str(redirect.status).encode())]
        headers += decision.header_lines
        # The profile cookie is the first Set-Cookie: an edge that reads one header of a
        # name (nginx's $upstream_http_set_cookie) still hands every visitor a profile.
        # The rule's cookies follow; each Set-Cookie after the first is also an
        # X-EP-Cookie-<n> for such edges (with no profile to set, a rule's is the first).
        cookie = self.personalizer.profile_cookie(exchange)
        cookies = [line for _, line in decision.cookie_lines]
        if cookie is not None:
            cookies.insert(0, cookie)
        headers += [(b"set-cookie", line) for line in cookies]
        headers += [(b"x-ep-cookie-%d" % number, line)
                    for number, line in enumerate(cookies[1:], 1)]
        body: dict[str, Any] = {
            "segment": segment.key, "tags": list(segment.tags),
            "slots": {slot: {"variant": c.variant, "reason": c.reason, "by": c.by}
                      for slot, c in sorted(decision.slots.items())},
            "redirect": ({"location": location, "status": redirect.status}
                         if redirect is not None else None),
            "headers": dict(decision.headers), "cookies": dict(decision.cookies),
            "predicted": [{"category": name, "score": score}
                          for name, score in exchange.visitor.predicted],
        }
        await respond(send, 200, json.dumps(body).encode(), b"application/json",
                      [*headers, (b"cache-control", b"private, no-store")])

    async def fragment(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._refused(scope, send):
            return
        slot = scope["path"][len(FRAGMENT_PREFIX):]
        rules = self.personalizer.rules
        declared = rules.current.slots if rules is not None else {}
        if slot not in declared:   # a typo in an include must not look like "no variant"
            names = ", ".join(sorted(declared)) or "none"
            message = f"no slot named {slot!r}{suggest(slot, declared)} (the rules' slots: {names})"
            await respond(send, 404, message.encode(), b"text/plain; charset=utf-8",
                          [(b"cache-control", b"no-store")])
            return
        begun = await self._begin(scope, send)
        if begun is None:
            return
        exchange, segment = begun
        self._settle_known(exchange)   # (a slot the page hides or lacks: no fragment)
        exchange.served(only=slot)
        headers = [(b"x-ep-segment", segment.key.encode())]
        if self.headers.cache.variant_header:
            headers.append((b"x-ep-variant", exchange.decision.variant_header))
        choice = exchange.decision.slots.get(slot)
        content = choice.content if choice is not None else None
        if self.headers.cache.keyed and segment.shareable and keyed_as(exchange, segment):
            # The fragment is for one page (which may lack or hide its slot): unless the
            # URL names it (?url=), the headers that may are part of the key, absent too.
            in_url = any(name == "url" for name, _ in parse_qsl(
                scope.get("query_string", b"").decode("latin-1")))
            headers += [(b"cache-control", self.headers.shared_cache_control()),
                        (b"vary", b"X-EP-Segment" if in_url else _VARY_PAGE),
                        *segment.tag_lines(self.headers.cache.tag_headers)]
        else:
            headers.append((b"cache-control", b"private, no-store"))
        if content is None or content.template is None or \
                content.action not in _FRAGMENT_ACTIONS:
            await respond(send, 204, b"", b"text/html; charset=utf-8", headers)
            return
        payload = content.template.render(exchange.visitor)
        if content.action == "text":
            payload = html.escape(payload)
        await respond(send, 200, payload.encode(), b"text/html; charset=utf-8", headers)
