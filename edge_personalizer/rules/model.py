"""The compiled rule set and the decisions it makes: immutable values.

Everything derived (targets, encoded header lines) is worked out when a value is built;
nothing here caches or changes after construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import quote

from ..classify.visitor import Visitor
from .allocation import ALL_VISITORS, Allocation, BanditSettings, Cells, weights_period
from .conditions import Condition
from .index import GoalIndex, RuleIndex
from .template import Template

# `then` keys that are not slots: what a rule does to the whole response.
PAGE_ACTIONS: Final = ("redirect", "headers", "cookies")
# Cache controls meant for CDNs and proxies only, which outrank Cache-Control there (and
# some ignore Vary): a page the rules may personalize never carries one, from its origin or
# from a rule, or one visitor's page could be kept for everyone (Surrogate-Control: Fastly,
# Akamai; RFC 9213's CDN-Cache-Control and its vendors' own; X-Accel-Expires: an nginx cache).
CDN_CACHE_CONTROLS: Final = frozenset({
    b"surrogate-control", b"cdn-cache-control", b"cloudflare-cdn-cache-control",
    b"vercel-cdn-cache-control", b"netlify-cdn-cache-control", b"edge-control",
    b"x-accel-expires"})
# Places in every page that work like slots: HTML added at the end of <head>, or of <body>.
INJECTIONS: Final = ("head", "body_end")
SlotAction = Literal["inner", "replace", "append", "prepend", "before", "after", "remove",
                     "text", "set_attribute", "remove_attribute", "add_class", "remove_class"]
SLOT_ACTIONS: Final[tuple[SlotAction, ...]] = ("inner", "replace", "append", "prepend", "before",
                                               "after", "remove", "text", "set_attribute",
                                               "remove_attribute", "add_class", "remove_class")
Pairs = tuple[tuple[str, str], ...]
HeaderLines = tuple[tuple[bytes, bytes], ...]
_NONE: Final[Pairs] = ()
_VARIANT_FIELD: Final = "profile.variants."
_NO_SLOTS: Final[Mapping[str, Content]] = MappingProxyType({})


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
    # Worked out when built: a page's segment is looked up by its contents on every
    # request, and dataclass would hash them anew each time, as interpreted code.
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.action, self.template, self.attribute,
                                                self.source)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Content):
            return NotImplemented
        return (self._hash == other._hash and self.action == other.action
                and self.template == other.template and self.attribute == other.attribute
                and self.source == other.source)


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302
    keep_query: bool = True


def header_lines(headers: Pairs) -> HeaderLines:
    """Response headers as they go out (names lower-case, as every name past the edges)."""
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1"))
                 for name, value in headers)


def cookie_lines(cookies: Pairs) -> HeaderLines:
    """Cookies as Set-Cookie headers (names and values were checked when rules loaded)."""
    return tuple((b"set-cookie", f"{name}={value}; Path=/; SameSite=Lax".encode("latin-1"))
                 for name, value in cookies)


@dataclass(frozen=True)
class Rule:
    name: str
    condition: Condition
    rank: int                             # order: priority first, then file and position
    priority: int
    source: str                           # file:line
    slots: Mapping[str, Content] = field(default_factory=lambda: _NO_SLOTS)
    redirect: Redirect | None = None
    headers: Pairs = _NONE
    cookies: Pairs = _NONE
    written: str = ""   # its name as written, when that is not `name` (a slot filled by:)
    # Derived when built: the slots and page actions this rule can claim.
    targets: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        keys = set(self.slots)
        for action, present in (("redirect", self.redirect), ("headers", self.headers),
                                ("cookies", self.cookies)):
            if present:
                keys.add(action)
        object.__setattr__(self, "targets", frozenset(keys))


@dataclass(frozen=True)
class Experiment:
    name: str
    slots: tuple[str, ...]
    audience: Condition
    holdout: float                                   # percent held out: the page as it is
    weights: tuple[tuple[str, float], ...]           # variant -> weight, control included
    variants: Mapping[str, Mapping[str, Content]]    # variant -> slot -> content
    source: str
    goals: tuple[str, ...] = ()                      # what it is judged on
    allocation: Allocation = "fixed"                 # bandit: weights learned per cell
    cells: Cells = Cells()                           # which cell a visitor counts in
    bandit: BanditSettings | None = None             # with allocation: bandit
    paused: bool = False                             # shows no variant, counts no one new
    # Derived when built: the period its fixed weights assign visitors in
    # (allocation.weights_period), read on every page view that counts an exposure.
    fixed_period: int = field(init=False, compare=False, repr=False)
    # ... and its variants' names, sorted: what learned weights must be published for
    names: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed_period", weights_period(self.holdout, self.weights))
        object.__setattr__(self, "names", tuple(sorted(name for name, _ in self.weights)))


DEFAULT_GOAL_WINDOW: Final = 72 * 3600.0   # seconds a conversion is attributed to an exposure


@dataclass(frozen=True)
class Goal:
    """A conversion: a request that meets `when` (and answered with one of `statuses`),
    or an origin's goal header naming it, or (with `beacon`) the page's beacon. Its value
    comes from a query parameter or a response header, when one is named."""

    name: str
    when: Condition | None = None                    # None: header or beacon only
    statuses: frozenset[int] = frozenset()           # empty: any but an error (< 400)
    value_query: str | None = None
    value_header: str | None = None
    window_seconds: float = DEFAULT_GOAL_WINDOW
    source: str = ""
    beacon: bool = False                             # the page's beacon may reach it

    def reached_by(self, visitor: Visitor) -> bool:
        return self.when is not None and self.when(visitor)


@dataclass(frozen=True)
class RedirectRoute:
    """A rule's redirect, as the loop guard follows it: where it goes from where."""

    rank: int
    condition: Condition
    target: str                 # the path it sends to
    target_host: str = ""       # the host of an absolute URL ("" for a path)


@dataclass(frozen=True)
class RuleSet:
    """Every rule, segment, slot and experiment of a rules directory, compiled."""

    version: str
    rules: tuple[Rule, ...]                          # in rank order
    slots: Mapping[str, Slot]
    experiments: tuple[Experiment, ...]
    interests: Mapping[str, tuple[str, ...]]
    index: RuleIndex                                 # which rules a visitor could match
    redirects: tuple[RedirectRoute, ...] = ()        # every redirecting rule, rank order
    loaded_at: float = 0.0
    file_count: int = 0
    fields: frozenset[str] = frozenset()             # every visitor field the rules read
    vary: tuple[str, ...] = ()                       # the request headers those come from
    goals: Mapping[str, Goal] = field(default_factory=lambda: MappingProxyType({}))
    # Derived when built: everything a rule can claim (each slot, page action and
    # injection), and the Vary value of a page these rules may personalize (b"" if none).
    targets: frozenset[str] = field(init=False, compare=False, repr=False)
    vary_header: bytes = field(init=False, compare=False, repr=False)
    rule_names: frozenset[str] = field(init=False, compare=False, repr=False)
    # ... with the experiments' and those whose variant a rule reads (profile.variants.X,
    # of an experiment maybe removed): what a visitor's full profile keeps its entries for
    served_names: frozenset[str] = field(init=False, compare=False, repr=False)
    # ... and the goals a request reaches by its own data, indexed as the rules are: every
    # request is checked against every goal, so a site's many goals cost one lookup.
    _goal_index: GoalIndex = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", frozenset(self.slots) | frozenset(PAGE_ACTIONS)
                           | frozenset(INJECTIONS))
        object.__setattr__(self, "vary_header", ", ".join(self.vary).encode("latin-1"))
        object.__setattr__(self, "rule_names", frozenset(rule.name for rule in self.rules))
        object.__setattr__(self, "served_names", self.rule_names | frozenset(
            [experiment.name for experiment in self.experiments]
            + [name[len(_VARIANT_FIELD):] for name in self.fields
               if name.startswith(_VARIANT_FIELD)]))
        object.__setattr__(self, "_goal_index", GoalIndex.build(self.goals.values()))

    def goals_within_reach(self, visitor: Visitor) -> tuple[Goal, ...]:
        """The goals whose conditions this request could meet, in the order written (each
        still to be tested: the index only leaves out those it cannot meet)."""
        return self._goal_index.within_reach(visitor)

    @property
    def size(self) -> str:
        """How much it holds, as the logs say it: "8 rules, 2 experiments and 3 goals in 4
        files" (experiments and goals when there are any)."""
        parts = [counted(len(self.rules), "rule")]
        parts += [counted(n, what) for n, what in ((len(self.experiments), "experiment"),
                                                   (len(self.goals), "goal")) if n]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"{listed} in {counted(self.file_count, 'file')}"

    def experiment(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)

    @classmethod
    def empty(cls, version: str = "none") -> RuleSet:
        return cls(version=version, rules=(), slots=MappingProxyType({}), experiments=(),
                   interests=MappingProxyType({}), index=RuleIndex.build(()))


Reason = Literal["rule", "experiment", "holdout", "control"]
# The variant name of the visitors an experiment holds out (X-EP-Variant, cache tags and
# their counts): no variant may be so named.
HOLDOUT: Final = "holdout"


@dataclass(frozen=True, init=False)
class SlotChoice:
    """What one slot shows, and why."""

    slot: str
    variant: str
    reason: Reason
    by: str                                   # the rule or experiment
    content: Content | None = None            # None: leave the slot as it is
    cell: str = ALL_VISITORS                  # the experiment's cell the visitor counts in

    # Written out, as Decision's: the __init__ dataclass generates is interpreted code.
    def __init__(self, slot: str, variant: str, reason: Reason, by: str,
                 content: Content | None = None, cell: str = ALL_VISITORS) -> None:
        object.__setattr__(self, "slot", slot)
        object.__setattr__(self, "variant", variant)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "by", by)
        object.__setattr__(self, "content", content)
        object.__setattr__(self, "cell", cell)


_NO_CHOICES: Final[Mapping[str, SlotChoice]] = MappingProxyType({})


@dataclass(frozen=True, init=False)
class Decision:
    """The outcome for one visitor: a choice per slot, and page actions.

    The derived attributes (what the response needs: header lines, X-EP-Variant, whether
    the page changes) are worked out once, when the decision is built.
    """

    slots: Mapping[str, SlotChoice] = field(default_factory=lambda: _NO_CHOICES)
    redirect: Redirect | None = None
    redirect_rule: str | None = None
    headers: Pairs = _NONE
    cookies: Pairs = _NONE
    rules: tuple[str, ...] = ()               # rules that won something
    changes_page: bool = field(init=False, compare=False, repr=False)
    # (slot, variant, by) for each slot, by slot name, when no chosen variant prints visitor
    # data (the page is the same for everyone this decision is made for); None otherwise.
    static_choices: tuple[tuple[str, str, str], ...] | None = field(
        init=False, compare=False, repr=False)
    variants: str = field(init=False, compare=False, repr=False)   # X-EP-Variant's text
    variant_header: bytes = field(init=False, compare=False, repr=False)
    header_lines: HeaderLines = field(init=False, compare=False, repr=False)
    cookie_lines: HeaderLines = field(init=False, compare=False, repr=False)
    sets_cache_control: bool = field(init=False, compare=False, repr=False)

    # Written out: a decision is made for every request that rules touch, and the
    # __init__ dataclass generates is interpreted code even when compiled (~20x slower).
    def __init__(self, slots: Mapping[str, SlotChoice] = _NO_CHOICES,
                 redirect: Redirect | None = None, redirect_rule: str | None = None,
                 headers: Pairs = _NONE, cookies: Pairs = _NONE,
                 rules: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "redirect", redirect)
        object.__setattr__(self, "redirect_rule", redirect_rule)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "cookies", cookies)
        object.__setattr__(self, "rules", rules)
        changes_page = static = False
        static_choices: tuple[tuple[str, str, str], ...] | None = ()
        variants = ""
        if self.slots:
            choices = sorted(self.slots.items())
            static = True
            for _, choice in choices:
                content = choice.content
                if content is not None:
                    changes_page = True
                    if content.template is not None and not content.template.is_static:
                        static = False
            static_choices = tuple([(slot, c.variant, c.by) for slot, c in choices]) \
                if static else None
            variants = ",".join([f"{slot}={c.variant}" for slot, c in choices])
        object.__setattr__(self, "changes_page", changes_page)
        object.__setattr__(self, "static_choices", static_choices)
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "variant_header", header_text(variants))
        object.__setattr__(self, "header_lines", header_lines(headers) if headers else ())
        object.__setattr__(self, "cookie_lines", cookie_lines(cookies) if cookies else ())
        object.__setattr__(self, "sets_cache_control", bool(headers) and any(
            name.lower() == "cache-control" for name, _ in headers))

    @property
    def is_empty(self) -> bool:
        return not (self.slots or self.redirect or self.headers or self.cookies)


def header_text(text: str) -> bytes:
    """`text` as a header value: `%` and any character outside ASCII percent-encoded
    as UTF-8 (a variant named "café" reads "caf%C3%A9"), the rest as written; two
    names never read alike."""
    if text.isascii() and "%" not in text:
        return text.encode("ascii")
    return "".join(c if c.isascii() and c != "%" else quote(c, safe="")
                   for c in text).encode("ascii")


NO_DECISION: Final = Decision()


def counted(n: int, what: str) -> str:
    """`n` things as a line says them: "1 rule", "3 rules"."""
    return f"{n} {what}{'' if n == 1 else 's'}"
