from __future__ import annotations

import math

import pytest

from edge_personalizer.learn.counters import (
    ALL_VISITORS,
    EXPOSURE,
    FIXED_PERIOD,
    Accumulator,
    Converted,
    CountKey,
    Tally,
    utc_day,
    variant_totals,
)

DAY = "2026-12-02"
NOON = 1_796_212_800.0   # 2026-12-02T12:00:00Z


def taken(counters: Accumulator) -> dict[CountKey, Tally]:
    counters.collect()
    return counters.pending_batch(10_000)


def test_exposures_and_conversions_add_up_per_key() -> None:
    counters = Accumulator(clock=lambda: NOON)
    counters.expose("hero", "bold")
    counters.expose("hero", "bold")
    counters.expose("hero", "control", "mobile")
    counters.convert("hero", "bold", "purchase", value=10.0)
    counters.convert("hero", "bold", "purchase", value=2.5)
    counters.convert("hero", "bold", "signup")
    assert taken(counters) == {
        CountKey("hero", "bold", EXPOSURE, ALL_VISITORS, DAY): Tally(2, 0, 0.0, 0.0),
        CountKey("hero", "control", EXPOSURE, "mobile", DAY): Tally(1, 0, 0.0, 0.0),
        CountKey("hero", "bold", "purchase", ALL_VISITORS, DAY): Tally(0, 2, 12.5, 106.25),
        CountKey("hero", "bold", "signup", ALL_VISITORS, DAY): Tally(0, 1, 0.0, 0.0),
    }


def test_each_period_counts_apart_and_fixed_weights_are_period_zero() -> None:
    counters = Accumulator(clock=lambda: NOON)
    counters.expose("hero", "bold", "s1", period=2)
    counters.expose("hero", "bold", "s1", period=3)
    counters.expose("hero", "bold", "s1", period=3)
    counters.convert("hero", "bold", "purchase", "s1", value=4.0, period=2)
    counters.expose("cta", "a")
    assert taken(counters) == {
        CountKey("hero", "bold", EXPOSURE, "s1", DAY, 2): Tally(1),
        CountKey("hero", "bold", EXPOSURE, "s1", DAY, 3): Tally(2),
        CountKey("hero", "bold", "purchase", "s1", DAY, 2): Tally(0, 1, 4.0, 16.0),
        CountKey("cta", "a", EXPOSURE, ALL_VISITORS, DAY, FIXED_PERIOD): Tally(1),
    }
    assert FIXED_PERIOD == 0 and CountKey("e", "v", "", "all", DAY).period == FIXED_PERIOD


def test_the_day_follows_the_clock_in_utc() -> None:
    now = [NOON]
    counters = Accumulator(clock=lambda: now[0])
    counters.expose("hero", "bold")
    now[0] += 12 * 3600   # midnight UTC
    counters.expose("hero", "bold")
    counters.expose("hero", "bold", day="2026-11-30")   # a replayed event keeps its own day
    assert {key.day for key in taken(counters)} == {DAY, "2026-12-03", "2026-11-30"}
    assert utc_day(NOON) == DAY


def test_a_value_that_is_not_a_number_counts_the_conversion_without_it() -> None:
    counters = Accumulator(clock=lambda: NOON)
    counters.convert("hero", "bold", "purchase", value=math.nan)
    counters.convert("hero", "bold", "purchase", value=math.inf)
    counters.convert("hero", "bold", "purchase", value=3.0)
    assert list(taken(counters).values()) == [Tally(0, 3, 3.0, 9.0)]
    assert counters.invalid_values == 2


def test_collect_moves_counts_to_pending_and_acknowledge_forgets_them() -> None:
    counters = Accumulator(clock=lambda: NOON)
    counters.expose("hero", "bold")
    counters.collect()
    counters.expose("hero", "bold")   # counted while the batch is being written
    batch = counters.pending_batch(100)
    assert list(batch.values()) == [Tally(1)]
    counters.collect()                # ...and collected before the write was acknowledged
    counters.acknowledge(batch)
    assert list(counters.pending_batch(100).values()) == [Tally(1)]
    counters.acknowledge(counters.pending_batch(100))
    assert counters.pending_batch(100) == {} and counters.held_keys == 0


def test_pending_batches_are_at_most_the_limit() -> None:
    counters = Accumulator(clock=lambda: NOON)
    for n in range(25):
        counters.expose("hero", f"v{n}")
    counters.collect()
    sizes = []
    while batch := counters.pending_batch(10):
        sizes.append(len(batch))
        counters.acknowledge(batch)
    assert sizes == [10, 10, 5]


def test_past_the_key_bound_new_keys_are_dropped_and_counted_held_keys_keep_counting() -> None:
    counters = Accumulator(max_keys=3, clock=lambda: NOON)
    for variant in ("a", "b", "c"):
        counters.expose("hero", variant)
    counters.collect()                     # the store is down: the three wait in pending
    counters.expose("hero", "d")           # a fourth key: refused
    counters.convert("hero", "a", "buy")   # a fourth key too
    for _ in range(1000):
        counters.expose("hero", "a")       # a held key: never refused
    assert counters.dropped == 2 and counters.held_keys == 4   # 3 pending + "a" again
    totals = taken(counters)
    assert totals[CountKey("hero", "a", EXPOSURE, ALL_VISITORS, DAY)] == Tally(1001)
    assert len(totals) == 3


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        Accumulator(max_keys=0)


def test_variant_totals_join_exposures_to_one_goal_over_days_and_cells() -> None:
    rows = {
        CountKey("hero", "bold", EXPOSURE, "mobile", "2026-12-01"): Tally(10),
        CountKey("hero", "bold", EXPOSURE, "desktop", "2026-12-02"): Tally(5),
        CountKey("hero", "bold", "buy", "mobile", "2026-12-02"): Tally(0, 2, 20.0, 200.0),
        CountKey("hero", "bold", "signup", "mobile", "2026-12-02"): Tally(0, 7),
        CountKey("hero", "control", EXPOSURE, "mobile", "2026-12-01"): Tally(12),
        CountKey("other", "bold", EXPOSURE, "mobile", "2026-12-01"): Tally(99),
    }
    assert variant_totals(rows, "hero", "buy") == {
        "bold": Tally(15, 2, 20.0, 200.0), "control": Tally(12)}
    assert variant_totals(rows, "hero", "buy", cell="desktop") == {"bold": Tally(5)}


def test_a_visitor_s_conversion_is_held_apart_and_counts_against_the_bound() -> None:
    counters = Accumulator(max_keys=2, clock=lambda: 0.0)
    counters.convert("hero", "bold", "buy", value=5.0, visitor="v1", window=60.0)
    counters.convert("hero", "bold", "buy", value=5.0, visitor="v1", window=60.0)
    counters.convert("hero", "bold", "buy", visitor="v2")   # past max_keys: dropped
    counters.collect()
    key = CountKey("hero", "bold", "buy", "all", "1970-01-01")
    assert counters.pending_batch(10) == {}
    assert counters.pending_converted(10) == [Converted(key, "v1", 5.0, 60.0)] * 2
    assert counters.held_keys == 2 and counters.dropped == 1
    counters.acknowledge({}, counters.pending_converted(1))
    assert counters.pending_converted(10) == [Converted(key, "v1", 5.0, 60.0)]
