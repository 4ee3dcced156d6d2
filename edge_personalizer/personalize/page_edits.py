"""A decision's changes to a page: the slot edits and the HTML injected into its head and
before the end of its body, and the rewriter that applies them to the origin's bytes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from lru import LRU

from ..classify.visitor import Visitor
from ..rewrite.edits import Edit
from ..rewrite.first_bytes import FirstBytesMemo
from ..rewrite.html import csp_nonce, with_nonce
from ..rewrite.stream import ResponseRewriter
from ..rules.book import RuleBook
from ..rules.model import Decision, RuleSet, Slot
from .exchange import Exchange
from .response_headers import ResponseHead


@dataclass(frozen=True)
class PageChanges:
    """What a decision does to a page."""

    edits: tuple[Edit, ...]
    head: str       # HTML added at the end of <head>
    body_end: str   # HTML added before </body>
    slots: tuple[str, ...] = ()   # the slot each edit is for
    # On a view that looks (`looks`): the slots probed for which one's element is inside
    # which (see probed_slots), and their selectors.
    looks: bool = False
    probed: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.edits or self.head or self.body_end)


class PageEditor:
    """Turns decisions into page changes, and page changes into a rewriter.

    With `look` (a view whose slot presence is not known), a slot whose choice leaves it
    as it is (an experiment's control, a holdout) gets an edit that only looks for its
    element, so the page judges that choice as it judges a treatment (held_head): a page
    without the slot names none of them.

    A decision whose variants print no visitor data changes every page alike: its
    changes are worked out once per (rule set, choices, CSP nonce, look) and remembered
    (bounded), so decisions made apart (each visitor's own where the rules redirect)
    that chose the same variants share them. The first-bytes memo is shared by every
    rewriter of the app.
    """

    def __init__(self, rules: RuleBook | None, *, memo: FirstBytesMemo | None = None,
                 max_entries: int = 1024) -> None:
        self.rules = rules
        self.memo = memo
        self._known: LRU[tuple[int, tuple[tuple[str, str, str], ...], str | None, bool],
                         tuple[RuleSet | None, PageChanges]] = LRU(max_entries)

    def rewriter_for(self, exchange: Exchange, head: ResponseHead, accept_encoding: str, *,
                     on_error: Callable[[Exception], None], look: bool = False
                     ) -> tuple[ResponseRewriter, PageChanges] | None:
        """The rewriter for a page whose decision changes it (or, with `look`, has choices
        to judge by the page), and the changes it makes; None if nothing applies."""
        if self.rules is None:
            return None
        changes = self.changes(exchange.decision, exchange.visitor,
                               csp_nonce(head.get(b"content-security-policy", "")), look=look)
        if not changes:
            return None
        return ResponseRewriter(
            changes.edits, content_type=head.get(b"content-type", ""),
            content_encoding=head.get(b"content-encoding", ""),
            accept_encoding=accept_encoding, head=changes.head, body_end=changes.body_end,
            on_error=on_error, memo=self.memo, probes=changes.probes), changes

    def changes(self, decision: Decision, visitor: Visitor, nonce: str | None, *,
                look: bool = False) -> PageChanges:
        choices = decision.static_choices
        if choices is None:   # the variants print visitor data
            return self._work_out(decision, visitor, nonce, look)
        ruleset = self.rules.current if self.rules is not None else None
        key = (id(ruleset), choices, nonce, look)
        known = self._known.get(key)
        if known is None or known[0] is not ruleset:   # (a reloaded set: worked out anew)
            known = self._known[key] = (ruleset,
                                        self._work_out(decision, visitor, nonce, look))
        return known[1]

    def _work_out(self, decision: Decision, visitor: Visitor, nonce: str | None,
                  look: bool) -> PageChanges:
        slots = self.rules.current.slots if self.rules is not None else {}
        edits: list[Edit] = []
        names: list[str] = []
        injected = {"head": "", "body_end": ""}
        for name, choice in decision.slots.items():
            content = choice.content
            if content is None:
                if look and name in slots:
                    edits.append(Edit(slots[name].selector, "look"))
                    names.append(name)
                continue
            payload = content.template.render(visitor) if content.template else ""
            if name in injected:
                injected[name] += with_nonce(payload, nonce)
            elif name in slots:
                edits.append(Edit(slots[name].selector, content.action, payload,
                                  content.attribute))
                names.append(name)
        probed = probed_slots(names, slots) if look else ()
        return PageChanges(tuple(edits), injected["head"], injected["body_end"], tuple(names),
                           look, probed, tuple(slots[name].selector for name in probed))


# Slots a view that looks probes at most: each adds a handler for every element inside it.
MAX_PROBED_SLOTS: Final = 8


def probed_slots(names: Sequence[str], slots: Mapping[str, Slot]) -> tuple[str, ...]:
    """The slots a page is probed for, which one's element is inside which: a variant
    that takes away what its slot held hides a slot inside it, whose choice the page then
    does not show. A selector list ("a, b") cannot be probed (`a, b *` is no descendant
    of either): its slot is left out."""
    probed = tuple(name for name in names if "," not in slots[name].selector)
    return probed if 1 < len(probed) <= MAX_PROBED_SLOTS else ()


def to_look_for(decision: Decision) -> bool:
    """Whether the decision has choices that leave their slots as they are, which the page
    must show it has before they are named (in X-EP-Variant, the segment, the counts)."""
    return any(choice.content is None for choice in decision.slots.values())
