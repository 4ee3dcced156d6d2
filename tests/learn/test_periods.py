"""Counts compared within periods: each variant's rate and value per period, weighted by
the period's share of exposures, and the variance of that weighted estimate."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest

from edge_personalizer.learn.counters import UNKNOWN_PERIOD, CountKey, Tally, variant_totals
from edge_personalizer.learn.periods import WeightedTally, period_weighted_totals
from edge_personalizer.learn.results import experiment_results
from edge_personalizer.learn.stats import counts_interval, goal_result
from edge_personalizer.rules.conditions import AllOf
from edge_personalizer.rules.model import Experiment

from ..factories import counted as counted_rows

DAY = "2026-12-02"


def rows(cell: str, counts: dict[str, tuple[int, int]], *, day: str = DAY,
         period: int = 0) -> dict[CountKey, Tally]:
    """Store rows of hero-test for one cell: variant -> (exposed, converted)."""
    return counted_rows("hero-test", counts, cell=cell, day=day, period=period)


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


def test_a_period_where_an_arm_had_few_visitors_is_as_uncertain_as_they_are_few() -> None:
    # Both convert at 5%. Then the bandit leaves b 50 visitors of 1,000, none of whom
    # converts (2.5 expected): that period is half of b's weighted rate, so 50 visitors
    # decide half of it. Judged as if b's 550 exposures were all alike, b read 2.5%
    # against 5% at p = 0.007; from what each period's visitors can say, it is no finding.
    counted = {**rows("all", {"control": (500, 25), "b": (500, 25)}, period=1),
               **rows("all", {"control": (950, 48), "b": (50, 0)}, period=2)}
    weighted = period_weighted_totals(counted, "hero-test", "purchase")
    assert weighted["b"].conversions / weighted["b"].exposures == pytest.approx(0.025)
    judged = goal_result(weighted, {"control": 1, "b": 1}, control="control").as_json()
    b = judged["variants"]["b"]
    assert b["p_value"] > 0.1 and 0.02 < b["chance_to_beat_control"] < 0.2
    low, high = b["rate_low"], b["rate_high"]
    assert low < 0.011 and high > 0.055   # ~180 visitors' worth (550: 1.5% to 4.1%)


def test_variants_that_convert_alike_are_seldom_found_apart_when_weights_move() -> None:
    # A/A under a bandit's schedule: two periods of 50/50, then two where b gets 10%.
    # A test at 95% finds a difference in about 5% of such experiments; judged with the
    # variance of pooled exposures, this schedule found one in ~12%.
    rng = np.random.default_rng(7)
    found = 0
    runs = 600
    for _ in range(runs):
        counted: dict[CountKey, Tally] = {}
        for period, (control, b) in enumerate([(300, 300), (300, 300), (540, 60), (540, 60)]):
            counts = {"control": (control, int(rng.binomial(control, 0.05))),
                      "b": (b, int(rng.binomial(b, 0.05)))}
            counted |= rows("all", counts, period=period)
        weighted = period_weighted_totals(counted, "hero-test", "purchase")
        judged = goal_result(weighted, {"control": 1, "b": 1}, control="control").as_json()
        p_value = judged["variants"]["b"]["p_value"]
        found += p_value is not None and p_value < 0.05
    assert found / runs < 0.08, found / runs


def test_variants_that_convert_alike_are_seldom_found_apart_when_a_bandit_starves_the_control(
        ) -> None:
    # A/A as a bandit runs it once it favours b: the control keeps 50%, 20%, 6%, then 3% of
    # the visitors. Each period weighted by its share of all visitors, the control's few
    # visitors of the late periods decided half its estimate: ~8.5% of such experiments
    # found the two apart at 95%. Weighted by the two's visitors in each period (as the
    # Cochran-Mantel-Haenszel test weighs strata), about the 5% a test at 95% should.
    bandit = Experiment(
        name="hero-test", slots=("hero",), audience=AllOf(()), holdout=0.0,
        weights=(("control", 1.0), ("b", 1.0)), variants=MappingProxyType({}), source="r:1",
        goals=("purchase",), allocation="bandit")
    rng = np.random.default_rng(5)
    found = 0
    runs = 600
    for _ in range(runs):
        counted: dict[CountKey, Tally] = {}
        for period, (control, b) in enumerate([(500, 500), (200, 800), (60, 940), (30, 970)]):
            counts = {"control": (control, int(rng.binomial(control, 0.05))),
                      "b": (b, int(rng.binomial(b, 0.05)))}
            counted |= rows("all", counts, period=period + 1)
        judged = experiment_results(bandit, counted)["goals"]["purchase"]
        p_value = judged["variants"]["b"]["p_value"]
        found += p_value is not None and p_value < 0.05
    assert found / runs < 0.07, found / runs
    # what a pair is compared on: the periods both were in, each weighted n1 n2 / (n1 + n2)
    pair = period_weighted_totals(counted, "hero-test", "purchase", pair=("control", "b"))
    weights = [500 * 500 / 1000, 200 * 800 / 1000, 60 * 940 / 1000, 30 * 970 / 1000]
    assert pair["control"].conversions / pair["control"].exposures == pytest.approx(
        sum(w * counted[key].conversions / counted[key._replace(goal="")].exposures
            for w, key in zip(weights, sorted(k for k in counted if k.variant == "control"
                                              and k.goal == "purchase"), strict=True))
        / sum(weights))


def test_a_value_goal_s_weighted_mean_is_as_uncertain_as_its_periods() -> None:
    # The same schedule with a value: b's few visitors of the second period carry half its
    # mean value, and its variance with it.
    counted = {**counted_rows("hero-test", {"control": (500, 25), "b": (500, 25)},
                              value=40.0, period=1),
               **counted_rows("hero-test", {"control": (950, 48), "b": (50, 0)},
                              value=40.0, period=2)}
    weighted = period_weighted_totals(counted, "hero-test", "purchase")
    judged = goal_result(weighted, {"control": 1, "b": 1}, control="control").as_json()
    assert judged["variants"]["b"]["value_p_value"] > 0.1


def _starved(rng: np.random.Generator) -> dict[str, WeightedTally]:
    """One simulated experiment: b converts at 10%, the control at 2%, each conversion worth
    40; b's late period has 50 of 1,000 visitors."""
    counted: dict[CountKey, Tally] = {}
    for period, (control, b) in enumerate([(500, 500), (950, 50)]):
        counted |= counted_rows("hero-test", {
            "control": (control, int(rng.binomial(control, 0.02))),
            "b": (b, int(rng.binomial(b, 0.10)))}, value=40.0, period=period)
    return period_weighted_totals(counted, "hero-test", "purchase")


def test_a_weighted_rate_s_interval_covers_the_variant_s_own_rate() -> None:
    # b's interval from the periods' pooled rate (what its comparisons are tested under)
    # covered its 10% in ~77% of such experiments; from its own counts, ~95%.
    rng = np.random.default_rng(11)
    covered, runs = 0, 400
    for _ in range(runs):
        low, high = counts_interval(_starved(rng)["b"])
        covered += low <= 0.10 <= high
    assert covered / runs > 0.92, covered / runs


def test_a_weighted_mean_value_s_interval_covers_the_variant_s_own_mean() -> None:
    # b's mean value per visitor is 4 (10% of 40).
    rng = np.random.default_rng(12)
    covered, runs = 0, 300
    for _ in range(runs):
        judged = goal_result(_starved(rng), {"control": 1, "b": 1},
                             control="control").as_json()
        b = judged["variants"]["b"]
        covered += b["mean_value_low"] <= 4.0 <= b["mean_value_high"]
    assert covered / runs > 0.9, covered / runs
