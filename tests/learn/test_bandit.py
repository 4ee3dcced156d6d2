"""Per-segment bandit weights: burn-in, top-two Thompson sampling, floor, holdout, the table."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest

from edge_personalizer.learn.bandit import (
    BanditSpec,
    WeightsTable,
    cell_weights,
    experiment_weights,
    period_weighted_totals,
    top_two_shares,
)
from edge_personalizer.learn.counters import (
    EXPOSURE,
    UNKNOWN_PERIOD,
    CountKey,
    Tally,
    variant_totals,
)
from edge_personalizer.learn.results import experiment_results
from edge_personalizer.learn.stats import goal_result
from edge_personalizer.rules.conditions import AllOf
from edge_personalizer.rules.model import Experiment

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
])
def test_specs_that_cannot_work_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"experiment": "hero-test", "goal": "purchase",
                                 "variants": (("control", 1), ("a", 1), ("b", 1)), **changes}
    with pytest.raises(ValueError, match=message):
        BanditSpec(**fields)  # type: ignore[arg-type]


def test_results_of_changing_weights_compare_the_variants_within_each_period() -> None:
    # Version 1: 1% and 2%, mostly control; version 2: 10% and 11%, mostly b. Pooled, b
    # would seem five times better; within each period it is one point better.
    counted = {**rows("all", {"control": (900, 9), "b": (100, 2)}, period=1),
               **rows("all", {"control": (100, 10), "b": (900, 99)}, period=2)}
    pooled = variant_totals(counted, "hero-test", "purchase")
    assert pooled["b"].conversions / pooled["b"].exposures > \
        4 * pooled["control"].conversions / pooled["control"].exposures
    weighted = period_weighted_totals(counted, "hero-test", "purchase")
    assert weighted["control"].exposures == weighted["b"].exposures == 1000
    assert weighted["control"].conversions == pytest.approx(55)
    assert weighted["b"].conversions == pytest.approx(65)


def test_a_weighted_rate_is_each_periods_rate_weighted_not_rounded_to_whole_visitors() -> None:
    # a: 0 of 2 in a cell of 10 exposures, 4 of 7 in a cell of 20: (10 * 0 + 20 * 4/7) / 30
    # = 38.1%. Rounded to whole visitors (3 of 9) the rate read 33.3%, and so did its
    # interval and every comparison built on it.
    counted = {**rows("mobile", {"control": (8, 1), "a": (2, 0)}),
               **rows("desktop", {"control": (13, 3), "a": (7, 4)})}
    weighted = period_weighted_totals(counted, "hero-test", "purchase")
    assert weighted["a"].exposures == 9
    assert weighted["a"].conversions / weighted["a"].exposures == pytest.approx(8 / 21)
    judged = goal_result(weighted, {"control": 50, "a": 50}, control="control").as_json()
    assert judged["variants"]["a"]["rate"] == pytest.approx(8 / 21)


def test_a_conversion_counts_in_its_exposures_period_whatever_day_it_happens() -> None:
    # Each period's visitors convert over two days; the days mix the periods, the
    # periods do not: the same answer as when every conversion fell on its exposure's day.
    later = "2026-12-03"
    spread = {**rows("all", {"control": (900, 5), "b": (100, 1)}, period=1),
              CountKey("hero-test", "control", "purchase", "all", later, 1): Tally(0, 4),
              CountKey("hero-test", "b", "purchase", "all", later, 1): Tally(0, 1),
              **rows("all", {"control": (100, 10), "b": (900, 99)}, period=2, day=later)}
    by_day: dict[CountKey, Tally] = {}
    for key, tally in spread.items():
        day_key = key._replace(period=int(key.day[-2:]))
        by_day[day_key] = by_day.get(day_key, Tally()).plus(tally)
    assert period_weighted_totals(by_day, "hero-test", "purchase")["control"].conversions \
        == pytest.approx(655 / 9)   # within days: day 2 gets day 3's conversions of it
    weighted = period_weighted_totals(spread, "hero-test", "purchase")
    assert weighted["control"].conversions == pytest.approx(55)
    assert weighted["b"].conversions == pytest.approx(65)


def test_counts_from_before_periods_were_kept_are_compared_within_each_day() -> None:
    # A store written before exposures kept their period: its rows are in the unknown
    # period, and were weighted day by day then; an upgrade must not pool them.
    counted = {**rows("all", {"control": (900, 9), "b": (100, 2)}, period=UNKNOWN_PERIOD),
               **rows("all", {"control": (100, 10), "b": (900, 99)}, period=UNKNOWN_PERIOD,
                      day="2026-12-03")}
    weighted = period_weighted_totals(counted, "hero-test", "purchase")
    assert weighted["control"].conversions == pytest.approx(55)
    assert weighted["b"].conversions == pytest.approx(65)


def test_cells_with_weights_of_their_own_are_compared_within_each_cell() -> None:
    # One version, two cells: b leads where visitors convert well, control where they do
    # not; within each cell b is one point better, pooled it would seem five times better.
    counted = {**rows("s1", {"control": (900, 9), "b": (100, 2)}, period=3),
               **rows("s2", {"control": (100, 10), "b": (900, 99)}, period=3)}
    weighted = period_weighted_totals(counted, "hero-test", "purchase")
    assert weighted["control"].conversions == pytest.approx(55)
    assert weighted["b"].conversions == pytest.approx(65)


def test_results_of_a_bandit_experiment_are_weighted_by_period() -> None:
    experiment = Experiment(
        name="hero-test", slots=("hero",), audience=AllOf(()), holdout=0.0,
        weights=(("control", 1.0), ("b", 1.0)), variants=MappingProxyType({}), source="r:1",
        goals=("purchase",), allocation="bandit")
    # Two versions of the weights and a change of base rate between them (Simpson's case):
    # pooled, b's uplift would be +425%; by period it is +18%, and not significant.
    counted = {**rows("all", {"control": (900, 9), "b": (100, 2)}, period=1),
               **rows("all", {"control": (100, 10), "b": (900, 99)}, period=2,
                      day="2026-12-03")}
    judged = experiment_results(experiment, counted)["goals"]["purchase"]
    assert judged["srm_p"] is None and judged["weighted_by"] == "period"
    assert judged["variants"]["b"]["uplift"] == pytest.approx(10 / 55, rel=0.02)
    assert judged["variants"]["b"]["uplift_low"] < 0
    # what pooling says (fixed weights never edited: one period)
    pooled = {key._replace(period=0): tally for key, tally in counted.items()}
    fixed = experiment_results(replace(experiment, allocation="fixed"), pooled)
    assert fixed["goals"]["purchase"]["variants"]["b"]["uplift"] > 4
    # fixed weights edited between the two: judged within each split, as the bandit
    edited = experiment_results(replace(experiment, allocation="fixed"), counted)
    assert edited["goals"]["purchase"]["variants"]["b"]["uplift"] == pytest.approx(
        10 / 55, rel=0.02)
