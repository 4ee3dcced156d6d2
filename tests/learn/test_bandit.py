"""Per-segment bandit weights: burn-in, top-two Thompson sampling, floor, holdout, the table."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from edge_personalizer.learn.bandit import (
    BanditSpec,
    WeightsTable,
    cell_weights,
    experiment_weights,
    top_two_shares,
)
from edge_personalizer.learn.counters import (
    EXPOSURE,
    OTHER_CELLS,
    CountKey,
    Tally,
)

DAY = "2026-12-02"
SPEC = BanditSpec("hero-test", (("control", 34), ("a", 33), ("b", 33)), goal="purchase")


def rows(cell: str, counts: dict[str, tuple[int, int]], *, goal: str = "purchase",
         day: str = DAY, period: int = 0) -> dict[CountKey, Tally]:
    """Store rows for one cell: variant -> (exposed, converted), on `day`, in `period`."""
    out = {}
    for variant, (exposed, converted) in counts.items():
        out[CountKey("hero-test", variant, EXPOSURE, cell, day, period)] = \
            Tally(exposures=exposed)
        out[CountKey("hero-test", variant, goal, cell, day, period)] = \
            Tally(conversions=converted)
    return out


def test_a_cell_keeps_the_starting_weights_until_every_variant_has_its_burn_in() -> None:
    counts = {"control": (199, 10), "a": (5000, 400), "b": (5000, 100)}
    weights, reason = cell_weights(SPEC, {v: Tally(e, c) for v, (e, c) in counts.items()},
                                   version=1, cell="all")
    assert reason == "burn_in"
    assert dict(weights) == pytest.approx({"control": 0.34, "a": 0.33, "b": 0.33})


def test_a_clear_winner_gets_the_leader_share_and_the_others_keep_their_floor() -> None:
    counts = {"control": (5000, 200), "a": (5000, 400), "b": (5000, 100)}
    weights, reason = cell_weights(SPEC, {v: Tally(e, c) for v, (e, c) in counts.items()},
                                   version=1, cell="all")
    shares = dict(weights)
    assert reason == "learned"
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] == pytest.approx(0.01 + 0.97 * 0.9, abs=1e-3)
    assert shares["control"] > shares["b"] >= 0.01


def test_each_cell_learns_its_own_winner() -> None:
    counted = {**rows("mobile", {"control": (3000, 90), "a": (3000, 240), "b": (3000, 60)}),
               **rows("desktop", {"control": (3000, 90), "a": (3000, 60), "b": (3000, 210)}),
               **rows("tablet", {"control": (50, 2), "a": (50, 9), "b": (50, 1)})}
    weights = experiment_weights(SPEC, counted, version=3, now=100.0)
    leaders = {cell: max(c.weights, key=lambda item: item[1])[0]
               for cell, c in weights.cells.items() if c.reason == "learned"}
    assert leaders == {"mobile": "a", "desktop": "b"}
    assert weights.cells["tablet"].reason == "burn_in"
    assert weights.cells["mobile"].exposures == 9000


def test_counts_of_every_day_add_up_and_other_goals_are_not_read() -> None:
    counted = {**rows("all", {"control": (100, 5), "a": (100, 5), "b": (100, 5)}),
               **rows("all", {"control": (100, 5), "a": (100, 30), "b": (100, 5)},
                      day="2026-12-03"),
               **rows("all", {"control": (0, 0), "a": (0, 0), "b": (0, 90)}, goal="signup",
                      day="2026-12-04")}
    cell = experiment_weights(SPEC, counted, version=1, now=0.0).cells["all"]
    assert cell.reason == "learned" and cell.exposures == 600
    assert max(cell.weights, key=lambda item: item[1])[0] == "a"


def test_a_goal_that_joined_under_way_is_learned_from_the_visitors_exposed_since() -> None:
    # signup joined on 12-03: the 12-02 visitors (who could not reach it) are not counted
    before = rows("all", {"control": (3000, 0), "a": (3000, 0), "b": (3000, 0)},
                  goal="signup")
    since = rows("all", {"control": (150, 6), "a": (150, 30), "b": (150, 6)},
                 goal="signup", day="2026-12-03")
    spec = BanditSpec("hero-test", SPEC.variants, goal="signup", since="2026-12-03")
    cell = experiment_weights(spec, {**before, **since}, version=1, now=0.0).cells["all"]
    assert cell.exposures == 450 and cell.reason == "burn_in"   # 150 each, burn-in 200
    learned = experiment_weights(spec, {**before, **since, **rows(
        "all", {"control": (100, 4), "a": (100, 20), "b": (100, 4)}, goal="signup",
        day="2026-12-04")}, version=2, now=0.0).cells["all"]
    assert learned.exposures == 750 and learned.reason == "learned"
    assert max(learned.weights, key=lambda item: item[1])[0] == "a"


def test_a_value_goal_follows_the_mean_value_per_visitor() -> None:
    spec = BanditSpec("hero-test", (("control", 1), ("a", 1)), goal="purchase",
                      metric="value")
    tallies = {"control": Tally(1000, 50, 50 * 80.0, 50 * 80.0**2),   # fewer buy, more each
               "a": Tally(1000, 80, 80 * 20.0, 80 * 20.0**2)}
    weights, _ = cell_weights(spec, tallies, version=1, cell="all")
    assert dict(weights)["control"] > 0.85


def test_the_same_counts_give_the_same_weights_in_every_worker() -> None:
    counted = rows("all", {"control": (400, 20), "a": (400, 24), "b": (400, 18)})
    first = experiment_weights(SPEC, counted, version=7, now=1.0)
    again = experiment_weights(SPEC, counted, version=7, now=1.0)
    assert first == again
    assert 0.2 < dict(first.cells["all"].weights)["a"] < 0.9   # undecided: shared out


def test_top_two_shares_with_the_whole_share_to_the_leader_is_thompson_sampling() -> None:
    samples = np.array([[0.1, 0.5, 0.9, 0.2], [0.3, 0.4, 0.1, 0.6], [0.2, 0.6, 0.0, 0.1]])
    assert top_two_shares(samples, 1.0).tolist() == pytest.approx([0.25, 0.5, 0.25])
    # Half to the leader: a sure leader leaves the rest to the best of the others.
    sure = np.array([[0.9, 0.9], [0.5, 0.1], [0.1, 0.5]])
    assert top_two_shares(sure, 0.5).tolist() == pytest.approx([0.5, 0.25, 0.25])


def test_new_visitors_are_shared_out_by_the_weights_over_all_their_points() -> None:
    # The holdout is the evaluator's, from a point of its own: whatever its share, the
    # variant points are shared out whole by the weights, so changing it moves no one.
    spec = BanditSpec("hero-test", (("control", 1), ("a", 1), ("b", 2)), goal="purchase",
                      holdout=0.1)
    table = WeightsTable(4, {"hero-test": experiment_weights(spec, {}, version=1, now=0.0)})
    assert table.experiments["hero-test"].holdout == 0.1   # published, for the dashboard
    points = [(n + 0.5) / 10_000 for n in range(10_000)]
    chosen = [table.choose("hero-test", "mobile", point) for point in points]
    assert chosen.count("control") == 2500 and chosen.count("a") == 2500
    assert chosen.count("b") == 5000
    unheld = WeightsTable(4, {"hero-test": experiment_weights(
        BanditSpec("hero-test", spec.variants, goal="purchase"), {}, version=1, now=0.0)})
    assert [unheld.choose("hero-test", "mobile", point) for point in points] == chosen
    assert table.choose("other-test", "mobile", 0.5) is None


def test_a_cell_with_learned_weights_is_chosen_from_them() -> None:
    counted = rows("mobile", {"control": (5000, 100), "a": (5000, 400), "b": (5000, 100)})
    table = WeightsTable(2, {"hero-test": experiment_weights(SPEC, counted, version=1, now=0)})
    points = [(n + 0.5) / 1000 for n in range(1000)]
    mobile = [table.choose("hero-test", "mobile", p) for p in points]
    desktop = [table.choose("hero-test", "desktop", p) for p in points]
    assert mobile.count("a") > 850
    assert desktop.count("a") == 330   # not counted yet: the starting weights


def test_the_table_survives_its_encoding() -> None:
    counted = {**rows("mobile", {"control": (5000, 100), "a": (5000, 400), "b": (5000, 100)}),
               **rows("tablet", {"control": (5, 0), "a": (5, 1), "b": (5, 0)})}
    table = WeightsTable(9, {"hero-test": experiment_weights(SPEC, counted, version=4,
                                                             now=12.5)})
    again = WeightsTable.decode(table.encode(), 9)
    assert again == table
    assert again.choose("hero-test", "mobile", 0.42) == table.choose("hero-test", "mobile", 0.42)
    shown = again.as_json()["hero-test"]
    assert isinstance(shown, dict) and shown["version"] == 4
    assert shown["cells"]["tablet"]["reason"] == "burn_in"


@pytest.mark.parametrize("payload", [b"{}", b'{"experiments": {"x": {"version": 1}}}',
                                     b'{"experiments": []}'])
def test_a_payload_that_is_not_a_table_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a bandit weights table"):
        WeightsTable.decode(payload, 1)


@pytest.mark.parametrize(("changes", "message"), [
    ({"variants": (("control", 1),)}, "two or more"),
    ({"control": "original"}, "control 'original'"),
    ({"floor": 0.5}, "floor 0.5 x 3"),
    ({"holdout": 1.0}, "holdout"),
    ({"burn_in": -1}, "burn_in"),
    ({"max_cells": 0}, "max_cells"),
])
def test_specs_that_cannot_work_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"experiment": "hero-test", "goal": "purchase",
                                 "variants": (("control", 1), ("a", 1), ("b", 1)), **changes}
    with pytest.raises(ValueError, match=message):
        BanditSpec(**fields)  # type: ignore[arg-type]


def test_made_up_cells_share_one_row_and_take_nothing_from_the_real_ones() -> None:
    # A client filled per: referral.source with 5,000 made-up values, one visitor each:
    # the table held a row per value (1.98 MB against the 1 MiB a table holds), and no
    # bandit learned again.
    spec = BanditSpec("hero-test", SPEC.variants, goal="purchase", max_cells=3)
    real = {**rows("google", {"control": (3000, 90), "a": (3000, 240), "b": (3000, 60)}),
            **rows("newsletter", {"control": (900, 20), "a": (900, 20), "b": (900, 70)})}
    flood: dict[CountKey, Tally] = {}
    for n in range(5000):
        flood |= rows(f"made-up-{n:05d}-" + "x" * 26, {"control": (1, 0), "a": (0, 0),
                                                          "b": (0, 0)})
    alone = experiment_weights(spec, real, version=4, now=1.0)
    flooded = experiment_weights(spec, real | flood, version=4, now=1.0)
    assert alone.others is None and alone.shared == 0
    assert set(flooded.cells) == {"google", "newsletter", "made-up-00000-" + "x" * 26}
    assert flooded.cells["google"] == alone.cells["google"]            # the same weights
    assert flooded.cells["newsletter"] == alone.cells["newsletter"]
    assert flooded.shared == 4999 and flooded.others is not None
    assert flooded.others.reason == "burn_in" and flooded.others.exposures == 4999
    table = WeightsTable(7, MappingProxyType({"hero-test": flooded}))
    assert len(table.encode()) < 2000                                   # not 1.98 MB
    again = WeightsTable.decode(table.encode(), 7)
    assert again == table
    # a made-up cell and one never counted share out by the shared row; a real one by its own
    points = [(n + 0.5) / 100 for n in range(100)]
    google = [again.choose("hero-test", "google", p) for p in points]
    assert google.count("a") > 80
    for cell in ("made-up-04321-" + "x" * 26, "never-seen"):
        assert again.weights_of("hero-test", cell) == flooded.others.weights
        assert again.reason_of("hero-test", cell) == "shared"
        shown = [again.choose("hero-test", cell, p) for p in points]
        assert shown.count("control") == 34   # the starting weights, in the shared row
    assert again.reason_of("hero-test", "google") == "learned"
    reported: Any = again.as_json()["hero-test"]
    assert reported["other_cells"]["cells"] == 4999


def test_the_cells_with_the_most_visitors_keep_their_own_row() -> None:
    spec = BanditSpec("hero-test", SPEC.variants, goal="purchase", max_cells=2)
    counted = {**rows("small", {"control": (5, 0), "a": (5, 0), "b": (5, 0)}),
               **rows("big", {"control": (500, 9), "a": (500, 9), "b": (500, 9)}),
               **rows("middle", {"control": (50, 1), "a": (50, 1), "b": (50, 1)})}
    weights = experiment_weights(spec, counted, version=1, now=1.0)
    assert set(weights.cells) == {"big", "middle"}
    assert weights.shared == 1 and weights.others is not None
    assert weights.others.exposures == 15
    # without a shared row, a cell not counted yet gets the starting weights, as before
    everyone = experiment_weights(SPEC, counted, version=1, now=1.0)
    table = WeightsTable(1, MappingProxyType({"hero-test": everyone}))
    assert table.reason_of("hero-test", "unseen") is None
    assert table.weights_of("hero-test", "unseen") == SPEC.starting


def test_a_table_published_before_cells_were_bounded_still_reads() -> None:
    payload = (b'{"experiments":{"hero-test":{"version":2,"updated_at":5.0,"holdout":0.0,'
               b'"starting":[["control",0.5],["a",0.5]],"cells":{"all":{"weights":'
               b'[["control",0.5],["a",0.5]],"reason":"burn_in","exposures":3}}}}}')
    table = WeightsTable.decode(payload, 2)
    held = table.experiments["hero-test"]
    assert held.others is None and held.shared == 0
    assert table.choose("hero-test", "other", 0.7) == "a"


def test_the_folded_cells_row_learns_in_the_shared_row_and_is_never_a_cell_of_its_own(
        ) -> None:
    # The trainer folds made-up cells' rows of past days into OTHER_CELLS (learn/folding.py)
    spec = BanditSpec("hero-test", SPEC.variants, goal="purchase", max_cells=2, burn_in=10)
    real = {**rows("google", {"control": (300, 9), "a": (300, 24), "b": (300, 6)}),
            **rows("newsletter", {"control": (90, 2), "a": (90, 2), "b": (90, 7)})}
    made_up: dict[CountKey, Tally] = {}
    for n in range(400):
        made_up |= rows(f"made-up-{n:03d}", {"control": (1, 0), "a": (1, n % 2), "b": (1, 0)})
    folded = rows(OTHER_CELLS, {"control": (400, 0), "a": (400, 200), "b": (400, 0)})
    before = experiment_weights(spec, real | made_up, version=3, now=1.0)
    after = experiment_weights(spec, real | folded, version=3, now=1.0)
    assert set(after.cells) == {"google", "newsletter"}   # the biggest row, and no cell's
    assert after.cells == before.cells and after.others == before.others
    assert after.others is not None and after.others.exposures == 1200
