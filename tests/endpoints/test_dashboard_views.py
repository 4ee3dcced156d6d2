from __future__ import annotations

from edge_personalizer.endpoints.dashboard_views import cumulative_rates
from edge_personalizer.learn.counters import CountKey, Tally


def test_cumulative_rates_add_up_day_by_day() -> None:
    totals = {CountKey("e", "a", "", "all", "2026-11-02"): Tally(10),
              CountKey("e", "a", "g", "all", "2026-11-02"): Tally(0, 2),
              CountKey("e", "a", "", "all", "2026-11-01"): Tally(30),
              CountKey("e", "a", "g", "all", "2026-11-01"): Tally(0, 3),
              CountKey("e", "a", "other", "all", "2026-11-01"): Tally(0, 9),
              CountKey("e", "b", "", "seg", "2026-11-02"): Tally(5),
              CountKey("f", "a", "", "all", "2026-11-03"): Tally(99)}
    days, exposed, converted = cumulative_rates(totals, "e", "g", ["a", "b"])
    assert days == ["2026-11-01", "2026-11-02"]
    assert exposed == {"a": [30, 40], "b": [0, 5]}
    assert converted == {"a": [3, 5], "b": [0, 0]}
