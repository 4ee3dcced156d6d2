from __future__ import annotations

from edge_personalizer.learn.bandit import BanditSpec, experiment_weights
from edge_personalizer.learn.counters import OTHER_CELLS, CountKey, Tally
from edge_personalizer.learn.folding import FOLD_LIMIT, rows_to_fold

from .test_bandit import rows

SPEC = BanditSpec("hero-test", (("control", 1), ("a", 1), ("b", 1)), goal="purchase",
                  max_cells=30)
PAST, TODAY = "2026-12-01", "2026-12-02"


def counted(cells: int, *, day: str = PAST, first: int = 0) -> dict[CountKey, Tally]:
    """`cells` cells of made-up values; the nth with n + 1 visitors on control."""
    out: dict[CountKey, Tally] = {}
    for n in range(first, first + cells):
        out |= rows(f"made-up-{n:05d}", {"control": (n + 1, 0)}, day=day)
    return out


def test_past_days_rows_of_cells_beyond_those_kept_apart_are_folded_least_exposed_first(
        ) -> None:
    totals = counted(70) | rows(OTHER_CELLS, {"control": (5, 1)})
    own = experiment_weights(SPEC, totals, version=1, now=0.0).cells
    folded = rows_to_fold(SPEC, totals, own, TODAY)
    # 2 x max_cells = 60 kept apart (at least the 50 the results show), the folded row
    # never folded into itself
    assert {key.cell for key in folded} == {f"made-up-{n:05d}" for n in range(10)}
    assert [key.cell for key in folded][:2] == ["made-up-00000"] * 2   # exposure, purchase
    assert rows_to_fold(SPEC, totals, own, TODAY, limit=3) == folded[:3]
    assert FOLD_LIMIT >= 10_000


def test_today_s_rows_and_the_cells_with_weights_of_their_own_stay() -> None:
    today = counted(70, day=TODAY)
    assert rows_to_fold(SPEC, today, (), TODAY) == []
    # a cell with its own weights (ranked by the visitors since its goal joined) stays
    totals = counted(70) | rows("made-up-00003", {"a": (1, 0)}, day=TODAY)
    folded = {key for key in rows_to_fold(SPEC, totals, {"made-up-00001"}, TODAY)}
    assert {key.cell for key in folded} == {f"made-up-{n:05d}" for n in range(10)} - {
        "made-up-00001"}
    assert all(key.day == PAST for key in folded)   # made-up-00003's today row stays


def test_few_cells_fold_nothing() -> None:
    assert rows_to_fold(SPEC, counted(50), (), TODAY) == []


def test_a_new_cell_with_many_visitors_of_late_is_kept_apart_over_old_ones() -> None:
    # Ranked by all days' visitors, a campaign's new source weighed the one day of it not
    # folded yet (200 visitors) against 60 old cells' 300 each of a month ago, and was
    # folded day after day however many visitors it brought.
    totals: dict[CountKey, Tally] = {}
    for n in range(60):
        totals |= rows(f"old-{n:02d}", {"control": (300, 9)}, day="2026-10-01")
    totals |= rows("new-campaign", {"control": (200, 9)}, day="2026-10-31")
    own = experiment_weights(SPEC, totals, version=1, now=0.0).cells
    folded = {key.cell for key in rows_to_fold(SPEC, totals, own, "2026-11-01")}
    assert "new-campaign" not in folded and len(folded) == 1
