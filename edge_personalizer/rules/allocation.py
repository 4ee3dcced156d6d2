"""How an experiment shares out new visitors: its fixed weights, or a bandit's per cell.

A bandit experiment (`allocation: bandit`) keeps one allocation per cell: the values of
the visitor fields named in `per:` (`mobile|search`), or the first segment the visitor is
in (`per: segment`). The weights come from outside the rule set (the learning loop
publishes them); the evaluator asks an `Allocations` for them and falls back to the fixed
weights while there are none.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from ..classify.visitor import Visitor, field_getter
from .conditions import Segment

Allocation = Literal["fixed", "bandit"]
Metric = Literal["conversion", "value"]
ALL_VISITORS: Final = "all"   # the one cell of an experiment without `per:`
NO_SEGMENT: Final = "other"   # the cell of a visitor in none of the segments (`per: segment`)
_MAX_VALUE: Final = 40        # characters of a field value kept in a cell name


@dataclass(frozen=True)
class BanditSettings:
    """`bandit: {burn_in, floor, update_every}`: exposures every variant gets before the
    first change, the percent of new visitors every variant keeps, seconds between updates;
    `metric`: what the bandit raises, the conversion rate or the value per visitor;
    `max_cells`: the cells (those with the most visitors) with weights of their own."""

    burn_in: int = 200
    floor: float = 1.0
    update_every: float = 3600.0
    metric: Metric = "conversion"
    max_cells: int = 100   # cells with weights of their own; the rest share one row
    max_cells_written: bool = False   # set in the rules (a per: clients fill, acknowledged)


@dataclass(frozen=True)
class Cells:
    """Which cell a visitor counts in: the values of `fields` joined by `|`, or the name of
    the first of `segments` they are in (NO_SEGMENT if none); ALL_VISITORS without either."""

    fields: tuple[str, ...] = ()
    segments: tuple[Segment, ...] = ()
    _getters: tuple[Callable[[Visitor], Any], ...] = field(init=False, compare=False,
                                                           repr=False)
    single: bool = field(init=False, compare=False, repr=False)   # everyone in ALL_VISITORS

    def __post_init__(self) -> None:
        object.__setattr__(self, "_getters", tuple(field_getter(f) for f in self.fields))
        object.__setattr__(self, "single", not self.fields and not self.segments)

    def __call__(self, visitor: Visitor) -> str:
        if self.segments:
            return next((s.name for s in self.segments if s(visitor)), NO_SEGMENT)
        if not self._getters:
            return ALL_VISITORS
        return "|".join(_cell_value(getter(visitor)) for getter in self._getters)

    def describe(self) -> str:
        if self.segments:
            return "per segment (" + ", ".join(s.name for s in self.segments) + ")"
        return "per " + ", ".join(self.fields) if self.fields else "one cell for all visitors"


def weights_period(holdout: float, weights: tuple[tuple[str, float], ...]) -> int:
    """The period fixed weights assign visitors in: one number per split (the same shares
    give the same number, whatever the weights add up to), so results compare variants
    within each split once the weights are edited. At least 2**30, apart from a bandit's
    versions (1, 2, ...) and from 0, the period of counts from before splits were told
    apart."""
    total = sum(weight for _, weight in weights) or 1.0
    split = f"{holdout:g}|" + "|".join(f"{name}={weight / total:.6f}"
                                       for name, weight in sorted(weights))
    return (zlib.crc32(split.encode()) & 0x3FFFFFFF) | 0x40000000


def _cell_value(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:_MAX_VALUE].replace("|", "/")


class Allocations(Protocol):
    """Published bandit weights (learn/bandit.py WeightsTable), read on the request path."""

    def choose(self, experiment: str, cell: str, point: float) -> str | None:
        """The variant for a new visitor (not held out) at `point`, their variant point,
        in `cell`; None: no weights yet."""

    def version_of(self, experiment: str) -> int | None:
        """The version of the experiment's weights (None: none published)."""

    def version_for(self, experiment: str, variants: tuple[str, ...]) -> int | None:
        """The version of the experiment's weights where they were published for these
        `variants` (sorted), the ones its rules have now; None: none, or for others."""

    def names_of(self, experiment: str) -> tuple[str, ...] | None:
        """The variants, sorted, the experiment's weights were published for (None: none
        published): another server's rules may have others (a canary, a rolling deploy)."""

    def reason_of(self, experiment: str, cell: str) -> str | None:
        """Why `cell` has its weights: "learned", or "burn_in" (the starting weights, until
        every variant has its burn-in of exposures), or "shared" (the row of the cells
        beyond the experiment's max_cells); None: the cell was not counted yet."""

    def weights_of(self, experiment: str, cell: str) -> tuple[tuple[str, float], ...] | None:
        """The weights the experiment's `cell` shares out by (None: none published)."""
