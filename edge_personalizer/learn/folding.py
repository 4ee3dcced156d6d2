"""Which rows of a bandit experiment the trainer folds: the store's rows of cells too small
to keep apart, each moved into the OTHER_CELLS row of its variant, goal, day and period.

In: an experiment's rows (`Store.totals`), its `BanditSpec`, the cells it has weights of
their own for, and today's UTC day. Out: the rows to fold, at most `limit`
(`rows_to_fold`), which `fold` hands to `Store.fold` a batch at a time.

A bandit learning per a field clients fill as they like (`?utm_source=` anything) gets a
cell for each made-up value, and a row for each cell and day: every update reads and
tallies them all, for ever. Cells beyond its `max_cells` learn together anyway (the
`others` row, bandit.py), from their counts summed, so summing them in the store first
changes nothing the bandit learns; nor any total per variant, goal, day or period.

A row is folded when its day is over (today's rows are the ones being counted into, and a
cell new today may yet rise) and its cell is none of those kept apart: the cells with
weights of their own, and the `KEPT_APART` times `max_cells` cells (at least the
CELLS_JUDGED the results show one by one) with the most visitors of the last RANKED_DAYS
days: room for a cell to rise, a new one too. What an experiment keeps of a past day is
then at most that many cells and one OTHER_CELLS row a variant, goal and period (and the
rows of cells that ranked once, until they fold), whatever clients send. No threshold of
visitors decides: a client can give each value it makes up as many visitors as any
threshold asks. The least exposed cells go first, so a backlog bigger than `limit` goes
over several updates.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import date, timedelta

from ..rules.model import HOLDOUT
from . import bandit
from .bandit import BanditSpec
from .counters import (
    CELLS_JUDGED,
    EXPOSURE,
    OTHER_CELLS,
    CountKey,
    Tally,
    most_exposed,
    utc_day,
)
from .store import Store

logger = logging.getLogger(__name__)

KEPT_APART = 2         # times max_cells: the most exposed cells whose rows are never folded
RANKED_DAYS = 14       # the days (today's among them) whose visitors rank the cells
FOLD_LIMIT = 20_000    # rows one update folds at most
FOLD_BATCH = 250       # rows one store call (one transaction, one script) folds at most


def kept_apart(spec: BanditSpec, exposed: Mapping[str, int]) -> set[str]:
    """The cells of `exposed` (cell -> visitors exposed, all days) whose rows stay their
    own: the most exposed KEPT_APART times max_cells, at least CELLS_JUDGED."""
    ranked = {cell: n for cell, n in exposed.items() if cell != OTHER_CELLS}
    return set(most_exposed(ranked, max(KEPT_APART * spec.max_cells, CELLS_JUDGED)))


def rows_to_fold(spec: BanditSpec, rows: Mapping[CountKey, Tally], own: Collection[str],
                 today: str, limit: int = FOLD_LIMIT) -> list[CountKey]:
    """The rows of `spec`'s experiment to fold into OTHER_CELLS (see the module docstring),
    the least exposed cells' first, at most `limit`; `own`: the cells with weights of
    their own."""
    # Ranked by their visitors of the last RANKED_DAYS: by all days', a cell new this week
    # (a campaign's source) would weigh its one unfolded day against the others' years,
    # and be folded day after day however many visitors it brings.
    since = (date.fromisoformat(today) - timedelta(days=RANKED_DAYS - 1)).isoformat()
    exposed: dict[str, int] = {}
    for key, tally in rows.items():
        if key.experiment == spec.experiment:
            counted = key.goal == EXPOSURE and key.variant != HOLDOUT and key.day >= since
            exposed[key.cell] = exposed.get(key.cell, 0) + (tally.exposures if counted else 0)
    kept = kept_apart(spec, exposed) | set(own) | {OTHER_CELLS}
    folded = [key for key in rows if key.experiment == spec.experiment
              and key.cell not in kept and key.day < today]
    folded.sort(key=lambda key: (exposed[key.cell], key))
    return folded[:limit]


async def fold(store: Store, experiment: str, rows: Sequence[CountKey]) -> None:
    """Folds `rows` of `experiment` into OTHER_CELLS, FOLD_BATCH at a time: each a short
    transaction or script, so other writers wait on none for long."""
    for start in range(0, len(rows), FOLD_BATCH):
        await store.fold(rows[start:start + FOLD_BATCH], into=OTHER_CELLS)
    if rows:
        logger.info("%s: %d rows of %d cells too small to keep apart, of past days, "
                    "folded into %r", experiment, len(rows), len({key.cell for key in rows}),
                    OTHER_CELLS)


def weights_and_folds(spec: BanditSpec, rows: Mapping[CountKey, Tally],
                       held: bandit.ExperimentWeights | None, now: float
                       ) -> tuple[bandit.ExperimentWeights, list[CountKey]]:
    """`spec`'s new weights from `rows` (the version after `held`), and the rows to fold
    once they are worked out: in a thread, numpy's draws (and its import, the first
    time) off the event loop."""
    weights = bandit.experiment_weights(spec, rows, now=now,
                                        version=1 if held is None else held.version + 1)
    return weights, rows_to_fold(spec, rows, weights.cells, utc_day(now))
