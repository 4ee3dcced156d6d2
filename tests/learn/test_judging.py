"""One goal's judgement: the rows a goal that joined an experiment under way judges.

How variants are compared, cut and weighted is tested through `results` (test_results.py,
test_periods.py), which every caller goes through."""

from __future__ import annotations

from edge_personalizer.learn.counters import EXPOSURE, CountKey, Tally
from edge_personalizer.learn.judging import from_day


def test_a_goal_that_joined_late_judges_the_rows_from_its_day_on() -> None:
    rows = {CountKey("hero-test", "a", goal, "all", day): Tally(1, 1)
            for goal in (EXPOSURE, "purchase", "signup")
            for day in ("2026-12-02", "2026-12-03", "2026-12-10")}
    assert from_day(rows, None) is rows   # a goal it had from the start: every row
    kept = from_day(rows, "2026-12-03")
    assert sorted({key.day for key in kept}) == ["2026-12-03", "2026-12-10"]
    assert len(kept) == 6   # every goal's rows of those days, exposures included
    assert from_day(rows, "2026-12-11") == {}
