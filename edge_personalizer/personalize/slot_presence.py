"""Which of the rules' slots each page has: learned per page (its path, and the query
parameters that may make it another page of that path: page_key), so a page that lacks a
slot costs (almost) nothing and says nothing about variants it never showed.

The first view of a page is rewritten as usual, its head held until the rewriter has
found the decision's slots or the page has ended (held_head: what the head says of the
slots is then what the page has); at its end the rewriter tells which of the decision's
slots it found. Later views of that page drop the choices for slots the page lacks before
anything is made of them: the X-EP-Variant header, the cache tags, the exposures counted
and the profile cookie name only what the page shows, and a page left with nothing to
change passes untouched, with its Content-Length.

Such a view also finds which of the decision's slots sits inside which (page_edits
probed_slots): a slot inside one whose variant takes away what it held (inner, text,
replace, remove) is not shown either, and its choice is dropped the same way (`hidden`).

A page can change. What was learned is forgotten, and the next view looks again, when:
- the response's validators differ from those it was learned from (ETag, else
  Last-Modified, and Content-Length; one set per content coding, since an origin gives
  its gzip answer other validators than its plain one);
- the page has been answered `relearn_views` times, or `relearn_seconds` have passed,
  from what was learned (a page without validators is looked at again that often);
- the rules are reloaded (a slot's selector may have changed).
Each of these views is held like a first view. Per worker, bounded (least recently used
paths go first). A path learns at most `max_queries` of its queries apart: past them (a
search's `?q=`, a listing's filters), its other queries (`/search?*`) are taken to have
every slot, as pages were before any was learned: no held first view each, nothing
pushed out of the memo, and no page of them, with or without a slot, decides for the
others (their exposures count as on a page with the slot).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote_plus, urlencode

from lru import LRU

from ..rules.book import RuleBook
from ..rules.model import INJECTIONS, Decision, SlotChoice

ResponseHead = dict[bytes, str]   # as response_headers.read_head gives it
Validators = tuple[str, str]   # (ETag or Last-Modified, Content-Length)
Nest = tuple[str, str]   # (outer slot, inner slot): the inner's element inside the outer's
_NOTHING: Final[frozenset[str]] = frozenset()
OTHER_QUERIES: Final = "?*"   # the page key of a path's queries past max_queries
_NO_CHOICES: Final[Mapping[str, SlotChoice]] = MappingProxyType({})
# What a variant does to its slot that takes away what the slot held.
_EMPTYING: Final = frozenset({"inner", "replace", "remove", "text"})
# Landing-URL parameters that tell where a visitor came from, never which page it is
# (with utm_*): a page is learned once, whatever campaign or ad click brought its visitors.
# An XHR's cache buster (`_`, jQuery's) is no page either.
_CAMPAIGN_PARAMS: Final = frozenset({
    "gclid", "gbraid", "wbraid", "dclid", "gad_source", "gad_campaignid", "srsltid", "fbclid",
    "msclkid", "ttclid", "twclid", "li_fat_id", "yclid", "igshid", "rdt_cid", "sccid",
    "epik", "obclid", "tblci", "ef_id", "s_kwcid", "mc_cid", "mc_eid", "_hsenc", "_hsmi",
    "mkt_tok", "_kx", "_ga", "_gl", "_"})


def page_key(path: str, query: Mapping[str, str]) -> str:
    """What a page is learned by: its path and the query parameters that may make it
    another page of that path (`?page=about`, `?id=2`), in any order; not campaign ones."""
    if not query:
        return path
    kept = sorted((name, value) for name, value in query.items() if not _campaign(name))
    return f"{path}?{urlencode(kept)}" if kept else path


def page_query(query: bytes) -> bytes:
    """A raw query string without its campaign parameters, in its order and encoding (the
    parameters page_key keeps, unsorted: `a=1&utm_source=x&fbclid=y` -> `a=1`)."""
    if not query:
        return query
    return b"&".join(pair for pair in query.split(b"&") if pair and not _campaign(
        unquote_plus(pair.partition(b"=")[0].decode("latin-1"))))


def _campaign(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("utm_") or lower in _CAMPAIGN_PARAMS


def nesting(slots: Sequence[str], probed: Sequence[str],
            inside: frozenset[tuple[int, int]] | None) -> dict[Nest, bool]:
    """For each pair of the `slots` a view looked for, whether the page had one inside the
    other: as found of the `probed` (`inside`: the rewriter's, by their places in
    `probed`), and taken as not for a pair it could not probe; none when `inside` is None
    (the page could not be read)."""
    if inside is None:
        return {}
    found = {(probed[outer], probed[inner]) for outer, inner in inside}
    return {(outer, inner): (outer, inner) in found for outer in slots for inner in slots
            if outer != inner and outer not in INJECTIONS and inner not in INJECTIONS}


def hidden(slots: Mapping[str, SlotChoice], inside: Iterable[Nest]) -> frozenset[str]:
    """The slots of a decision (`slots`, its choices) whose element is inside another
    slot's (`inside`) whose variant takes away what it held: the page never shows their
    choice."""
    out = set()
    for outer, inner in inside:
        choice = slots.get(outer)
        if inner in slots and choice is not None and choice.content is not None \
                and choice.content.action in _EMPTYING:
            out.add(inner)
    return frozenset(out)


def validators(head: ResponseHead) -> tuple[str, Validators]:
    """The content coding of a response and what tells its body from another's."""
    tag = head.get(b"etag") or head.get(b"last-modified") or ""
    return (head.get(b"content-encoding", "").strip().lower(),
            (tag, head.get(b"content-length", "")))


class PageSlots:
    """What one path's page was seen to have."""

    __slots__ = ("found", "absent", "nested", "inside", "validators", "views", "learned_at")

    def __init__(self, learned_at: float) -> None:
        self.found: dict[str, bool] = {}          # slot -> its element is in the page
        self.absent: frozenset[str] = _NOTHING    # the slots found missing
        self.nested: dict[Nest, bool] = {}        # (outer, inner) -> one inside the other
        self.inside: frozenset[Nest] = frozenset()   # the pairs found so
        self.validators: dict[str, Validators] = {}   # content coding -> validators
        self.views = 0
        self.learned_at = learned_at


_SAMPLE: Final = 3   # pages named for a slot found on none
_LEAST_LOOKS: Final = 3   # looks at pages before a slot is told found on none
_MOST_PAGES: Final = 1000   # pages told apart per slot (past them, counted no more)


class Looks:
    """One slot's looks (whole pages read for it: a page is read again when it changes,
    every minute or every 1000 views) since its definition last changed: how many, at
    how many pages (told apart up to _MOST_PAGES), how many found it, and the first pages
    (their paths: a query may hold what a visitor typed) that lacked it."""

    __slots__ = ("looks", "pages", "found", "lacking")

    def __init__(self) -> None:
        self.looks = 0
        self.pages: set[str] = set()
        self.found = 0
        self.lacking: list[str] = []

    def as_json(self) -> dict[str, object]:
        return {"looks": self.looks, "pages": len(self.pages), "found": self.found,
                "lacking": list(self.lacking)}


class SlotPresence:
    """Per page (bounded), which slots of the serving rules it has; per slot, since its
    definition last changed, on how many of the pages looked at it was found (`looks`)."""

    def __init__(self, rules: RuleBook | None, *, max_paths: int = 4096,
                 max_queries: int = 16, relearn_views: int = 1000,
                 relearn_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 learn: bool = True, hold_seconds: float = 0.5) -> None:
        """`learn=False`: nothing is learned, every page is taken to have every slot (a
        replay's stand-in pages are not the site's). `hold_seconds`: the longest a page's
        head waits on a view that learns (held_head)."""
        self.rules = rules
        self.learn = learn
        self.hold_seconds = hold_seconds
        self.relearn_views = relearn_views
        self.relearn_seconds = relearn_seconds
        self.clock = clock
        self._paths: LRU[str, PageSlots] = LRU(max_paths)
        # path -> the hashes of its queries learned apart (page_of), at most max_queries
        self.max_queries = max_queries
        self._queries: LRU[str, set[int]] = LRU(max(1, max_paths // 4))
        self._version = rules.current.version if rules is not None else ""
        # Decisions with some choices dropped, remembered by the decision and what went
        # (a decision of rules alone is one object for everyone it is made for).
        self._trimmed: LRU[tuple[int, frozenset[str]], tuple[Decision, Decision]] = LRU(1024)
        self._looks: dict[str, Looks] = {}
        self._slots = rules.current.slots if rules is not None else {}   # looked for as these

    def __len__(self) -> int:
        return len(self._paths)

    def _current(self) -> LRU[str, PageSlots]:
        rules = self.rules
        if rules is not None and rules.current.version != self._version:
            # Looks go on for the slots the reload left as they were (before the version:
            # a reader in another thread then never takes a changed slot's looks for ours)
            self._looks = _kept(self._looks, self._slots, rules.current.slots)
            self._slots = rules.current.slots
            self._version = rules.current.version   # reloaded: selectors may have changed
            self._paths.clear()
            self._queries.clear()
            self._trimmed.clear()
        return self._paths

    def looks(self) -> dict[str, dict[str, object]]:
        """Per slot of the rules served, its Looks (as JSON). Read from other threads (a
        worker's state is published after a reload): it changes nothing, and copies the
        tallies before it reads them."""
        looks = self._looks
        if self.rules is not None and self.rules.current.version != self._version:
            # reloaded, no page seen since
            looks = _kept(looks, self._slots, self.rules.current.slots)
        return {slot: tally.as_json() for slot, tally in list(looks.items())}

    def page_of(self, path: str, query: Mapping[str, str]) -> str:
        """What the page of `path` with `query` is learned by: page_key, or the path's
        OTHER_QUERIES page once `max_queries` other queries of it are learned apart."""
        key = page_key(path, query)
        if key == path or key in self._current():
            return key
        queries, hashed = self._queries.get(path), hash(key)
        if queries is None:
            self._queries[path] = {hashed}
        elif hashed not in queries:
            if len(queries) >= self.max_queries:
                return path + OTHER_QUERIES
            queries.add(hashed)
        return key

    def lacks_all(self, path: str, decision: Decision) -> bool:
        """Whether the page of `path` is known to lack every slot this decision changes
        (a look only: counts no view, checks no validators)."""
        entry = self._current().get(path)
        if entry is None or not entry.absent:
            return False
        return all(name in entry.absent for name, choice in decision.slots.items()
                   if choice.content is not None)

    def _fresh(self, path: str) -> PageSlots | None:
        """What was learned of the page of `path`, unless learned too long ago to go by."""
        entry = self._current().get(path)
        if entry is None or self.clock() - entry.learned_at > self.relearn_seconds:
            return None
        return entry

    def known_gone(self, path: str, decision: Decision) -> frozenset[str] | None:
        """The decision's slots the page of `path` is known to lack or to hide (a look
        only: counts no view, checks no validators; injections into <head> and <body> are
        never absent); None when that is not known for every one of them."""
        entry = self._fresh(path)
        if entry is None or any(slot not in entry.found and slot not in INJECTIONS
                                for slot in decision.slots):
            return None
        absent = frozenset(slot for slot in decision.slots
                           if slot in entry.absent and slot not in INJECTIONS)
        return absent | hidden(decision.slots, entry.inside) if entry.inside else absent

    def absent(self, path: str, head: ResponseHead,
               slots: Mapping[str, SlotChoice] = _NO_CHOICES) -> frozenset[str] | None:
        """The slots this response's page is known to lack or to hide (see hidden),
        counted as a view of the page; None when the page is to be looked at (again), for
        one of `slots` (the decision's choices) never looked for on it (an earlier view
        that looked for others says nothing of it), or for a slot whose variant takes away
        what it held and another slot no view looked for beside it."""
        if path.endswith(OTHER_QUERIES):
            return _NOTHING   # (page_of) taken to have every slot
        paths = self._current()
        entry = paths.get(path)
        if entry is None:
            return None
        found = entry.found
        if any(slot not in found and slot not in INJECTIONS for slot in slots):
            return None
        absent = entry.absent
        if len(slots) > 1:
            for outer, choice in slots.items():
                content = choice.content
                if content is not None and content.action in _EMPTYING \
                        and outer not in absent and any(
                            (outer, inner) not in entry.nested for inner in slots
                            if inner != outer and inner not in absent
                            and inner not in INJECTIONS):
                    return None
        coding, seen = validators(head)
        known = entry.validators.get(coding)
        if known is None:
            entry.validators[coding] = seen   # first seen in this coding
        elif known != seen:
            del paths[path]                   # the page changed
            return None
        entry.views += 1
        if (entry.views > self.relearn_views
                or self.clock() - entry.learned_at > self.relearn_seconds):
            del paths[path]                   # time to look again
            return None
        if entry.inside and len(slots) > 1:
            return absent | hidden(slots, entry.inside)
        return absent

    def learned(self, path: str, head: ResponseHead, found: Mapping[str, bool],
                nested: Mapping[Nest, bool] | None = None) -> None:
        """What a whole page was seen to have: for each slot the rewriter looked for,
        whether its element was there, and for each pair it probed, whether one's element
        was inside the other's."""
        if not found or not self.learn or path.endswith(OTHER_QUERIES):
            return
        paths = self._current()
        self._looked(path, found)
        coding, seen = validators(head)
        entry = paths.get(path)
        if entry is None or entry.validators.get(coding, seen) != seen:
            entry = paths[path] = PageSlots(self.clock())
        elif entry.validators.get(coding) == seen and found.items() <= entry.found.items() \
                and (not nested or nested.items() <= entry.nested.items()):
            return   # nothing new: the page as it was learned
        entry.validators[coding] = seen
        entry.found.update(found)
        entry.absent = frozenset(name for name, there in entry.found.items() if not there)
        if nested:
            entry.nested.update(nested)
            entry.inside = frozenset(pair for pair, there in entry.nested.items() if there)

    def _looked(self, path: str, found: Mapping[str, bool]) -> None:
        for slot, there in found.items():
            if slot in INJECTIONS:
                continue
            looks = self._looks.get(slot)
            if looks is None:
                looks = self._looks[slot] = Looks()
            looks.looks += 1
            if there:
                looks.found += 1
            if len(looks.pages) < _MOST_PAGES:
                looks.pages.add(path)
            shown = path.partition("?")[0]
            if not there and len(looks.lacking) < _SAMPLE and shown not in looks.lacking:
                looks.lacking.append(shown)

    def trim(self, decision: Decision, absent: frozenset[str]) -> Decision:
        """The decision without its choices for the slots in `absent` (injections into
        <head> and <body> always stay)."""
        if not absent or not any(name in absent for name in decision.slots):
            return decision
        key = (id(decision), absent)
        known = self._trimmed.get(key)
        if known is not None and known[0] is decision:
            return known[1]
        kept = {name: choice for name, choice in decision.slots.items()
                if name not in absent or name in INJECTIONS}
        trimmed = Decision(slots=MappingProxyType(kept), redirect=decision.redirect,
                           redirect_rule=decision.redirect_rule, headers=decision.headers,
                           cookies=decision.cookies, rules=decision.rules)
        if decision.static_choices is not None:
            self._trimmed[key] = (decision, trimmed)
        return trimmed


def _kept(looks: Mapping[str, Looks], was: Mapping[str, object],
          slots: Mapping[str, object]) -> dict[str, Looks]:
    """The `looks` of the slots `slots` defines as they were looked for (`was`)."""
    return {name: tally for name, tally in list(looks.items())
            if name in slots and slots[name] == was.get(name)}


def slots_not_found(all_looks: Iterable[Mapping[str, Mapping[str, object]]]) -> list[str]:
    """What to tell of the slots found on none of the pages looked at by any of
    `all_looks` (each worker's `looks`, of the same rules), once looked for _LEAST_LOOKS
    times: what their rules and experiments chose for them was shown to no one."""
    looks: dict[str, int] = {}
    pages: dict[str, int] = {}
    found: dict[str, int] = {}
    lacking: dict[str, list[str]] = {}
    for worker in all_looks:
        for slot, seen in worker.items():
            looks[slot] = looks.get(slot, 0) + _whole(seen.get("looks"))
            # (the most any one worker looked at: workers see the same pages, so at least
            # that many pages lacked it, and no page is counted twice)
            pages[slot] = max(pages.get(slot, 0), _whole(seen.get("pages")))
            found[slot] = found.get(slot, 0) + _whole(seen.get("found"))
            named = lacking.setdefault(slot, [])
            paths = seen.get("lacking")
            for path in paths if isinstance(paths, list) else ():
                if len(named) < _SAMPLE and path not in named:
                    named.append(str(path))
    return [f"slot {slot!r} was on none of the pages it was looked for on ({n} looks at "
            f"{pages[slot]} page{'' if pages[slot] == 1 else 's'}: "
            f"{', '.join(lacking[slot])}): what rules and experiments choose for it is "
            "shown to no one; check its selector or marker against the page's HTML"
            for slot, n in sorted(looks.items()) if n >= _LEAST_LOOKS and not found[slot]]


def _whole(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
