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


def test_a_goal_that_joined_the_rules_late_is_judged_over_the_visitors_reached_since() -> None:
    # fb reached 100 visitors on 12-04 and 20 on 12-06; buy joined the rules on 12-06:
    # its rate is over the 20, signup's over all 120
    totals = {CountKey("fb", "fb", "", "all", "2026-12-04"): Tally(exposures=100),
              CountKey("fb", "fb", "signup", "all", "2026-12-04"): Tally(0, 10),
              CountKey("fb", "fb", "", "all", "2026-12-06"): Tally(exposures=20),
              CountKey("fb", "fb", "signup", "all", "2026-12-06"): Tally(0, 2),
              CountKey("fb", "fb", "buy", "all", "2026-12-06"): Tally(0, 5)}
    (fb,) = rule_results(totals, {"fb"}, since={"buy": "2026-12-06"})
    reached = fb["variants"]["fb"]
    assert reached["exposed"] == 120
    assert reached["goals"]["signup"]["rate"] == 0.1 and "since" not in reached["goals"]["signup"]
    assert reached["goals"]["buy"] | {"rate_low": None, "rate_high": None} == {
        "converted": 5, "rate": 0.25, "rate_low": None, "rate_high": None,
        "since": "2026-12-06", "exposed": 20}


def test_every_goal_of_the_rules_is_listed_for_each_rule_none_converted_too() -> None:
    # "0 of 40" is a finding; a goal left out cannot be told from one not judged
    totals = {CountKey("uk", "uk", "", "all", "2026-12-05"): Tally(exposures=40)}
    (uk,) = rule_results(totals, {"uk"}, goals=("purchase", "signup"))
    goals = uk["variants"]["uk"]["goals"]
    assert list(goals) == ["purchase", "signup"]
    assert goals["purchase"] | {"rate_high": None} == {
        "converted": 0, "rate": 0.0, "rate_low": 0.0, "rate_high": None}
    report = results(RuleSet.empty("v1"), totals)   # a rule set of no goals: none listed
    assert report["rules"][0]["variants"]["uk"]["goals"] == {}
