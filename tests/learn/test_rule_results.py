"""What each rule reached, as results list it."""

from __future__ import annotations

from edge_personalizer.learn.counters import CountKey, Tally
from edge_personalizer.learn.results import results
from edge_personalizer.learn.rule_results import rule_results
from edge_personalizer.rules.model import RuleSet


def test_a_removed_rule_stays_listed_with_what_it_reached() -> None:
    day = "2026-12-02"
    totals = {CountKey("old-rule", "old-rule", "", "all", day): Tally(exposures=50),
              CountKey("old-rule", "old-rule", "signup", "all", day): Tally(0, 5)}
    report = results(RuleSet.empty("v1"), totals)
    assert report["experiments"] == []
    (rule,) = report["rules"]
    assert (rule["name"], rule["removed"]) == ("old-rule", True)
    assert rule["variants"]["old-rule"]["goals"]["signup"]["rate"] == 0.1


def test_conversions_beyond_a_rule_s_visitors_count_but_never_make_a_rate_above_one() -> None:
    day = "2026-12-05"
    totals = {CountKey("fb", "fb", "", "all", day): Tally(exposures=4),
              CountKey("fb", "fb", "buy", "all", day): Tally(0, 6),
              CountKey("other", "other", "", "all", day): Tally(exposures=9)}
    (fb,) = rule_results(totals, {"fb"})
    buy = fb["variants"]["fb"]["goals"]["buy"]
    assert (fb["variants"]["fb"]["exposed"], buy["converted"], buy["rate"]) == (4, 6, 1.0)
    assert fb["removed"] is False and buy["rate_low"] is not None
