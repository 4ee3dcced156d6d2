"""The compiled rule set and the decisions it makes: immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from ..classify.visitor import Visitor, lazy
from .conditions import Condition
from .template import Template

# `then` keys that are not slots: what a rule does to the whole response.
PAGE_ACTIONS = ("redirect", "headers", "cookies")
# Places in every page that work like slots: HTML added at the end of <head>, or of <body>.
INJECTIONS = ("head", "body_end")
SlotAction = Literal["inner", "replace", "append", "prepend", "before", "after", "remove",
                     "text", "set_attribute", "remove_attribute", "add_class", "remove_class"]
SLOT_ACTIONS: tuple[SlotAction, ...] = ("inner", "replace", "append", "prepend", "before",
                                        "after", "remove", "text", "set_attribute",
                                        "remove_attribute", "add_class", "remove_class")
_NO_HEADERS: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Slot:
    """Where variants go: a CSS selector (default: the data-ep-slot marker)."""

    name: str
    selector: str


@dataclass(frozen=True)
class Content:
    """What a variant does to its slot."""

    action: SlotAction = "inner"
    template: Template | None = None     # the HTML (or text) to put in
    attribute: str | None = None         # for set_attribute / remove_attribute
    source: str = ""                     # the fragment file, or "inline"


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302
    keep_query: bool = True


@dataclass(frozen=True)
class Rule:
    name: str
    condition: Condition
    rank: int                             # order: priority first, then file and position
    priority: int
    source: str                           # file:line
    slots: Mapping[str, Content] = field(default_factory=lambda: MappingProxyType({}))
    redirect: Redirect | None = None
    headers: tuple[tuple[str, str], ...] = _NO_HEADERS
    cookies: tuple[tuple[str, str], ...] = _NO_HEADERS

    @lazy
    def targets(self) -> frozenset[str]:
        """The slots and page actions this rule can claim (worked out once)."""
        keys = set(self.slots)
        if self.redirect:
            keys.add("redirect")
        if self.headers:
            keys.add("headers")
        if self.cookies:
            keys.add("cookies")
        return frozenset(keys)


@dataclass(frozen=True)
class Experiment:
    name: str
    slots: tuple[str, ...]
    audience: Condition
    holdout: float                                   # percent kept out, shown the control
    weights: tuple[tuple[str, float], ...]           # variant -> weight, control included
    variants: Mapping[str, Mapping[str, Content]]    # variant -> slot -> content
    source: str
    goals: tuple[str, ...] = ()                      # what it is judged on


DEFAULT_GOAL_WINDOW = 72 * 3600.0   # seconds a conversion is attributed to an exposure


@dataclass(frozen=True)
class Goal:
    """A conversion: a request that meets `when` (and answered with one of `statuses`),
    or an origin's goal header or a beacon naming it. Its value comes from a query
    parameter or a response header, when one is named."""

    name: str
    when: Condition | None = None                    # None: header or beacon only
    statuses: frozenset[int] = frozenset()           # empty: any status
    value_query: str | None = None
    value_header: str | None = None
    window_seconds: float = DEFAULT_GOAL_WINDOW
    source: str = ""

    def reached_by(self, visitor: Visitor) -> bool:
        return self.when is not None and self.when(visitor)


@dataclass(frozen=True)
class RuleSet:
    """Every rule, segment, slot and experiment of a rules directory, compiled."""

    version: str
    rules: tuple[Rule, ...]                          # in rank order
    slots: Mapping[str, Slot]
    experiments: tuple[Experiment, ...]
    interests: Mapping[str, tuple[str, ...]]
    # Index: fields -> their folded values -> ranks of the rules that need exactly those.
    index: Mapping[tuple[str, ...], Mapping[tuple[object, ...], tuple[int, ...]]]
    unindexed: tuple[int, ...]                       # ranks of rules that are always tried
    loaded_at: float = 0.0
    file_count: int = 0
    fields: frozenset[str] = frozenset()             # every visitor field the rules read
    vary: tuple[str, ...] = ()                       # the request headers those come from
    goals: Mapping[str, Goal] = field(default_factory=lambda: MappingProxyType({}))
    # Decisions made by rules alone, by the ranks of the rules that won: the same winners
    # always make the same decision (evaluator.decide fills it, bounded).
    decided: dict[tuple[int, ...], Decision] = field(default_factory=dict, compare=False,
                                                     repr=False)

    @lazy
    def targets(self) -> frozenset[str]:
        """Everything a rule can claim: each slot, each page action, each injection."""
        return frozenset(self.slots) | frozenset(PAGE_ACTIONS) | frozenset(INJECTIONS)

    @lazy
    def vary_header(self) -> bytes:
        """The Vary value of a page these rules may personalize (b"" when none)."""
        return ", ".join(self.vary).encode("latin-1")

    def experiment(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)

    @classmethod
    def empty(cls, version: str = "none") -> RuleSet:
        return cls(version, (), MappingProxyType({}), (), MappingProxyType({}),
                   MappingProxyType({}), ())


Reason = Literal["rule", "experiment", "holdout", "control"]


@dataclass(frozen=True)
class SlotChoice:
    """What one slot shows, and why."""

    slot: str
    variant: str
    reason: Reason
    by: str                                   # the rule or experiment
    content: Content | None = None            # None: leave the slot as it is


@dataclass(frozen=True)
class Decision:
    """The outcome for one visitor: a choice per slot, and page actions."""

    slots: Mapping[str, SlotChoice] = field(default_factory=lambda: MappingProxyType({}))
    redirect: Redirect | None = None
    redirect_rule: str | None = None
    headers: tuple[tuple[str, str], ...] = _NO_HEADERS
    cookies: tuple[tuple[str, str], ...] = _NO_HEADERS
    rules: tuple[str, ...] = ()               # rules that won something

    @lazy
    def changes_page(self) -> bool:
        return any(choice.content is not None for choice in self.slots.values())

    @lazy
    def static_choices(self) -> tuple[tuple[str, str, str], ...] | None:
        """(slot, variant, by) for each slot, by slot name, when no chosen variant prints
        visitor data (so the page is the same for everyone this decision is made for);
        None otherwise."""
        if any(c.content is not None and c.content.template is not None
               and not c.content.template.is_static for c in self.slots.values()):
            return None
        return tuple(sorted((slot, c.variant, c.by) for slot, c in self.slots.items()))

    @lazy
    def variants(self) -> str:
        """`slot=variant,...` by slot name: what X-EP-Variant says (worked out once; a
        decision is shared by every visitor with the same winning rules)."""
        return ",".join(f"{slot}={choice.variant}" for slot, choice in sorted(self.slots.items()))

    @lazy
    def variant_header(self) -> bytes:
        return self.variants.encode("latin-1", "replace")

    @lazy
    def header_lines(self) -> tuple[tuple[bytes, bytes], ...]:
        """The rules' response headers, as they go out."""
        return tuple((name.encode("latin-1"), value.encode("latin-1"))
                     for name, value in self.headers)

    @lazy
    def sets_cache_control(self) -> bool:
        return any(name.lower() == "cache-control" for name, _ in self.headers)

    @lazy
    def cookie_lines(self) -> tuple[tuple[bytes, bytes], ...]:
        """The rules' cookies, as Set-Cookie headers."""
        return tuple((b"set-cookie", f"{name}={value}; Path=/; SameSite=Lax".encode("latin-1"))
                     for name, value in self.cookies)

    @property
    def is_empty(self) -> bool:
        return not (self.slots or self.redirect or self.headers or self.cookies)


NO_DECISION = Decision()
