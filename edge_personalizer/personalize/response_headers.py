"""A personalized page's headers: the decision's own, the profile cookie, the debug trace,
and the cache headers that keep one visitor's page out of everyone else's cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from lru import LRU
from starlette.types import Message

from ..learn.goals import GOAL_HEADER
from ..rules.book import RuleBook
from ..rules.evaluator import explain
from ..rules.model import CDN_CACHE_CONTROLS, Decision
from .exchange import Exchange
from .lifetime import kept_directives, shared_lifetime
from .personalizer import Personalizer, address
from .segments import ALL_TAG_HEADERS, SEGMENT_HEADER, Segment, segment_of
from .trace_header import trace_header

HTML_TYPES: Final = ("text/html", "application/xhtml+xml")
# On a response that sets the visitor's cookies itself (the profile, a rule's): an edge
# that has them from /__ep/decide gives the visitor these instead, never both (a visitor
# with no profile gets a rule's cookie alone, and an origin's own Set-Cookie says nothing).
COOKIES_SET: Final = (b"x-ep-cookies", b"set")
# The response headers personalizing a page reads (the goal header: whether there is one)
_HEAD_READ: Final = frozenset({b"content-type", b"content-encoding", b"content-length",
                               b"cache-control", b"content-security-policy", b"etag",
                               b"last-modified", b"expires", b"date", GOAL_HEADER,
                               *CDN_CACHE_CONTROLS})

# Lists whose lines a cache may read only one of (nginx before 1.23 keeps the last Vary
# line; CDNs read a tag header's first): the origin's and the proxy's values go out on one
# line, each joined as its readers split it.
_ONE_LINE: Final = MappingProxyType({b"vary": b", ", b"surrogate-key": b" ",
                                     b"cache-tag": b",", b"edge-cache-tag": b",",
                                     b"netlify-vary": b","})
_ONE_LINE_NAMES: Final = frozenset(_ONE_LINE)

ResponseHead = dict[bytes, str]


def cookies_marked(lines: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """COOKIES_SET when `lines` set a cookie."""
    return [COOKIES_SET] if any(name == b"set-cookie" for name, _ in lines) else []


def read_head(headers: Sequence[tuple[bytes, bytes]]) -> ResponseHead:
    """The response headers personalization reads, by name (repeats joined by ", "),
    read once."""
    out: ResponseHead = {}
    for name, value in headers:
        if name in _HEAD_READ:
            text = value.decode("latin-1")
            out[name] = f"{out[name]}, {text}" if name in out else text
    return out


def one_line_each(headers: list[tuple[bytes, bytes]],
                  memo: LRU[tuple[bytes, tuple[bytes, ...]], bytes] | None = None
                  ) -> list[tuple[bytes, bytes]]:
    """`headers` with Vary and each purge-tag header on one line, where its first was:
    the values of all its lines, each once (Vary's names whatever their case; a `*`
    among them is the whole Vary). `memo`: lines joined before (OneLine's)."""
    lines: dict[bytes, list[bytes]] = {}
    repeated = False
    for name, value in headers:
        if name in _ONE_LINE_NAMES:
            known = lines.get(name)
            if known is None:
                lines[name] = [value]
            else:
                known.append(value)
                repeated = True
    if not repeated:
        return headers
    out: list[tuple[bytes, bytes]] = []
    for header in headers:
        name = header[0]
        values = lines.get(name)
        if values is None or len(values) == 1:
            out.append(header)
        elif values:
            out.append((name, _remembered(memo, name, values) if memo is not None
                        else _joined(name, values)))
            values.clear()   # (its first line is out: the others go)
    return out


class OneLine:
    """one_line_each with the lines it joined remembered (bounded): a site's pages repeat
    the same list headers (the origin's Vary, the rules', Accept-Encoding)."""

    def __init__(self, size: int = 256) -> None:
        # Speed trick: joining the same lines anew took 3-6% of a rewritten page's
        # instructions (bench/README.md, 2026-12-06).
        self._joined: LRU[tuple[bytes, tuple[bytes, ...]], bytes] = LRU(size)

    def each(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return one_line_each(headers, self._joined)


def _remembered(memo: LRU[tuple[bytes, tuple[bytes, ...]], bytes], name: bytes,
                lines: list[bytes]) -> bytes:
    key = (name, tuple(lines))
    joined = memo.get(key)
    if joined is None:
        joined = memo[key] = _joined(name, lines)
    return joined


def _joined(name: bytes, lines: list[bytes]) -> bytes:
    """The values of a list header's lines on one line, each once."""
    if name == b"netlify-vary":
        return _netlify_vary(lines)
    seen: set[bytes] = set()
    values: list[bytes] = []
    for line in lines:
        for item in line.split() if name == b"surrogate-key" else line.split(b","):
            value = item.strip()
            key = value.lower() if name == b"vary" else value
            if value and key not in seen:
                seen.add(key)
                values.append(value)
    if name == b"vary" and b"*" in seen:
        return b"*"
    return _ONE_LINE[name].join(values)


def _netlify_vary(lines: list[bytes]) -> bytes:
    """Netlify-Vary's lines as one: `header=A` and `header=B|C` are `header=A|B|C`, and a
    part named alone (`query`: every query parameter) takes in the same part's lists."""
    parts: dict[bytes, list[bytes] | None] = {}
    for line in lines:
        for item in line.split(b","):
            part, equals, names = item.partition(b"=")
            part = part.strip().lower()
            if not part:
                continue
            known = parts.setdefault(part, [])
            if not equals:
                parts[part] = None
            elif known is not None:
                # header names whatever their case (cookie and query names as written)
                seen = {n.lower() for n in known} if part == b"header" else set(known)
                for name in (n.strip() for n in names.split(b"|")):
                    key = name.lower() if part == b"header" else name
                    if name and key not in seen:
                        seen.add(key)
                        known.append(name)
    return b",".join(part if names is None else part + b"=" + b"|".join(names)
                     for part, names in parts.items())


def is_html(head: ResponseHead) -> bool:
    return head.get(b"content-type", "").lower().startswith(HTML_TYPES)


def private(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Cache-Control that keeps shared caches from storing one visitor's response:
    `public` and `s-maxage` go, `private` is added, and a CDN's own cache controls
    (CDN_CACHE_CONTROLS), which outrank Cache-Control at the CDN, go too."""
    directives: list[bytes] = []
    rest: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"cache-control":
            directives += [d.strip() for d in value.split(b",") if d.strip()]
        elif name not in CDN_CACHE_CONTROLS:
            rest.append((name, value))
    kept = [d for d in directives if d.lower() != b"public"
            and not d.lower().startswith(b"s-maxage") and d.lower() != b"private"]
    return [*rest, (b"cache-control", b", ".join([b"private", *kept]))]


@dataclass(frozen=True)
class CachePolicy:
    """How personalized pages meet shared caches."""

    keyed: bool = False                  # shared per segment (X-EP-Segment) instead of private
    shared_max_age: int = 300            # s-maxage of those pages
    tag_headers: tuple[str, ...] = ALL_TAG_HEADERS
    variant_header: bool = False         # X-EP-Variant on personalized pages (names rules)


class PageHeaders:
    """Headers of personalizable pages, worked out from the exchange and the origin's."""

    def __init__(self, personalizer: Personalizer, *, rules: RuleBook | None,
                 cache: CachePolicy = CachePolicy()) -> None:
        self.personalizer = personalizer
        self.rules = rules
        self.cache = cache
        # The same choices of static variants and the same page actions give every
        # visitor the same segment: remembered by (slot, variant, reason, by, content) of
        # each choice and the actions (decisions are shared while the rules stay, and
        # their choices repeat; a reload may give a variant new content).
        self._segments: LRU[tuple[object, ...], Segment] = LRU(4096)
        # ... and, first, by the decision itself: a decision of rules alone is one object
        # for everyone it is made for (held here, so its id is not reused meanwhile).
        self._by_decision: LRU[int, tuple[Decision, Segment]] = LRU(1024)
        self.one_line = OneLine()   # Vary and purge tags on one line each

    def finish(self, message: Message, exchange: Exchange, head: ResponseHead) -> Message:
        """The response start of a page with the decision's headers, the profile cookie
        and what keeps caches correct. Anything but an HTML page passes as it is."""
        if not is_html(head) or message["status"] >= 400 and not exchange.debug:
            # (an origin's 304 names no type: it is a page's where its address's 200 was)
            if message["status"] == 304 and self.rules is not None \
                    and address(exchange.scope) in self.personalizer.pages:
                return self._validated(message, exchange, head)
            return self._with_conversions(message, exchange)
        if message["status"] < 300:
            self.personalizer.pages[address(exchange.scope)] = True
        if message["status"] < 400 and exchange.visitor.request.method != "HEAD":
            exchange.served()
        added = self.decision_headers(exchange, with_cookies=not self.cache.keyed)
        decision = exchange.decision
        if self.cache.variant_header and decision.slots and not decision.changes_page \
                and message["status"] < 400:
            # An experiment's control leaves the page as it is, but is a variant shown all
            # the same (a page the rewriter changes names its variants once rewritten).
            added.append((b"x-ep-variant", decision.variant_header))
        if not self.cache.keyed and message["status"] < 400 and not exchange.preview:
            added += self._profile_cookie(exchange)
        if not self.cache.keyed:
            added += cookies_marked(added)
        if self.rules is None and not added:
            return message   # nothing to add: the start goes as it came
        headers = [*message.get("headers", ()), *added]
        if self.rules is not None:
            headers, shared = self.cache_headers(headers, exchange, head)
            headers = self.one_line.each(headers)
            if self.cache.keyed and not shared and message["status"] < 400 \
                    and not exchange.preview:
                # A page keyed caching could not share is the visitor's own: it sets their
                # cookies as /__ep/decide would (an edge's has them, unless a goal is reached)
                cookies = [*exchange.decision.cookie_lines, *self._profile_cookie(exchange)] \
                    if exchange.edge_segment is None or exchange.conversions else []
                headers += [*cookies, *cookies_marked(cookies)]
        return {**message, "headers": headers}

    def _validated(self, message: Message, exchange: Exchange, head: ResponseHead) -> Message:
        """The origin's 304 for a page the decision left as it was, saying what its 200
        says of caching: a cache takes a 304's headers for its stored copy's, and the
        origin's own Cache-Control would let browsers keep a page shared per segment, or
        let a CDN keep it longer than the shared limit. One shared carries nobody's cookie.
        Its segment is the 200's: the decision without the slots its page is known to lack."""
        presence = self.personalizer.slots
        if exchange.trims_slots(presence, keyed=self.cache.keyed):
            gone = presence.known_gone(exchange.page, exchange.decision)
            if gone:
                exchange.settle(presence.trim(exchange.decision, gone))
        ruled = [line for line in exchange.decision.header_lines if line[0] == b"cache-control"]
        headers, shared = self.cache_headers([*message.get("headers", ()), *ruled], exchange,
                                             head)
        message = {**message, "headers": self.one_line.each(headers)}
        return message if shared else self._with_conversions(message, exchange)

    def _profile_cookie(self, exchange: Exchange) -> list[tuple[bytes, bytes]]:
        cookie = self.personalizer.profile_cookie(exchange)
        return [] if cookie is None else [(b"set-cookie", cookie)]

    def _with_conversions(self, message: Message, exchange: Exchange) -> Message:
        """Any other response that reached a goal carries the profile that counted it, and
        so is that visitor's own: no shared cache may keep it, whatever the origin said."""
        cookie = self._profile_cookie(exchange) if exchange.conversions else []
        if not cookie:
            return message
        return {**message, "headers": [*private([*message.get("headers", ())]), *cookie,
                                       COOKIES_SET]}

    def decision_headers(self, exchange: Exchange, *,
                         with_cookies: bool = True) -> list[tuple[bytes, bytes]]:
        """The decision's headers and cookies, and the debug trace if asked for. With keyed
        caching the page is shared by its segment, so cookies come from /__ep/decide."""
        decision = exchange.decision
        out = list(decision.header_lines)
        if with_cookies:
            out += decision.cookie_lines
        if exchange.debug and self.rules is not None:
            learning = self.personalizer.learning
            trace = explain(self.rules.current, exchange.visitor,
                            allocations=learning.allocations if learning is not None else None)
            # What this page got: the choices for slots it lacks were dropped.
            trace["page"] = {"slots": {slot: choice.variant
                                       for slot, choice in decision.slots.items()},
                             "lacks": sorted(set(trace["decision"]["slots"])
                                             - set(decision.slots))}
            out.append((b"x-ep-trace", trace_header(trace)))
        return out

    def variant_headers(self, exchange: Exchange, spent: float) -> list[tuple[bytes, bytes]]:
        """What a rewritten page says about itself: the time added (not on a page keyed
        caching may share: a shared cache would replay one request's time to everyone),
        and its variants."""
        out = []
        if not (self.cache.keyed and self.segment(exchange).shareable):
            out.append((b"server-timing", f"ep;dur={spent * 1000:.2f}".encode()))
        if self.cache.variant_header:
            out.append((b"x-ep-variant", exchange.decision.variant_header))
        return out

    def segment(self, exchange: Exchange) -> Segment:
        """The decision's segment."""
        decision = exchange.decision
        book = self.personalizer.segments
        make = book.segment_of if book is not None else segment_of
        if decision.static_choices is None:   # the variants print visitor data
            return make(decision, exchange.visitor)
        known = self._by_decision.get(id(decision))
        if known is not None and known[0] is decision:
            return known[1]
        key = (decision.redirect, decision.headers, decision.cookies, decision.rules,
               *((slot, c.variant, c.reason, c.by, c.content)
                 for slot, c in decision.slots.items()))
        segment = self._segments.get(key)
        if segment is None:
            segment = self._segments[key] = make(decision, exchange.visitor)
        self._by_decision[id(decision)] = (decision, segment)
        return segment

    def cache_headers(self, headers: list[tuple[bytes, bytes]], exchange: Exchange,
                      head: ResponseHead) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Cache-Control, Vary and cache tags for a page the rules may personalize, and
        whether shared caches may keep it.

        By default it is private: no shared cache stores one visitor's page for others.
        With keyed caching, shared caches may keep it per segment (X-EP-Segment), which
        depends only on the variants chosen, never on the visitor's raw data. Purge tags
        go only with a page a shared cache may store. A CDN's own cache controls
        (CDN_CACHE_CONTROLS) decide how long it may (shared_lifetime reads them in
        `head`), then go: Cache-Control is what every cache is told.
        """
        if not CDN_CACHE_CONTROLS.isdisjoint(head):
            headers = [(k, v) for k, v in headers if k not in CDN_CACHE_CONTROLS]
        if exchange.preview or exchange.debug:
            # One person's view: a preview, or a page carrying the rules' trace (their
            # names, files and lines, the visitor's values) for whoever sent the token.
            headers = [(k, v) for k, v in headers if k != b"cache-control"]
            return [*headers, (b"cache-control", b"private, no-store")], False
        segment = self.segment(exchange)
        headers.append((b"x-ep-segment", segment.key.encode()))
        lifetime = self.shareable(headers, exchange, head, segment) if self.cache.keyed \
            else None
        if lifetime is not None:
            headers = [(k, v) for k, v in headers if k != b"cache-control"]
            return [*headers, *segment.tag_lines(self.cache.tag_headers),
                    (b"cache-control", self.shared_cache_control(
                        lifetime, kept_directives(head))),
                    (b"vary", b"X-EP-Segment"), (b"netlify-vary", b"header=X-EP-Segment")], True
        vary = self.rules.current.vary_header if self.rules is not None else b""
        if vary:
            headers.append((b"vary", vary))
        if b"cache-control" not in head and not exchange.decision.sets_cache_control:
            headers.append((b"cache-control", b"private"))   # nothing to merge with
            return headers, False
        return private(headers), False

    @staticmethod
    def shareable(headers: list[tuple[bytes, bytes]], exchange: Exchange, head: ResponseHead,
                  segment: Segment) -> int | None:
        """How long a shared cache may keep this page for everyone in its segment (-1: as
        long as the operator says), or None when it may not: the origin must let a
        shared cache store it (shared_lifetime), nobody's cookie may be in it (issue 20,
        item 12), its variants print nothing the key cannot bound, and the request named
        the key the page was made for (keyed_as)."""
        if not segment.shareable or exchange.decision.redirect is not None:
            # A page of a decision that redirects was not redirected (the landing page
            # itself, a crawler, a fetch): page views under its key are.
            return None
        if exchange.conversions or any(name == b"set-cookie" for name, _ in headers):
            return None   # (a goal reached: the profile that counts it is set)
        if not keyed_as(exchange, segment):
            return None
        authorized = any(name == b"authorization" for name, _ in exchange.scope["headers"])
        return shared_lifetime(head, authorized=authorized)

    def shared_cache_control(self, lifetime: int = -1, kept: str = "") -> bytes:
        """Cache-Control of a page shared per segment: browsers keep nothing (they send no
        X-EP-Segment), shared caches the origin's lifetime, at most shared_max_age, and
        what it `kept` of the origin's (lifetime.kept_directives)."""
        limit = self.cache.shared_max_age
        age = limit if lifetime < 0 else min(lifetime, limit)
        return f"public, max-age=0, s-maxage={age}{kept}".encode()


def keyed_as(exchange: Exchange, segment: Segment) -> bool:
    """Whether the request names the segment its page (or fragment) was made for, in
    X-EP-Segment as sent, whoever sent it (not Exchange.edge_segment, which only a trusted
    edge sets): a cache keys on the header even when it is not a trusted proxy. A page
    made for another key, or asked for without one (a cache that did not ask /__ep/decide
    first keys every visitor's page under "none"), must never be stored under it."""
    return exchange.visitor.request.headers.get(SEGMENT_HEADER) == segment.key
