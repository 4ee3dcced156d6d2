"""Counts kept in the worker: a dict increment on the request path, taken by the flusher.

Each worker process owns one `Accumulator`. The request path calls `expose` and `convert`
(a tuple built, a dict looked up, a list item added to: no I/O, no lock, never an
exception for a well-typed call). The flusher moves what was counted into `pending` with
`collect`, writes `pending_batch` (and `pending_converted`) to the store and
`acknowledge`s what was written.

A visitor's conversion (`convert` with `visitor`) is held as one `Converted` entry, not
added to a count: the store counts it only if it has not counted the same experiment,
variant, goal and visitor within the goal's window, so a replayed beacon or a stale cookie sent
again cannot count one visitor twice. Conversions are rare next to page views.

Memory is bounded by the number of distinct keys (experiment, variant, goal, cell, day,
period), not by the number of events: a key already held keeps counting however long the store is
down. A new key past `max_keys` is refused, and its events are counted in `dropped`.
"""

from __future__ import annotations

import calendar
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

# the period of counts made before exposures kept theirs (old cookies, old store rows)
from ..classify.profile import UNKNOWN_PERIOD as UNKNOWN_PERIOD

EXPOSURE = ""              # the goal of the rows that count exposed visitors
INTERNAL_PREFIX = "ep:"    # counts kept under such names are neither rules nor experiments
# Page views of visitors counted in an experiment whose slot a rule filled instead: counted
# under this name, the experiment as the variant, the rule as the cell (learn/results.py)
TAKEN = INTERNAL_PREFIX + "taken"
ALL_VISITORS = "all"       # the cell of an experiment that does not count per segment
# The cell that holds the counts of cells too small to keep apart (learn/folding.py): a
# bandit's shared row learns from them, the results show them as one row
OTHER_CELLS = "(other cells)"
CELLS_JUDGED = 50          # per: [fields] cells the results judge one by one, most exposed first
FIXED_PERIOD = 0           # the period of fixed weights (and of a bandit's starting ones)
DEFAULT_MAX_KEYS = 20_000  # ~2 weeks of a busy rule set's keys (~300 bytes each)
_DAY = 86_400.0


class CountKey(NamedTuple):
    """One row of the store: what the counts of a `Tally` belong to."""

    experiment: str
    variant: str
    goal: str   # EXPOSURE for the visitors exposed, else the goal converted on
    cell: str   # the segment cell the visitor was counted in (ALL_VISITORS by default)
    day: str    # the UTC day of the event, "2026-12-02"
    # The version of the bandit weights the visitor was assigned under, for an exposure
    # and for the conversions attributed to it alike (so a conversion counts in its
    # exposure's period, whatever day it happens). FIXED_PERIOD for fixed weights, rules
    # and the starting weights; UNKNOWN_PERIOD for counts from before periods were kept.
    period: int = FIXED_PERIOD


class Tally(NamedTuple):
    """Counts of one key: visitors exposed, visitors converted, and the value they brought."""

    exposures: int = 0
    conversions: int = 0
    value_sum: float = 0.0
    value_sq_sum: float = 0.0

    def plus(self, other: Tally) -> Tally:
        return Tally(self.exposures + other.exposures, self.conversions + other.conversions,
                     self.value_sum + other.value_sum, self.value_sq_sum + other.value_sq_sum)


Batch = Mapping[CountKey, Tally]


class Converted(NamedTuple):
    """One visitor's conversion on `key` (its goal, variant, cell, day and period), bringing
    `value`: the store counts it once per experiment, variant, goal and `visitor` for
    `window` seconds (the goal's attribution window)."""

    key: CountKey
    visitor: str
    value: float = 0.0
    window: float = 0.0


def utc_day(timestamp: float) -> str:
    """The UTC day of a POSIX timestamp, as keys carry it."""
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def day_start(day: str) -> int:
    """The POSIX time a UTC day, as keys carry it ("2026-12-04"), starts."""
    return calendar.timegm(time.strptime(day, "%Y-%m-%d"))


def next_day_start(timestamp: float) -> int:
    """The POSIX time the UTC day after `timestamp`'s starts."""
    return int(timestamp // _DAY + 1) * int(_DAY)


class Accumulator:
    """One worker's counts since the last successful flush (not thread-safe: one event loop)."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.max_keys = max_keys
        self.dropped = 0          # events refused because max_keys were held
        self.invalid_values = 0   # conversion values that were NaN or infinite (value ignored)
        self._clock = clock
        # The request path keys by plain tuples (cheaper to build than a CountKey, and
        # equal to one with the same fields); collect() turns them into CountKeys.
        self._current: dict[tuple[str, str, str, str, str, int], list[float]] = {}
        self._pending: dict[CountKey, Tally] = {}
        self._converted: list[Converted] = []          # since the last collect()
        self._pending_converted: list[Converted] = []  # the flusher's, oldest first
        self._day = ""
        self._day_start = self._day_end = 0.0

    def today(self) -> str:
        """The current UTC day, worked out once a day."""
        now = self._clock()
        if not self._day_start <= now < self._day_end:
            self._day_start = now - now % _DAY
            self._day_end = self._day_start + _DAY
            self._day = utc_day(now)
        return self._day

    def expose(self, experiment: str, variant: str, cell: str = ALL_VISITORS,
               day: str | None = None, period: int = FIXED_PERIOD) -> None:
        """Count one visitor exposed to `variant` (once per visitor: attribution decides)
        in `period` (the weights version they were assigned under)."""
        if day is None:   # today(), inlined: the call alone was a third of an increment
            now = self._clock()
            day = self._day if self._day_start <= now < self._day_end else self.today()
        key = (experiment, variant, EXPOSURE, cell, day, period)
        counts = self._current.get(key)
        if counts is None:
            counts = self._open(key)
            if counts is None:
                return
        counts[0] += 1

    def convert(self, experiment: str, variant: str, goal: str, cell: str = ALL_VISITORS,
                value: float = 0.0, day: str | None = None,
                period: int = FIXED_PERIOD, visitor: str | None = None,
                window: float = 0.0) -> None:
        """Count one visitor converted on `goal`, bringing `value` (0 when the goal has
        none), in `period`: the period of the exposure the conversion is attributed to.
        With `visitor`, the store counts it once per experiment, variant, goal and visitor within
        `window` seconds (see `Converted`)."""
        if day is None:
            now = self._clock()
            day = self._day if self._day_start <= now < self._day_end else self.today()
        if visitor is not None:
            self._convert_once(CountKey(experiment, variant, goal, cell, day, period),
                               visitor, value, window)
            return
        key = (experiment, variant, goal, cell, day, period)
        counts = self._current.get(key)
        if counts is None:
            counts = self._open(key)
            if counts is None:
                return
        counts[1] += 1
        if value:
            if not math.isfinite(value):
                self.invalid_values += 1
                return
            counts[2] += value
            counts[3] += value * value

    def _convert_once(self, key: CountKey, visitor: str, value: float, window: float) -> None:
        if self.held_keys >= self.max_keys:
            self.dropped += 1
            return
        if value and not math.isfinite(value):
            self.invalid_values += 1
            value = 0.0
        self._converted.append(Converted(key, visitor, value, window))

    def _open(self, key: tuple[str, str, str, str, str, int]) -> list[float] | None:
        if self.held_keys >= self.max_keys and key not in self._pending:
            self.dropped += 1
            return None
        counts = self._current[key] = [0, 0, 0.0, 0.0]
        return counts

    @property
    def held_keys(self) -> int:
        """Keys held in memory (counted since the last flush, or waiting for the store),
        each visitor's conversion one."""
        return (len(self._current) + len(self._pending) + len(self._converted)
                + len(self._pending_converted))

    def collect(self) -> None:
        """Move what was counted since the last call into the pending counts (the flusher's)."""
        current, self._current = self._current, {}
        pending = self._pending
        for fields, (exposures, conversions, value_sum, value_sq_sum) in current.items():
            key = CountKey._make(fields)
            tally = Tally(int(exposures), int(conversions), value_sum, value_sq_sum)
            held = pending.get(key)
            pending[key] = tally if held is None else held.plus(tally)
        self._pending_converted += self._converted
        self._converted = []

    def pending_batch(self, limit: int) -> dict[CountKey, Tally]:
        """Up to `limit` of the pending counts, for one write to the store."""
        return dict(itertools.islice(self._pending.items(), limit))

    def pending_converted(self, limit: int) -> list[Converted]:
        """Up to `limit` of the visitors' conversions waiting for the store, oldest first."""
        return self._pending_converted[:limit]

    def acknowledge(self, batch: Batch, converted: Sequence[Converted] = ()) -> None:
        """Forget the counts of `batch` and the conversions `converted` (the oldest pending
        ones, as `pending_converted` gave them): the store has taken them."""
        del self._pending_converted[:len(converted)]
        pending = self._pending
        for key, written in batch.items():
            held = pending.pop(key, None)
            if held is not None and held is not written:   # collected into since taken
                pending[key] = Tally(held.exposures - written.exposures,
                                     held.conversions - written.conversions,
                                     held.value_sum - written.value_sum,
                                     held.value_sq_sum - written.value_sq_sum)


def most_exposed(exposed: Mapping[str, int], most: int) -> list[str]:
    """The `most` cells with the most exposed visitors, most first (a tie goes to the first
    name, so every worker and instance picks the same): the cells the results judge one by
    one, and those a bandit keeps weights of their own for."""
    return sorted(exposed, key=lambda cell: (-exposed[cell], cell))[:most]


def on_goal(key: CountKey, tally: Tally, goal: str) -> Tally | None:
    """What a store row counts toward one goal's results: its exposures (an exposure row),
    its conversions on `goal`, or nothing (another goal's)."""
    if key.goal == EXPOSURE:
        return Tally(exposures=tally.exposures)
    if key.goal == goal:
        return Tally(0, tally.conversions, tally.value_sum, tally.value_sq_sum)
    return None


def variant_totals(rows: Mapping[CountKey, Tally], experiment: str, goal: str, *,
                   cell: str | None = None) -> dict[str, Tally]:
    """Per variant of `experiment`: its exposures and its conversions on `goal`, summed over
    days and periods (and cells, unless `cell` names one). Variants nobody saw are left out."""
    totals: dict[str, Tally] = {}
    for key, tally in rows.items():
        if key.experiment != experiment or (cell is not None and key.cell != cell):
            continue
        part = on_goal(key, tally, goal)
        if part is None:
            continue
        held = totals.get(key.variant)
        totals[key.variant] = part if held is None else held.plus(part)
    return totals
