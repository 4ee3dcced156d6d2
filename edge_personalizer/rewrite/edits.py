"""Page edits and the element handlers lol-html calls to make them: what an edit does to
its element, HTML added at the end of <head> or <body>, and what each handler found."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import lolhtml

from .bypass import marker, slot_end

# What an edit can do to its element (the rule files' slot actions name these).
EditAction = Literal["inner", "replace", "append", "prepend", "before", "after", "remove",
                     "text", "set_attribute", "remove_attribute", "add_class",
                     "remove_class"]
# An edit that changes nothing: its element is only found, for a slot whose chosen
# variant leaves it as it is but whose presence in the page decides whether that counts.
Look = Literal["look"]

logger = logging.getLogger("edge_personalizer.rewrite.html")   # the rewriter's own warnings

_HTML: Final = lolhtml.ContentType.HTML
_TEXT: Final = lolhtml.ContentType.TEXT


@dataclass(frozen=True)
class Edit:
    """One change: what to do to the elements a selector finds."""

    selector: str
    action: EditAction | Look
    payload: str = ""                 # HTML, text, attribute value or class names
    attribute: str | None = None
    first_only: bool = True           # a slot is one element: later matches are left alone
    # Worked out from the others when the edit is made (a page's edits are read on every
    # request; the edits of a decision are made once): the data-ep-slot marker the
    # selector names (None for any other selector), the element it names ("" for any), and
    # the edit's hash.
    slot: str | None = field(init=False, compare=False, repr=False)
    tag: str = field(init=False, compare=False, repr=False)
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        slot, tag = marker(self.selector)
        object.__setattr__(self, "slot", slot)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "_hash", hash((self.selector, self.action, self.payload,
                                                self.attribute, self.first_only)))

    # Written out (dataclass would generate them, as interpreted code even when compiled):
    # a page's edits are looked up in the first-bytes memo on every request.
    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Edit):
            return NotImplemented
        return self is other or (
            self.selector == other.selector and self.action == other.action
            and self.payload == other.payload and self.attribute == other.attribute
            and self.first_only == other.first_only)


def _classes(value: str | None) -> list[str]:
    return value.split() if value else []


def apply(edit: Edit, element: lolhtml.Element) -> None:
    """Make `edit` on `element` (an attribute edit without an attribute, or a look, does
    nothing)."""
    action = edit.action
    if action == "inner":
        element.set_inner_content(edit.payload, _HTML)
    elif action == "replace":
        element.before(edit.payload, _HTML)
        element.remove()
    elif action == "append":
        element.append(edit.payload, _HTML)
    elif action == "prepend":
        element.prepend(edit.payload, _HTML)
    elif action == "before":
        element.before(edit.payload, _HTML)
    elif action == "after":
        element.after(edit.payload, _HTML)
    elif action == "remove":
        element.remove()
    elif action == "text":
        element.set_inner_content(edit.payload, _TEXT)
    elif action == "set_attribute" and edit.attribute:
        element.set_attribute(edit.attribute, edit.payload)
    elif action == "remove_attribute" and edit.attribute:
        element.remove_attribute(edit.attribute)
    elif action in ("add_class", "remove_class"):
        current = _classes(element.get_attribute("class"))
        names = _classes(edit.payload)
        if action == "add_class":
            updated = current + [n for n in names if n not in current]
        else:
            updated = [c for c in current if c not in names]
        element.set_attribute("class", " ".join(updated))


class Tally:
    """What a rewrite did: edits applied and failed. Handlers share it with the Rewriter
    instead of holding the Rewriter, so no reference cycle keeps a finished rewrite (and
    its lol-html state) alive until the garbage collector comes by."""

    __slots__ = ("applied", "errors", "on_error")

    def __init__(self, on_error: Callable[[Exception], None] | None) -> None:
        self.applied = 0
        self.errors = 0
        self.on_error = on_error

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        logger.warning("a page edit failed and was skipped: %s", exc)
        if self.on_error is not None:
            self.on_error(exc)

    def gave_up(self, exc: Exception) -> None:
        """lol-html itself failed: the rest of the page follows unchanged."""
        self.errors += 1
        logger.warning("HTML rewriter gave up (%s); the rest of the page follows unchanged",
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if self.on_error is not None:
            self.on_error(exc)


class EditHandler:
    def __init__(self, edit: Edit, tally: Tally) -> None:
        self.edit = edit
        self.slot = edit.slot or ""   # the data-ep-slot it edits, if any
        self.done = False
        self.tag_name = ""
        self.ends_at = -1       # where the edited element's end tag ends, once found
        # (end, tag name) found before the rewriter read the page's first bytes
        self.planned: tuple[int, str] | None = None
        self._tally = tally

    def element(self, element: lolhtml.Element) -> None:
        if self.done and self.edit.first_only:
            return
        self.done = True
        self.tag_name = element.tag_name
        try:
            apply(self.edit, element)
            self._tally.applied += 1
        except Exception as exc:   # the element stays as it was; the page goes on
            self._tally.failed(exc)

    def closed(self, data: bytes | bytearray) -> bool:
        """Whether the edited element's end tag is in `data` (the input seen so far)."""
        if self.ends_at >= 0:
            return True
        planned = self.planned
        # Planned on the first bytes with the marker once up to the element's end: true
        # while the rewriter has read no further.
        if planned is not None and len(data) <= planned[0]:
            end, tag = planned
        else:
            end, tag = slot_end(data, self.slot)
        if end < 0 or len(data) < end or tag != self.tag_name.lower():
            return False
        self.ends_at = end
        return True


class Injector:
    """Adds HTML at the end of <head> (so <meta charset> stays first) or before </body>."""

    def __init__(self, html: str, where: str) -> None:
        self.html = html
        self.where = where
        self.done = False

    def element(self, element: lolhtml.Element) -> None:
        if self.done:
            return
        self.done = True
        element.append(self.html, _HTML)


class Nesting:
    """Which of some slots' elements (each slot's first, the one its edit takes) is inside
    which, whatever their selectors say; it changes nothing. lol-html calls an element's
    handlers in the order they were attached: a count of the page's elements comes before
    the others (`attach_first`), then, after them (`attach_last`), for each slot a note of
    the last element found inside its first element (`selector *`: an element inside a
    later one is not noted, so a slot inside it is taken as shown), then the slot's own."""

    __slots__ = ("selectors", "count", "last", "matches", "inside")

    def __init__(self, selectors: Sequence[str]) -> None:
        self.selectors = tuple(selectors)
        self.count = 0                            # elements of the page so far
        self.last = [-1] * len(selectors)         # slot i: the last count inside its first
        self.matches = [0] * len(selectors)       # slot i: elements its selector found
        self.inside: set[tuple[int, int]] = set()   # (outer, inner) by place in selectors

    def attach_first(self, rewriter: lolhtml.HTMLRewriter) -> None:
        rewriter.on("*", _Counted(self))

    def attach_last(self, rewriter: lolhtml.HTMLRewriter) -> None:
        for index, selector in enumerate(self.selectors):
            rewriter.on(f"{selector} *", _Within(self, index))
        for index, selector in enumerate(self.selectors):
            rewriter.on(selector, _Found(self, index))


class _Counted:
    __slots__ = ("nesting",)

    def __init__(self, nesting: Nesting) -> None:
        self.nesting = nesting

    def element(self, element: lolhtml.Element) -> None:
        self.nesting.count += 1


class _Within:
    __slots__ = ("nesting", "index")

    def __init__(self, nesting: Nesting, index: int) -> None:
        self.nesting = nesting
        self.index = index

    def element(self, element: lolhtml.Element) -> None:
        nesting = self.nesting
        if nesting.matches[self.index] == 1:   # inside the slot's first element
            nesting.last[self.index] = nesting.count


class _Found(_Within):
    def element(self, element: lolhtml.Element) -> None:
        nesting, index = self.nesting, self.index
        nesting.matches[index] += 1
        if nesting.matches[index] == 1:
            nesting.inside.update((outer, index) for outer, at in enumerate(nesting.last)
                                  if outer != index and at == nesting.count)


class Handlers:
    """The handlers of one response, edits first, then injections (`where`, HTML); with
    `probes` (slots' selectors), which of those slots is inside which (Nesting), which no
    edit waits for."""

    __slots__ = ("edits", "every", "nesting")

    def __init__(self, edits: Sequence[Edit], injections: Sequence[tuple[str, str]],
                 tally: Tally, probes: Sequence[str] = ()) -> None:
        self.edits = [EditHandler(edit, tally) for edit in edits]
        self.every: list[EditHandler | Injector] = [*self.edits]
        self.every += [Injector(html, where) for where, html in injections]
        self.nesting = Nesting(probes) if len(probes) > 1 else None

    def attach(self, rewriter: lolhtml.HTMLRewriter) -> None:
        if self.nesting is not None:
            self.nesting.attach_first(rewriter)
        for handler in self.every:
            selector = (handler.edit.selector if isinstance(handler, EditHandler)
                        else handler.where)
            rewriter.on(selector, handler)
        if self.nesting is not None:
            self.nesting.attach_last(rewriter)

    @property
    def changed(self) -> bool:
        return any(handler.done for handler in self.every)

    @property
    def planned(self) -> bool:
        return any(handler.planned is not None for handler in self.edits)

    def closed(self, data: bytes | bytearray) -> bool:
        """Whether every edited element's end tag is in `data` (the input seen so far)."""
        for handler in self.every:
            if not handler.done:
                return False
            if isinstance(handler, EditHandler) and not handler.closed(data):
                return False
        return True

    def plan(self, data: bytes) -> int:
        """Where the last edited slot element ends in `data` (the page's first bytes), if
        every one is there; else -1."""
        if len(self.every) != len(self.edits):
            return -1
        last = -1
        for handler in self.edits:
            end, tag = slot_end(data, handler.slot, read=0)
            if end < 0:
                return -1
            handler.planned = (end, tag)
            last = max(last, end)
        return last

    @property
    def found(self) -> tuple[bool, ...]:
        return tuple(handler.done for handler in self.edits)

    @property
    def inside(self) -> frozenset[tuple[int, int]]:
        """(outer, inner) for each probed slot's element found inside another's, by their
        places in `probes`."""
        return frozenset(self.nesting.inside) if self.nesting is not None else frozenset()
