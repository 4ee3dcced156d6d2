"""Segment keys for shared caches, and the decision a key stands for.

A key names what a page looks like: one token per slot for the variant it shows (and a
digest of the values its template prints), and one for the page actions of the rules
(the headers they add, the cookies they set, the redirect), which change the response as
much as a variant does. Any worker and any instance with the same rules
reads a key back into the slot choices it stands for, so the page an edge asks for under
a key is rendered for that key, even for a first visit whose visitor id (and so its
experiment variants) was minted anew by /__ep/decide (issue 18, bug 2).

Keys stay bounded by the rules: a variant printing a field a visitor controls freely
(`request.query.name`, a utm value, a header, the browser a User-Agent names) never adds
its value to the key; its page is marked not shareable and goes out private instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from lru import LRU

from ..classify.visitor import Visitor
from ..rules.book import RuleBook
from ..rules.fields import BOUNDED_FIELDS
from ..rules.model import Content, Decision, RuleSet, SlotChoice

DEFAULT_SEGMENT: Final = "default"   # the page as the origin sent it, with no slot changed
# Purge tags go in the header of each CDN dialect: Fastly (space-separated), Cloudflare,
# Akamai (comma-separated).
ALL_TAG_HEADERS: Final = ("surrogate-key", "cache-tag", "edge-cache-tag")

SEGMENT_HEADER: Final = "x-ep-segment"   # the request header a trusted edge names its cache key in
UNBOUNDED: Final = "x"   # a value part that stands for "not in the key": the page is private
# Why a slot keeps its default with nothing counted: visitors an experiment does not bucket
# (bots, visitors without a stored profile) and those it holds out see the default page,
# so their choices add nothing to the key (a variant named "control" that they are
# bucketed into is counted as an exposure: it keeps its token).
_AS_IS: Final = frozenset({"control", "holdout"})
_TAG_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_SLOT_TOKEN: Final = r"[0-9a-f]{8}(?:\.(?:[0-9a-f]{8}|x))?"
_ACTIONS_TOKEN: Final = r"p[0-9a-f]{8}"   # the page actions: always last
_KEY: Final = re.compile(rf"s-(?:{_SLOT_TOKEN}(?:_{_SLOT_TOKEN})*(?:_{_ACTIONS_TOKEN})?"
                         rf"|{_ACTIONS_TOKEN})")


@dataclass(frozen=True)
class Segment:
    """What a page looks like for a decision: its cache key and purge tags."""

    key: str                   # "default", or "s-" and a token per slot
    tags: tuple[str, ...]      # ep, ep-rule-<name>, ep-variant-<slot>-<variant>, ep-segment-<key>
    shareable: bool = True     # False: a variant prints what the key cannot bound
    _encoded: dict[tuple[str, ...], tuple[tuple[bytes, bytes], ...]] = field(
        default_factory=dict, compare=False, repr=False)

    def tag_lines(self, tag_headers: tuple[str, ...]) -> tuple[tuple[bytes, bytes], ...]:
        """The purge tags in the headers named (Surrogate-Key space-separated, the others
        comma-separated), encoded once per segment."""
        encoded = self._encoded.get(tag_headers)
        if encoded is None:
            spaced, listed = " ".join(self.tags).encode(), ",".join(self.tags).encode()
            encoded = self._encoded[tag_headers] = tuple(
                (name.encode(), spaced if name == "surrogate-key" else listed)
                for name in tag_headers)
        return encoded


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def _content_text(content: Content | None) -> str:
    """What a variant puts in its slot, written out: its action, attribute and template
    (literal text, and each placeholder with its default and escaping)."""
    if content is None:
        return ""
    parts = content.template.parts if content.template is not None else ()
    written = [part if isinstance(part, str) else
               f"\0{{{part.field}|{part.default}|{part.escape}|{part.url_start}}}\0"
               for part in parts]
    return f"{content.action}\0{content.attribute or ''}\0{''.join(written)}"


def choice_token(choice: SlotChoice) -> str:
    """Eight hex digits naming one slot's choice (slot, variant, why, by whom) and what it
    puts in the slot: an edited variant gets new keys at once, and its old keys are no
    longer read back (their pages go private until the cache has the new ones)."""
    return _digest(f"{choice.slot}\0{choice.variant}\0{choice.reason}\0{choice.by}\0"
                   f"{_content_text(choice.content)}")


def _tag(text: str, fits: int = 64) -> str:
    """A rule, slot or variant name as purge tags carry it: as it is when it can be one
    (letters, digits and `_.-`, at most `fits`); else with the rest as `_`, cut to fit,
    `~` (which no name kept as it is has) and 8 hex digits of the name itself, so two
    names never share a tag (`big sale` and `big_sale`, `café` and `cafè`, `big sale` and
    a name written as its tag)."""
    tag = _TAG_UNSAFE.sub("_", text)
    return tag if tag == text and len(tag) <= fits else f"{tag[:fits - 9]}~{_digest(text)}"


def actions_token(decision: Decision) -> str | None:
    """"p" and eight hex digits naming the decision's page actions (the redirect, the
    headers and the cookies, names and values, all written in the rules: bounded by
    them); None when it has none."""
    if decision.redirect is None and not decision.headers and not decision.cookies:
        return None
    return _actions_token(_actions_of(decision))


def _actions_of(decision: Decision) -> tuple[object, ...]:
    """The decision's page actions as plain values (no object of the rules in them)."""
    redirect = decision.redirect
    where = (redirect.location, redirect.status, redirect.keep_query) \
        if redirect is not None else None
    return (where, tuple(decision.headers), tuple(decision.cookies))


def _actions_token(actions: tuple[object, ...]) -> str:
    return "p" + _digest(repr(actions))


def segment_of(decision: Decision, visitor: Visitor, *,
               tokens: Callable[[SlotChoice], str] = choice_token,
               actions: Callable[[Decision], str | None] = actions_token) -> Segment:
    """The segment a decision puts the visitor in (`tokens` and `actions` name its slot
    choices and page actions: SegmentBook.segment_of passes its remembered ones)."""
    parts: list[str] = []
    tags = {"ep"}
    shareable = True
    for slot, choice in sorted(decision.slots.items()):
        if choice.content is None and choice.reason in _AS_IS:
            continue   # the slot as the default page has it, and nothing counted
        token = tokens(choice)
        template = choice.content.template if choice.content is not None else None
        if template is not None and not template.is_static:
            if template.fields <= BOUNDED_FIELDS:
                token += "." + _digest(template.render(visitor))
            else:
                token += "." + UNBOUNDED
                shareable = False
        parts.append(token)
        tags.add(f"ep-rule-{_tag(choice.by)}")
        # (Akamai takes tags of up to 128 characters: 11 + 56 + 1 + 56)
        tags.add(f"ep-variant-{_tag(slot, 56)}-{_tag(choice.variant, 56)}")
    page_actions = actions(decision)
    if page_actions is not None:
        parts.append(page_actions)
        tags.update(f"ep-rule-{_tag(rule)}" for rule in decision.rules)
    if not parts:
        return Segment(DEFAULT_SEGMENT, ("ep", f"ep-segment-{DEFAULT_SEGMENT}"))
    key = "s-" + "_".join(parts)
    tags.add(f"ep-segment-{key}")
    return Segment(key, tuple(sorted(tags)), shareable)


def _choices(ruleset: RuleSet) -> Iterator[SlotChoice]:
    """Every choice a decision of these rules can make for a slot."""
    for rule in ruleset.rules:
        for slot, content in rule.slots.items():
            yield SlotChoice(slot, rule.name, "rule", rule.name, content)
    for experiment in ruleset.experiments:
        for slot in experiment.slots:
            for variant, contents in experiment.variants.items():
                yield SlotChoice(slot, variant, "experiment", experiment.name,
                                 contents.get(slot))


class SegmentBook:
    """Makes the serving rules' segment keys and reads them back into decisions.

    The tokens of every choice the rules can make are worked out once per rule set
    version, for the current version only: a reload lets go of the old rules' choices,
    and a key made before it that names choices now gone is not read back. Page actions'
    tokens are remembered as plain values (bounded), never as objects of the rules.
    """

    def __init__(self, rules: RuleBook, *, max_actions: int = 1024) -> None:
        self.rules = rules
        self._version: str | None = None
        self._tokens: dict[SlotChoice, str] = {}           # choice -> its token
        self._table: dict[str, SlotChoice | None] = {}     # token -> the choice it names
        self._actions: LRU[tuple[object, ...], str] = LRU(max_actions)

    def _follow(self) -> None:
        """The tables of the serving rule set, built when its version is new."""
        ruleset = self.rules.current
        if ruleset.version == self._version:
            return
        tokens: dict[SlotChoice, str] = {}
        table: dict[str, SlotChoice | None] = {}
        for choice in _choices(ruleset):
            token = tokens[choice] = choice_token(choice)
            known = table.get(token, choice)
            # Two choices under one token (a 1 in 4 billion chance): neither is read.
            table[token] = choice if known == choice else None
        self._version, self._tokens, self._table = ruleset.version, tokens, table

    def _choice_token(self, choice: SlotChoice) -> str:
        # A choice of other rules (made before a reload) is worked out, not remembered.
        token = self._tokens.get(choice)
        return token if token is not None else choice_token(choice)

    def _actions_token(self, decision: Decision) -> str | None:
        if decision.redirect is None and not decision.headers and not decision.cookies:
            return None
        actions = _actions_of(decision)
        token = self._actions.get(actions)
        if token is None:
            token = self._actions[actions] = _actions_token(actions)
        return token

    def segment_of(self, decision: Decision, visitor: Visitor) -> Segment:
        """The segment a decision puts the visitor in."""
        self._follow()
        return segment_of(decision, visitor, tokens=self._choice_token,
                          actions=self._actions_token)

    def decision_for(self, key: str, decision: Decision, visitor: Visitor) -> Decision | None:
        """`decision` with the slot choices `key` stands for; None when the key cannot be
        read with the serving rules or does not come out the same for this visitor. The
        page actions are the visitor's own (they never depend on an experiment): a key
        naming other actions (another redirect, other headers or cookies) is not read.
        (For the visitor's own choices, the values their templates print are compared
        where the page's key is: such a page goes private, PageHeaders.shareable.)"""
        actions = None
        if key == DEFAULT_SEGMENT:
            slots: dict[str, SlotChoice] = {}
        elif _KEY.fullmatch(key):
            self._follow()
            table = self._table
            slots = {}
            for token in key[2:].split("_"):
                if token.startswith("p"):
                    actions = token
                    continue
                choice = table.get(token[:8])
                if choice is None or choice.slot in slots:
                    return None
                slots[choice.slot] = choice
        else:
            return None
        if dict(decision.slots) == slots:   # the visitor's own choices (most requests)
            return decision if self._actions_token(decision) == actions else None
        forced = dataclasses.replace(decision, slots=MappingProxyType(slots))
        return forced if self.segment_of(forced, visitor).key == key else None
