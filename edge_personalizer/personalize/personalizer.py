"""Before the origin: a request's visitor classified and its decision made (lazily), the
profile cookie it earns, and where a redirect rule sends it."""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from lru import LRU
from starlette.types import Scope

from ..classify.classifier import Classifier, merge_headers, request_from_headers
from ..classify.profile import InterestMap, Profile
from ..learn.attribution import Learning
from ..learn.counters import FIXED_PERIOD, TAKEN
from ..learn.goals import GOAL_HEADER
from ..proxy.client_ip import TrustedProxies, client_address
from ..rules.allocation import Allocations
from ..rules.book import RuleBook
from ..rules.evaluator import DecisionMemo, decide, served_as_is
from ..rules.model import NO_DECISION, Decision, RuleSet, SlotChoice
from ..rules.preview import PREVIEW_PARAM, PreviewSigner, preview_decision
from .exchange import Exchange, NoObserver, Observer
from .segments import SEGMENT_HEADER, SegmentBook
from .slot_presence import SlotPresence, page_query

DEBUG_HEADER: Final = b"x-ep-debug"


def is_page_view(method: str, merged: Mapping[str, str],
                 headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A browser navigation to a document, or a page fetched ahead of one: what a profile
    learns from. Read from the headers merged by name (merge_headers), and from the raw
    `headers` only when several Sec-Fetch-Dest were sent (the first decides)."""
    if method != "GET":
        return False
    dest = merged.get("sec-fetch-dest")
    if dest is not None and "," in dest:
        dest = next((v.decode("latin-1") for k, v in headers
                     if k == b"sec-fetch-dest"), dest)
    if dest == "empty":
        # A page fetched ahead of a click (<link rel=prefetch>: instant.page, quicklink),
        # with the navigation's Accept: the click is shown that copy, never asked again.
        return "prefetch" in merged.get("sec-purpose", "") \
            and "text/html" in merged.get("accept", "")
    if dest is not None:
        return dest in ("document", "iframe")
    return "text/html" in merged.get("accept", "")


@dataclass(frozen=True)
class CookiePolicy:
    """How the profile cookie is set."""

    secure: bool = True
    max_age_days: float = 395.0


# Request headers a page that will be rewritten is asked without: its coding, and what
# asks for less than all of it.
_WHOLE_PAGE_OFF: Final = frozenset({b"accept-encoding", b"if-none-match", b"if-modified-since",
                                    b"if-range", b"range"})
# ... of which those that let the origin answer 304 or 206 (merged headers' names)
_WHOLE_PAGE_OFF_NAMES: Final = ("if-none-match", "if-modified-since", "if-range", "range")
_NO_RULES: Final = RuleSet.empty()   # what a personalizer without a rule book reads goals from


class Personalizer:
    """Classifies a request's visitor and decides for it with the serving rules.

    Everything it holds is immutable or bounded, so one Personalizer serves every request
    of a worker; each request's state lives in the Exchange it returns.
    """

    def __init__(self, *, rules: RuleBook | None, classifier: Classifier,
                 trusted: TrustedProxies | None = None, debug_token: str | None = None,
                 preview: PreviewSigner | None = None, cookies: CookiePolicy = CookiePolicy(),
                 learning: Learning | None = None, observer: Observer | None = None,
                 clock: Callable[[], float] = time.time,
                 keyed_segments: bool = False,
                 slot_presence: SlotPresence | None = None) -> None:
        self.rules = rules
        self.classifier = classifier
        self.trusted = trusted or TrustedProxies()
        self.debug_token = debug_token.encode() if debug_token is not None else None
        self.preview = preview
        self.cookies = cookies
        self.learning = learning
        self.clock = clock   # a replay of logged requests runs on their own time
        # The same winning rules make the same decision: built once (bounded).
        self.decisions = DecisionMemo()
        self.observer: Observer = observer or NoObserver()
        self._interests_version: str | None = None
        self._predicting = False   # a rule reads profile.predicted.*: count what follows
        # Each decision's segment, its tokens remembered for the serving rules; with keyed
        # caching, a trusted edge's X-EP-Segment names the page to render.
        self.segments = SegmentBook(rules) if rules is not None else None
        self.keyed_segments = keyed_segments
        # Which of the rules' slots each page has, learned per page (bounded, per worker).
        self.slots = slot_presence if slot_presence is not None else SlotPresence(rules)
        # The addresses (path, query without campaign parameters: address) this worker
        # served as HTML pages (PageHeaders notes them): a revalidation or an origin's 304
        # there is a page's, whatever it accepts.
        self.pages: LRU[tuple[str, bytes], bool] = LRU(4096)

    def begin(self, scope: Scope) -> Exchange:
        """The request's Exchange: its visitor, and its decision made when first read."""
        self._follow_interests()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        merged = merge_headers(headers)
        query_string = scope.get("query_string", b"").decode("latin-1")
        preview_token = None
        if PREVIEW_PARAM in query_string:
            pairs = parse_qsl(query_string, keep_blank_values=True)
            preview_token = next((v for k, v in pairs if k == PREVIEW_PARAM), None)
            query_string = urlencode([(k, v) for k, v in pairs if k != PREVIEW_PARAM])
            # The origin never sees the preview token.
            scope = {**scope, "query_string": query_string.encode("latin-1")}
        address = client_address(scope, self.trusted)
        request = request_from_headers(
            method=scope["method"], path=scope["path"], query_string=query_string,
            host=merged.get("host", ""), headers=merged, client_ip=address.ip,
            trusted_edge=address.trusted_peer)
        visitor = self.classifier.visitor(request, now=self.clock(),
                                          page_view=is_page_view(scope["method"], merged, headers))
        forced = None
        if self.rules is not None and preview_token and self.preview is not None:
            forced = preview_decision(self.preview, preview_token, self.rules.current)

        # A trusted edge names the segment it keys its cache on (from /__ep/decide): the
        # page is rendered for that segment, even for a first visit whose visitor id (and
        # experiment variants) this request would mint anew.
        edge_segment = merged.get(SEGMENT_HEADER) if address.trusted_peer else None

        def make_decision(exchange: Exchange) -> Decision:
            if forced is not None:
                return forced
            decision = self._decide(exchange)
            if edge_segment is not None and self.keyed_segments and self.segments is not None:
                decision = self.segments.decision_for(edge_segment, decision,
                                                      visitor) or decision
            return decision

        # A page an edge names the segment of was counted by the /__ep/decide it asked.
        count = self.observer.decided if edge_segment is None and forced is None else None
        exchange = Exchange(visitor, scope, make_decision, debug=self._debug_asked(headers),
                            preview=forced is not None, edge_segment=edge_segment, count=count,
                            page_of=self.slots.page_of)
        if _rewritten(exchange, merged, self.slots, self.pages):
            exchange.scope = _asked_whole(scope, headers, exchange, self.slots,
                                          html_asked="text/html" in merged.get("accept", ""))
        return exchange

    def _decide(self, exchange: Exchange) -> Decision:
        if self.rules is None:
            return NO_DECISION
        device = exchange.visitor.device
        if device.type == "bot":
            self.observer.bot_seen(device.bot_category or "other")
            if served_as_is(exchange.visitor):
                return NO_DECISION
        allocations = self.learning.allocations if self.learning is not None else None
        exchange.allocations = allocations
        return decide(self.rules.current, exchange.visitor, self.decisions,
                      allocations=allocations)

    def _debug_asked(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        if self.debug_token is None:
            return False
        given = next((v for k, v in headers if k == DEBUG_HEADER), None)
        return given is not None and hmac.compare_digest(given, self.debug_token)

    def _follow_interests(self) -> None:
        """The profile learns the interest categories of the serving rules."""
        tracker = self.classifier.profiles
        if tracker is None or self.rules is None:
            return
        current = self.rules.current
        if current.version != self._interests_version:
            tracker.interests = InterestMap(current.interests)
            self._interests_version = current.version
            self._predicting = any(f.startswith("profile.predicted") for f in current.fields)

    def profile_cookie(self, exchange: Exchange) -> bytes | None:
        """The Set-Cookie value of the visitor's profile after this request (a page view,
        or a request that reached a goal); None when nothing changed, and always for bots
        (a crawler would get a fresh profile on every request)."""
        tracker = self.classifier.profiles
        visitor = exchange.visitor
        if tracker is None or not (visitor.page_view or exchange.conversions) \
                or visitor.device.type == "bot":
            return None
        profile = self.profile_after(exchange)
        if not (profile.stored and profile.changed):
            return None
        current = self.rules.current if self.rules is not None else None
        return tracker.set_cookie_header(
            profile, secure=self.cookies.secure, max_age_days=self.cookies.max_age_days,
            live=current.served_names if current is not None else None,
            rules=current.rule_names if current is not None else frozenset())

    def profile_after(self, exchange: Exchange) -> Profile:
        """The visitor's profile once this request is counted: on a page view the
        experiment variants assigned and what the page shows; the conversions of goals
        reached. Worked out (and counted) once a request; bots are never counted."""
        if exchange.profile is not None:
            return exchange.profile
        visitor = exchange.visitor
        profile = visitor.profile
        learning = self.learning if visitor.device.type != "bot" else None
        ruleset = self.rules.current if self.rules is not None else None
        if visitor.page_view:
            profile, shown = _shown(exchange.decision, profile, ruleset)
            if learning is not None:
                # (taken from those counted before: not one this view places)
                for experiment, rule in _taken(exchange.decision, profile, ruleset):
                    learning.counters.expose(TAKEN, experiment, cell=rule)
                profile = _exposed(learning, profile, shown, exchange.allocations, ruleset)
                tracker = self.classifier.profiles
                if tracker is not None and self._predicting:
                    categories = tracker.interests.categories(visitor.request.path)
                    if categories:
                        learning.viewed(profile, categories,
                                        learning_rate=tracker.learning_rate)
        if learning is not None and exchange.conversions:
            profile = learning.attribution.converted(
                profile, exchange.conversions,
                functools.partial(_judged_on, ruleset, learning, profile.now))
        exchange.profile = profile
        return profile

    def reach_goals(self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]],
                    *, goal_header: bool = True) -> list[tuple[bytes, bytes]]:
        """Notes the goals this response reaches on the exchange; returns its headers
        without the origin's goal headers (the visitor never sees them). `goal_header`
        False: the caller has read the headers and they have none."""
        if self.learning is None:
            if not goal_header:
                return headers
            return [h for h in headers if h[0] != GOAL_HEADER]
        ruleset = self.rules.current if self.rules is not None else _NO_RULES
        if not ruleset.goals and (not goal_header or not any(
                name == GOAL_HEADER for name, _ in headers)):
            return headers
        visitor = exchange.visitor
        exchange.conversions, kept = self.learning.goals.reached(
            ruleset.goals, visitor, status, headers, ruleset.goals_within_reach(visitor))
        return kept

    def redirect_target(self, exchange: Exchange, scope: Scope) -> str | None:
        """Where the decision's redirect sends this page view, or None: API calls, assets
        and crawlers are never redirected, and a visitor already there stays."""
        visitor = exchange.visitor
        if scope["method"] not in ("GET", "HEAD") or not (visitor.page_view or exchange.preview):
            return None
        redirect = exchange.decision.redirect
        if redirect is None or visitor.device.type == "bot":
            return None
        target = urlsplit(redirect.location)
        if target.path == scope["path"] and (not target.netloc
                                             or target.netloc == visitor.request.host):
            return None   # loop guard: already on the landing page
        location = redirect.location
        query = scope.get("query_string", b"").decode("latin-1")
        if redirect.keep_query and query:
            location += ("&" if target.query else "?") + query
        return location


def _shown(decision: Decision, profile: Profile, ruleset: RuleSet | None
           ) -> tuple[Profile, list[SlotChoice]]:
    """What a page view shows that is counted (experiments and their holdouts; rules when
    the rules have goals, without which their exposures would count nothing), and the
    profile remembering the experiments' variants (a held-out visitor's: holdout, which
    keeps them held out)."""
    judging_rules = ruleset is not None and bool(ruleset.goals)
    shown = []
    for choice in decision.slots.values():
        if choice.reason == "experiment" or choice.reason == "holdout":
            profile = profile.with_variant(choice.by, choice.variant)
            shown.append(choice)
        elif choice.reason == "rule" and judging_rules:
            shown.append(choice)
    return profile, shown


def _taken(decision: Decision, profile: Profile, ruleset: RuleSet | None
           ) -> list[tuple[str, str]]:
    """(experiment, rule) for each experiment this visitor was counted in (shown a variant
    or held out) whose slot a rule fills on this page view: rules come first, so a rule
    added or widened while the experiment runs shows its visitors other content, and what
    they do still counts for the variant they were first shown."""
    if ruleset is None or not profile.exposures:
        return []
    return list(dict.fromkeys(
        (experiment.name, choice.by) for choice in decision.slots.values()
        if choice.reason == "rule" for experiment in ruleset.experiments
        if choice.slot in experiment.slots and experiment.name in profile.exposures))


def _judged_on(ruleset: RuleSet | None, learning: Learning, now: int,
               by: str) -> Mapping[str, int] | None:
    """The goals an experiment is judged on (JudgedOn): as its rules say, or, once removed
    from them, as recorded in the store; a rule's: every goal of the rules, each from the
    day it joined them (learn/catalog.py)."""
    experiment = ruleset.experiment(by) if ruleset is not None else None
    if experiment is not None:
        return learning.judged_on(by, experiment.goals, now)
    if ruleset is None or by not in ruleset.rule_names:
        stopped = learning.judged_on(by, None, now)   # None: no experiment recorded
        if stopped is not None:
            return stopped
    return learning.rules_judged_on(ruleset.goals if ruleset is not None else (), now)


def _exposed(learning: Learning, profile: Profile, shown: list[SlotChoice],
             allocations: Allocations | None, ruleset: RuleSet | None) -> Profile:
    """The profile with the exposures of what the page shows, each counted once, in the
    cell of its experiment (per: ...) and in the period of the weights it was assigned
    with: a bandit's version, fixed weights' split (Experiment.fixed_period); rules and
    a bandit's starting weights: FIXED_PERIOD."""
    for choice in shown:
        if choice.by in profile.exposures:
            continue   # counted once, in the period first assigned in
        experiment = ruleset.experiment(choice.by) if ruleset is not None else None
        period = allocations.version_for(choice.by, experiment.names) \
            if allocations is not None and experiment is not None else None
        if period is None:
            period = (experiment.fixed_period if experiment is not None
                      and experiment.allocation == "fixed" else FIXED_PERIOD)
        profile = learning.attribution.exposed(
            profile, [(choice.by, choice.variant)], choice.cell, period)
    return profile


def _rewritten(exchange: Exchange, headers: Mapping[str, str], slots: SlotPresence,
               pages: LRU[tuple[str, bytes], bool]) -> bool:
    """Whether the page this request asks for will be rewritten: a page view, a preview, a
    HEAD, an htmx/Turbo fetch asking for HTML, or a conditional or ranged GET (which the
    origin could answer 304 or 206) of a page served as HTML before; one the decision
    changes, unless known to lack every slot it changes (it comes as the client asked)."""
    method = exchange.scope["method"]
    accept = headers.get("accept", "")
    return (exchange.visitor.page_view or exchange.preview or method == "HEAD"
            or method == "GET" and ("text/html" in accept
                                    or _revalidated_page(exchange, headers, accept, pages))) \
        and exchange.decision.changes_page \
        and (exchange.preview or not slots.lacks_all(exchange.page, exchange.decision))


def _revalidated_page(exchange: Exchange, headers: Mapping[str, str], accept: str,
                      pages: LRU[tuple[str, bytes], bool]) -> bool:
    """Whether a GET not asking for HTML by name may still be for a page: it could take
    HTML (no Accept, */*, text/*, XHTML), carries validators or a range (the origin could answer
    304 or 206), its visitor's pages change, and its page was served as HTML before. An
    API client's JSON and an asset's revalidation go as they came."""
    return (any(name in headers for name in _WHOLE_PAGE_OFF_NAMES)
            and _takes_html(accept)
            and exchange.decision.changes_page
            and address(exchange.scope) in pages)


def address(scope: Scope) -> tuple[str, bytes]:
    """A request's path and query, as Personalizer.pages notes pages: without campaign
    parameters (page_query), so a page is known whatever campaign brought its visitor."""
    return scope["path"], page_query(scope.get("query_string", b""))


def _takes_html(accept: str) -> bool:
    return not accept or "*/*" in accept or "text/*" in accept or "xhtml" in accept


def _asked_whole(scope: Scope, headers: Sequence[tuple[bytes, bytes]], exchange: Exchange,
                 slots: SlotPresence, *, html_asked: bool) -> Scope:
    """The request for a page the rules will rewrite, as the origin gets it: whole and
    uncompressed (a 304 would keep the browser's copy, maybe of another variant; a range
    is of the origin's bytes). A HEAD asking for HTML (`html_asked`: a browser's, a CDN's
    passing the page's Accept) is asked as its GET where the page's slots are not known
    yet: the GET is read (and the page learned), so the head is the one a GET gets; its
    body goes nowhere (middleware.WithoutBody). Any other HEAD (curl -I, a check of an
    image or an API) is never made a download."""
    asked = {**scope, "headers": [*(h for h in headers if h[0] not in _WHOLE_PAGE_OFF),
                                  (b"accept-encoding", b"identity")]}
    if scope["method"] == "HEAD" and html_asked and slots.learn and not exchange.preview \
            and slots.known_gone(exchange.page, exchange.decision) is None:
        asked["method"] = "GET"
    return asked
