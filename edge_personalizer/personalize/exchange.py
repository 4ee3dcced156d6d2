"""One request's state on its way: the scope forwarded, the visitor, and the decision."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Protocol

from starlette.types import Scope

from ..classify.profile import Profile
from ..classify.visitor import Visitor
from ..learn.goals import Conversion
from ..rules.allocation import Allocations
from ..rules.model import Decision
from .slot_presence import SlotPresence, page_key


class Observer(Protocol):
    """What personalization reports (the metrics implement it)."""

    def personalization_took(self, seconds: float) -> None: ...
    def stage_failed(self, stage: str) -> None: ...
    def origin_failed(self, kind: str) -> None: ...
    def decided(self, decision: Decision) -> None: ...
    def bot_seen(self, category: str) -> None: ...


class NoObserver:
    """Reports nowhere: for personalization used without metrics."""

    def personalization_took(self, seconds: float) -> None:
        pass

    def stage_failed(self, stage: str) -> None:
        pass

    def origin_failed(self, kind: str) -> None:
        pass

    def decided(self, decision: Decision) -> None:
        pass

    def bot_seen(self, category: str) -> None:
        pass


class Exchange:
    """One request's visitor, the scope to forward, and its decision once made.

    The decision is made on first need: before the origin for page views (a redirect
    answers without it), else only if the response turns out to be HTML. `decide` is handed
    the exchange: a closure over it would be a reference cycle, and every request's
    objects would wait for the garbage collector instead of going when it ends.
    """

    __slots__ = ("visitor", "scope", "debug", "preview", "edge_segment", "conversions", "profile",
                 "allocations", "_decide", "_decision", "_count", "_page", "_page_of")

    def __init__(self, visitor: Visitor, scope: Scope,
                 decide: Callable[[Exchange], Decision], *,
                 debug: bool, preview: bool, edge_segment: str | None = None,
                 count: Callable[[Decision], None] | None = None,
                 page_of: Callable[[str, Mapping[str, str]], str] = page_key) -> None:
        self.visitor = visitor
        self.scope = scope          # as the origin should get it (no preview token)
        self.debug = debug          # the X-EP-Debug trace was asked for, with the token
        self.preview = preview      # a signed preview link forces the decision
        # The segment a trusted edge named (X-EP-Segment, from the /__ep/decide it asked
        # first): the page is made for it, and that decide gave the visitor its cookies.
        self.edge_segment = edge_segment
        self.conversions: list[Conversion] = []   # goals the response reached
        self.profile: Profile | None = None        # the visitor's, once this request counted
        # The bandit weights the decision was made with: an exposure counts in their version.
        self.allocations: Allocations | None = None
        self._decide = decide
        self._decision: Decision | None = None
        self._count = count   # counts the variants served (Observer.decided)
        self._page: str | None = None
        self._page_of = page_of   # SlotPresence.page_of: what pages are learned by

    @property
    def whole_page(self) -> bool:
        """Whether the response is the page itself, as slot presence learns it: not a
        script's fetch of the same URL (htmx, Turbo: Sec-Fetch-Dest empty), which may
        get a part of it without the slots."""
        visitor = self.visitor
        return visitor.page_view or visitor.request.headers.get("sec-fetch-dest") != "empty"

    @property
    def page(self) -> str:
        """What the page's slots are learned by (SlotPresence.page_of)."""
        if self._page is None:
            request = self.visitor.request
            self._page = self._page_of(request.path, request.query)
        return self._page

    @property
    def decision(self) -> Decision:
        if self._decision is None:
            self._decision = self._decide(self)
        return self._decision

    def settle(self, decision: Decision) -> None:
        """What the page really gets of the decision (choices for slots it lacks dropped):
        everything made after this (headers, cookie, counts) names only that."""
        self._decision = decision

    def served(self, *, redirected: bool = False, only: str | None = None) -> None:
        """The visitor is served what the decision, as settled, shows: its variants are
        counted, once (a variant of a slot the page lacks or hides never is), its redirect
        only when `redirected`; `only`: the one slot a fragment shows."""
        if self._count is None:
            return
        count, self._count = self._count, None
        decision = self.decision
        if only is not None:
            choice = decision.slots.get(only)
            decision = Decision(slots=MappingProxyType({only: choice} if choice else {}))
        elif decision.redirect_rule is not None and not redirected:
            decision = replace(decision, redirect=None, redirect_rule=None)
        count(decision)

    def settle_no_slots(self) -> None:
        """The visitor is shown none of the decision's slots (a redirect, a page sent as
        it came): its headers, cookie and counts name none of them."""
        if self.decision.slots:
            self._decision = replace(self.decision, slots=MappingProxyType({}))

    def trims_slots(self, presence: SlotPresence, *, keyed: bool) -> bool:
        """Whether the slots its page lacks are dropped from the decision: it changes
        slots, and is no preview, no page made for a segment an edge named (`keyed`
        caching), and slots are learned (else every page is taken to have every slot)."""
        return not self.preview and bool(self.decision.slots) \
            and not (keyed and self.edge_segment is not None) and presence.learn
