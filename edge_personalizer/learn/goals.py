"""Goals reached by one request: by its own data (a path, a method), by the status the
origin answered with, or by a goal header the origin sends (`X-EP-Goal: purchase;
value=49.90`, never passed on to the visitor)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ..classify.visitor import Visitor

GOAL_HEADER: Final = b"x-ep-goal"
MAX_VALUE: Final = 1e9   # larger values are taken for mistakes (or attacks), not revenue
_PLAIN_AMOUNT: Final = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?")
RawHeaders = Sequence[tuple[bytes, bytes]]


class GoalSpec(Protocol):
    """A goal as the rules declare it (rules.model.Goal)."""

    @property
    def name(self) -> str: ...
    @property
    def window_seconds(self) -> float: ...
    @property
    def statuses(self) -> frozenset[int]: ...        # empty: any but an error (< 400)
    @property
    def value_query(self) -> str | None: ...
    @property
    def value_header(self) -> str | None: ...

    @property
    def beacon(self) -> bool: ...                    # the page's beacon may reach it

    def reached_by(self, visitor: Visitor) -> bool:
        """Whether the request's own data reaches the goal (False for header-only goals)."""


@dataclass(frozen=True)
class Conversion:
    """A goal reached on this request, with the value it brought (0 when none)."""

    goal: str
    value: float
    window_seconds: float


def parse_value(text: str | None) -> float | None:
    """A conversion value from text: a plain amount, digits with at most one `.` and
    decimals (`49.90`, `1299`), up to MAX_VALUE. None for anything else: a sign, a
    separator (`12,50` and `1.234,50` say different amounts in different countries),
    an exponent (`1e3`), `1_000`, `nan`, a currency."""
    if not text:
        return None
    text = text.strip()
    if _PLAIN_AMOUNT.fullmatch(text) is None:
        return None
    value = float(text)
    return value if value <= MAX_VALUE else None


def parse_goal_header(value: bytes) -> tuple[str, float | None] | None:
    """`purchase; value=49.90` -> ("purchase", 49.9); None when it is not of that form."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    name, _, params = text.partition(";")
    name = name.strip()
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        return None
    amount = None
    for param in params.split(";"):
        key, sep, raw = param.partition("=")
        if sep and key.strip().lower() == "value":
            amount = parse_value(raw.strip().strip('"'))
            if amount is None:
                return None
    return name, amount


# Answers that say a goal's page is broken (gone, or failing), not that the visitor was
# refused (401, 403, 422, 429: a form's own answers)
_BROKEN: Final = frozenset({404, 410})
REACHED: Final = "reached"   # (in `seen`: the requests that reached the goal)


class GoalReader:
    """Finds the goals one response reaches, and takes the goal headers out of it; and
    tallies, per goal of the rules served, the requests of the visitors results count
    (a stored profile: no crawler, nor Do Not Track) that reached it and those that met it
    but were answered with a broken page's status it does not count, or a redirect its
    `status:` leaves out (`seen`)."""

    def __init__(self, on_invalid: Callable[[str], None] | None = None) -> None:
        self.on_invalid = on_invalid or (lambda reason: None)
        self._seen: dict[str, dict[str, int]] = {}   # goal -> status (or REACHED) -> requests
        self._of: Mapping[str, GoalSpec] = {}   # the goals they were tallied for

    def reached(self, goals: Mapping[str, GoalSpec], visitor: Visitor, status: int,
                headers: RawHeaders, within_reach: Iterable[GoalSpec] | None = None
                ) -> tuple[list[Conversion], list[tuple[bytes, bytes]]]:
        """The conversions of this response, and its headers without goal headers (the
        same list when it has none: the common case, which copies nothing). Of the goals,
        only those `within_reach` (the rule set's index: RuleSet.goals_within_reach) are
        tested against the request; all of them when it is not given."""
        found: dict[str, Conversion] = {}
        kept: list[tuple[bytes, bytes]] | None = None
        for name, _ in headers:
            if name == GOAL_HEADER:
                kept = self._header_goals(goals, headers, found)
                break
        for goal in goals.values() if within_reach is None else within_reach:
            if goal.name in found:
                continue
            if status not in goal.statuses if goal.statuses else status >= 400:
                # (a refused or failed request reaches no goal unless told): tallied when
                # its page is broken, or redirected where its status: names no redirect
                if (status in _BROKEN or status >= 500 or _redirect_left_out(goal, status)) \
                        and visitor.profile.stored and goal.reached_by(visitor):
                    self._tally(goals, goal.name, str(status))
                continue
            if goal.reached_by(visitor):
                amount = self._value(goal, visitor, headers if kept is None else kept)
                found[goal.name] = Conversion(goal.name, amount, goal.window_seconds)
                if visitor.profile.stored:   # (visitors the results count: no crawler,
                    self._tally(goals, goal.name, REACHED)   # nor Do Not Track)
        if kept is None:
            kept = headers if isinstance(headers, list) else list(headers)
        return list(found.values()) if found else [], kept

    def _tally(self, goals: Mapping[str, GoalSpec], goal: str, what: str) -> None:
        if goals is not self._of:   # other rules: the tallies first, then whose they are
            self._seen = self._kept(goals)
            self._of = goals
        tally = self._seen.setdefault(goal, {})
        tally[what] = tally.get(what, 0) + 1

    def _kept(self, goals: Mapping[str, GoalSpec]) -> dict[str, dict[str, int]]:
        """The tallies of the goals `goals` defines as they were tallied for (a reload
        that changes a goal starts its tally again; one that leaves it as it was, not)."""
        was = self._of
        return {goal: tally for goal, tally in list(self._seen.items())
                if goal in goals and goals[goal] == was.get(goal)}

    def seen(self, goals: Mapping[str, GoalSpec]) -> dict[str, dict[str, int]]:
        """Per goal of `goals` (the rules served), the visitors' requests that reached it
        (REACHED) and those answered with a broken page's status it does not count, or a
        redirect its `status:` leaves out, by status (as JSON). Read from other threads: it
        changes nothing, and copies first."""
        seen = self._seen if goals is self._of else self._kept(goals)
        return {goal: dict(list(tally.items())) for goal, tally in list(seen.items())}

    def _header_goals(self, goals: Mapping[str, GoalSpec], headers: RawHeaders,
                      found: dict[str, Conversion]) -> list[tuple[bytes, bytes]]:
        """Notes the goals the origin's goal headers name; returns the other headers."""
        kept: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name != GOAL_HEADER:
                kept.append((name, value))
                continue
            parsed = parse_goal_header(value)
            goal = goals.get(parsed[0]) if parsed is not None else None
            if parsed is None or goal is None:
                self.on_invalid("header")   # a hostile or mistyped value: ignored, counted
                continue
            found[goal.name] = Conversion(goal.name, parsed[1] or 0.0, goal.window_seconds)
        return kept

    def beacon(self, goals: Mapping[str, GoalSpec], name: str,
               value: float | None) -> Conversion | str:
        """The conversion a beacon brings, or why it brings none: a goal the rules do not
        name, or one that does not take beacons (`beacon: true`): a visitor's browser
        cannot claim a goal the site decides (its requests, its X-EP-Goal header), nor
        the value that comes with it."""
        goal = goals.get(name)
        if goal is None or not goal.beacon:
            self.on_invalid("beacon")
            return (f"no goal named {name!r}" if goal is None else
                    f"goal {name!r} takes no beacons (the site reports it: its requests or "
                    "its X-EP-Goal header); a goal the page reports says beacon: true")
        return Conversion(goal.name, value or 0.0, goal.window_seconds)

    def _value(self, goal: GoalSpec, visitor: Visitor, headers: Iterable[tuple[bytes, bytes]]
               ) -> float:
        text = None
        if goal.value_query is not None:
            text = visitor.request.query.get(goal.value_query)
        elif goal.value_header is not None:
            wanted = goal.value_header.lower().encode("latin-1")
            text = next((v.decode("latin-1") for k, v in headers if k == wanted), None)
        if text is None:
            return 0.0
        amount = parse_value(text)
        if amount is None:
            self.on_invalid("value")
            return 0.0
        return amount


def _redirect_left_out(goal: GoalSpec, status: int) -> bool:
    """A redirect (not a 304: a page the browser had already) answering a goal whose
    `status:` names none: a form that redirects once done, under `status: [200]`."""
    return 300 <= status < 400 and status != 304 \
        and not any(300 <= named < 400 for named in goal.statuses)


def goals_not_counted(all_seen: Iterable[Mapping[str, Mapping[str, object]]]) -> list[str]:
    """What to tell of the goals whose requests mostly met a broken page, or a redirect
    their `status:` leaves out (at least 3, and at least as many as reached the goal;
    redirects more than twice as many), summed over `all_seen` (each worker's
    GoalReader.seen, of the same rules)."""
    summed: dict[str, dict[str, int]] = {}
    for seen in all_seen:
        for goal, of_goal in seen.items():
            into = summed.setdefault(goal, {})
            for what, n in of_goal.items():
                if isinstance(n, int) and not isinstance(n, bool):
                    into[what] = into.get(what, 0) + n
    told = []
    for goal, counted in sorted(summed.items()):
        reached = counted.pop(REACHED, 0)
        # redirects about as many as the answers that reach it are a page's own way (a
        # slash added, then the page); many more, the goal's status: misses its answer
        redirected = sum(n for status, n in counted.items() if int(status) < 400)
        tally = {status: n for status, n in counted.items()
                 if int(status) >= 400 or redirected > 2 * reached}
        failed = sum(tally.values())
        if failed < 3 or failed < reached:
            continue
        answered = ", ".join(f"{status} ({n})" for status, n in sorted(tally.items()))
        left_out = sorted(status for status in tally if int(status) < 400)
        advice = ("check its page (moved, or failing?) and its when:" if not left_out else
                  f"its status: leaves out {', '.join(left_out)} (add it if that answer "
                  "reaches the goal: a form that redirects once done answers 303), or "
                  "check its when:")
        told.append(f"goal {goal!r}: {failed} requests that meet it were answered "
                    f"{answered} and not counted ({reached} reached it): {advice}")
    return told
