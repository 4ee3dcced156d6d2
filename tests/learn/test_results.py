from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

import pytest

from edge_personalizer.endpoints.verdicts import leader_of
from edge_personalizer.learn.catalog import GoalCatalog
from edge_personalizer.learn.counters import OTHER_CELLS, TAKEN, CountKey, Tally
from edge_personalizer.learn.results import MAX_CELLS, control_of, results, taken_warnings
from edge_personalizer.rules.allocation import Cells
from edge_personalizer.rules.conditions import Segment
from edge_personalizer.rules.model import Experiment, RuleSet
from edge_personalizer.rules.schedule import Schedule

from ..factories import counted


def _always(visitor: object) -> bool:
    return True


def experiment(name: str = "hero-test", *weights: tuple[str, float]) -> Experiment:
    return Experiment(name=name, slots=("hero",), audience=_always,   # type: ignore[arg-type]
                      holdout=0.0, weights=weights or (("control", 50.0), ("bold", 50.0)),
                      variants=MappingProxyType({}), source="t.yaml:1", goals=("purchase",))


def test_an_experiment_is_judged_on_its_goals_from_the_store_s_totals() -> None:
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(experiment(),))
    day = "2026-12-02"
    totals = {
        CountKey("hero-test", "control", "", "all", day): Tally(exposures=1000),
        CountKey("hero-test", "bold", "", "all", day): Tally(exposures=1000),
        CountKey("hero-test", "control", "purchase", "all", day): Tally(0, 50, 500.0, 5000.0),
        CountKey("hero-test", "bold", "purchase", "all", day): Tally(0, 80, 800.0, 8000.0),
        CountKey("fb-rule", "fb-rule", "", "all", day): Tally(exposures=10),
        CountKey("fb-rule", "fb-rule", "purchase", "all", day): Tally(0, 2, 0.0, 0.0),
    }
    report = results(ruleset, totals)
    (hero,) = report["experiments"]
    assert hero["name"] == "hero-test" and hero["exposed"] == 2000
    purchase = hero["goals"]["purchase"]
    bold, control = purchase["variants"]["bold"], purchase["variants"]["control"]
    assert (bold["exposed"], bold["converted"], bold["rate"]) == (1000, 80, 0.08)
    assert bold["uplift"] is not None and abs(bold["uplift"] - 0.6) < 1e-9
    assert bold["uplift_low"] < 0.6 < bold["uplift_high"]
    assert bold["chance_to_beat_control"] > 0.95
    assert control["uplift"] is None and control["chance_to_beat_control"] is None
    assert purchase["srm_p"] > 0.5
    # fb-rule (a rule counts under its own name) is no rule of this set: it is listed as
    # removed from the rules, and a removed rule is no stopped experiment
    assert [(r["name"], r["removed"]) for r in report["rules"]] == [("fb-rule", True)]


def test_a_goal_that_joined_under_way_judges_the_visitors_exposed_from_its_day() -> None:
    # purchase joined hero-test on 12-03 (as the catalog recorded): the 1,000 visitors a
    # variant had on 12-02 could not reach it and would dilute its rates to ~1.5%
    cells = Cells(segments=(_segment("runners"),))
    hero = dataclasses.replace(experiment(), goals=("signup", "purchase"), cells=cells)
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    totals = {}
    for day, exposed in (("2026-12-02", 1000), ("2026-12-03", 200)):
        for variant in ("control", "bold"):
            totals[CountKey("hero-test", variant, "", "runners", day)] = Tally(exposed)
            totals[CountKey("hero-test", variant, "signup", "runners", day)] = Tally(0, 10)
    totals[CountKey("hero-test", "control", "purchase", "runners", "2026-12-03")] = \
        Tally(0, 10)
    totals[CountKey("hero-test", "bold", "purchase", "runners", "2026-12-04")] = Tally(0, 30)
    since = MappingProxyType({"hero-test": MappingProxyType({"purchase": "2026-12-03"})})
    recorded = GoalCatalog(MappingProxyType({"hero-test": ("signup", "purchase")}),
                           since=since)
    (judged,) = results(ruleset, totals, recorded)["experiments"]
    purchase, signup = judged["goals"]["purchase"], judged["goals"]["signup"]
    assert purchase["since"] == "2026-12-03" and "since" not in signup
    assert {v: (r["exposed"], r["rate"]) for v, r in purchase["variants"].items()} == {
        "control": (200, 0.05), "bold": (200, 0.15)}
    assert purchase["segments"]["runners"]["exposed"] == 400
    assert signup["variants"]["bold"]["exposed"] == 1200 and judged["exposed"] == 2400
    assert judged["warnings"] == [
        "purchase joined the experiment while it ran: judged on the 400 visitors exposed "
        "from 2026-12-03 on (of 2,400); those exposed before could not reach it"]
    # a variant removed before purchase joined is none of purchase's business
    totals[CountKey("hero-test", "old", "", "runners", "2026-12-02")] = Tally(500)
    (judged,) = results(ruleset, totals, recorded)["experiments"]
    assert set(judged["goals"]["purchase"]["variants"]) == {"control", "bold"}
    assert judged["goals"]["signup"]["variants"]["old"]["removed"] is True
    # removed from the rules, it is judged the same way
    (stopped,) = results(RuleSet.empty("v2"), totals, recorded)["experiments"]
    assert stopped["status"] == "stopped"
    assert stopped["goals"]["purchase"]["variants"]["bold"]["rate"] == 0.15
    assert set(stopped["goals"]["purchase"]["variants"]) == {"control", "bold"}


def test_the_control_is_the_variant_named_so_else_the_first() -> None:
    assert control_of(experiment("x", ("a", 1.0), ("control", 1.0))) == "control"
    assert control_of(experiment("x", ("a", 1.0), ("b", 1.0))) == "a"


def _segment(name: str) -> Segment:
    return Segment(name, _always)   # type: ignore[arg-type]


def test_an_experiment_counted_per_segment_is_judged_in_each_segment_the_rules_name() -> None:
    cells = Cells(segments=(_segment("runners"), _segment("loyal")))
    hero = dataclasses.replace(experiment(), cells=cells)
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    day = "2026-12-02"
    totals = {
        CountKey("hero-test", "control", "", "runners", day): Tally(exposures=100),
        CountKey("hero-test", "bold", "", "runners", day): Tally(exposures=100),
        CountKey("hero-test", "bold", "purchase", "runners", day): Tally(0, 30, 0.0, 0.0),
        CountKey("hero-test", "control", "purchase", "runners", day): Tally(0, 10, 0.0, 0.0),
        CountKey("hero-test", "control", "", "other", day): Tally(exposures=50),
        CountKey("hero-test", "control", "purchase", "other", day): Tally(0, 5, 0.0, 0.0),
        CountKey("hero-test", "bold", "", "walkers", day): Tally(exposures=7),   # renamed since
    }
    (result,) = results(ruleset, totals)["experiments"]
    assert result["per"] == "segment"
    purchase = result["goals"]["purchase"]
    assert list(purchase["segments"]) == ["runners", "loyal", "other", "walkers"]
    runners = purchase["segments"]["runners"]
    assert runners["exposed"] == 200
    assert (runners["variants"]["bold"]["converted"], runners["variants"]["bold"]["rate"]) \
        == (30, 0.3)
    assert runners["variants"]["bold"]["chance_to_beat_control"] > 0.95
    assert purchase["segments"]["loyal"]["exposed"] == 0
    assert purchase["segments"]["loyal"]["variants"]["bold"]["rate"] is None
    # other: 50 visitors all on control, none on bold: a sample ratio mismatch within it
    assert purchase["segments"]["other"]["srm"]
    assert purchase["variants"]["control"]["exposed"] == 150   # the whole, as before


def test_cells_of_fields_are_judged_most_exposed_first_and_bounded() -> None:
    hero = dataclasses.replace(experiment(), cells=Cells(fields=("geo.city",)))
    day = "2026-12-02"
    totals = {CountKey("hero-test", "control", "", f"city-{n:03d}", day): Tally(exposures=n + 1)
              for n in range(MAX_CELLS + 10)}
    rows = results(dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,)), totals)
    (result,) = rows["experiments"]
    assert result["per"] == ["geo.city"]
    segments = result["goals"]["purchase"]["segments"]
    cells = list(segments)
    assert len(cells) == MAX_CELLS + 1 and cells[0] == f"city-{MAX_CELLS + 9:03d}"
    assert cells[-1] == OTHER_CELLS and segments[OTHER_CELLS]["exposed"] == 55   # the rest


def test_cells_folded_in_the_store_are_shown_in_the_other_cells_row() -> None:
    # The trainer folds a bandit's cells too small to keep apart into OTHER_CELLS
    # (learn/folding.py): their visitors are counted there, and in every total as before.
    hero = dataclasses.replace(experiment(), cells=Cells(fields=("referral.source",)))
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    day = "2026-12-02"
    real = {CountKey("hero-test", variant, "", "google", day): Tally(exposures=500)
            for variant in ("control", "bold")}
    made_up = {CountKey("hero-test", variant, "", f"made-up-{n}", day): Tally(exposures=1)
               for n in range(300) for variant in ("control", "bold")}
    folded = {CountKey("hero-test", variant, "", OTHER_CELLS, day): Tally(exposures=300)
              for variant in ("control", "bold")}
    (before,) = results(ruleset, real | made_up)["experiments"]
    (after,) = results(ruleset, real | folded)["experiments"]
    segments = after["goals"]["purchase"]["segments"]
    assert list(segments) == ["google", OTHER_CELLS]
    assert segments[OTHER_CELLS]["exposed"] == 600
    assert after["exposed"] == before["exposed"] == 1600
    assert {v: r["exposed"] for v, r in after["goals"]["purchase"]["variants"].items()} \
        == {v: r["exposed"] for v, r in before["goals"]["purchase"]["variants"].items()} \
        == {"control": 800, "bold": 800}


def test_an_experiment_of_one_cell_has_no_breakdown() -> None:
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(experiment(),))
    (result,) = results(ruleset, {})["experiments"]
    assert result["per"] is None and "segments" not in result["goals"]["purchase"]


def test_fixed_weights_edited_while_running_are_judged_within_each_split() -> None:
    # 50/50 for a while, then 90/10: pooled, the exposures are 1,900 to 1,100 against
    # today's 90/10, a false sample-ratio alarm, and the two splits' rates are mixed in
    # different proportions per variant. Judged within each split, neither.
    today = experiment("hero-test", ("control", 90.0), ("bold", 10.0))
    before = experiment().fixed_period
    assert today.fixed_period != before
    assert experiment("hero-test", ("control", 9.0), ("bold", 1.0)).fixed_period == \
        today.fixed_period   # the same split, whatever the weights add up to
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(today,))
    day = "2026-12-02"

    def rows(period: int, control: int, bold: int, rate: float, bold_rate: float
             ) -> dict[CountKey, Tally]:
        return {
            CountKey("hero-test", "control", "", "all", day, period): Tally(exposures=control),
            CountKey("hero-test", "bold", "", "all", day, period): Tally(exposures=bold),
            CountKey("hero-test", "control", "purchase", "all", day, period):
                Tally(0, round(control * rate), 0.0, 0.0),
            CountKey("hero-test", "bold", "purchase", "all", day, period):
                Tally(0, round(bold * bold_rate), 0.0, 0.0)}

    # the first split converted at 10% in both arms, today's at 2% in both
    totals = rows(before, 1000, 1000, 0.10, 0.10) | rows(today.fixed_period, 900, 100,
                                                          0.02, 0.02)
    purchase = results(ruleset, totals)["experiments"][0]["goals"]["purchase"]
    assert purchase["weighted_by"] == "period" and purchase["srm"] is False
    bold, control = purchase["variants"]["bold"], purchase["variants"]["control"]
    assert (bold["exposed"], control["exposed"]) == (1100, 1900)
    assert abs(bold["rate"] - control["rate"]) < 0.002   # pooled: 9.3% against 6.2%
    assert abs(bold["uplift"]) < 0.05
    # one split only: judged as counted
    single = results(ruleset, rows(today.fixed_period, 900, 100, 0.02, 0.02))
    assert "weighted_by" not in single["experiments"][0]["goals"]["purchase"]
    # edited a moment ago: today's split has shared out no one yet, and is not checked
    # against the visitors of the old one
    just_edited = results(ruleset, rows(before, 1000, 1000, 0.10, 0.10))
    purchase = just_edited["experiments"][0]["goals"]["purchase"]
    assert purchase["srm"] is False and purchase["weighted_by"] == "period"
    assert purchase["variants"]["bold"]["exposed"] == 1000
    # counts from before splits were told apart (period 0) are no split of their own
    upgraded = results(ruleset, rows(0, 900, 100, 0.10, 0.10)
                       | rows(today.fixed_period, 900, 100, 0.02, 0.02))
    assert "weighted_by" not in upgraded["experiments"][0]["goals"]["purchase"]


def test_conversions_beyond_the_exposures_are_cut_from_rates_and_said() -> None:
    # one visitor's stale cookie sent with two beacons: 2 converted of 1 exposed (and of a
    # bandit's period: the rate there would pass 100%)
    day = "2026-12-02"
    for hero in (experiment(), dataclasses.replace(experiment(), allocation="bandit")):
        ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
        totals = {
            CountKey("hero-test", "control", "", "all", day, 3): Tally(exposures=100),
            CountKey("hero-test", "control", "purchase", "all", day, 3): Tally(0, 10, 50.0,
                                                                                250.0),
            CountKey("hero-test", "bold", "", "all", day, 3): Tally(exposures=1),
            CountKey("hero-test", "bold", "purchase", "all", day, 3): Tally(0, 2, 20.0, 200.0),
            CountKey("hero-test", "bold", "", "all", day, 4): Tally(exposures=99),
            CountKey("hero-test", "bold", "purchase", "all", day, 4): Tally(0, 9, 45.0, 225.0),
        }
        (result,) = results(ruleset, totals)["experiments"]
        bold = result["goals"]["purchase"]["variants"]["bold"]
        assert (bold["exposed"], bold["converted"], bold["value_sum"]) == (100, 11, 65.0)
        assert bold["unexposed_conversions"] == 1
        # within period 3 (101 visitors) bold converted 1 of its 1, in period 4 (99) 9 of 99
        assert bold["rate"] == pytest.approx((101 * 1.0 + 99 * 9 / 99) / 200)
        assert result["warnings"] == [
            "bold: 1 conversion on purchase had no exposure counted (the store was emptied "
            "or reset while visitors came back, or one visitor's conversion was counted "
            "twice); left out of its rates"]
        # the other variant untouched
        control = result["goals"]["purchase"]["variants"]["control"]
        assert (control["converted"], control["rate"], control["unexposed_conversions"]) == \
            (10, 0.1, 0)


def test_an_experiment_that_cannot_be_judged_leaves_the_others_standing(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from edge_personalizer.learn import judging as module
    from edge_personalizer.learn.stats import goal_result as real

    def failing(totals: Any, weights: Any, **kwargs: Any) -> Any:
        if "broken" in weights:
            raise RuntimeError("a bug")
        return real(totals, weights, **kwargs)

    monkeypatch.setattr(module, "goal_result", failing)
    broken = experiment("broken-test", ("control", 1.0), ("broken", 1.0))
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(broken, experiment()))
    day = "2026-12-02"
    totals = {CountKey("broken-test", "control", "", "all", day): Tally(exposures=7),
              CountKey("hero-test", "control", "", "all", day): Tally(exposures=5),
              CountKey("old-test", "a", "", "all", day): Tally(exposures=3)}
    with caplog.at_level(logging.ERROR):
        report = results(ruleset, totals)
    first, hero, old = report["experiments"]
    assert first["name"] == "broken-test" and first["exposed"] == 7
    assert first["error"] == "its results could not be worked out: RuntimeError: a bug"
    assert first["goals"] == {}
    assert hero["goals"]["purchase"]["variants"]["control"]["exposed"] == 5
    assert old["status"] == "stopped" and "error" not in old
    assert "broken-test" in caplog.text and "a bug" in caplog.text


def test_a_stopped_experiment_keeps_its_results_from_the_store() -> None:
    day = "2026-12-02"
    totals = {CountKey("old-test", "b", "", "all", day): Tally(exposures=200),
              CountKey("old-test", "b", "purchase", "all", day): Tally(0, 40),
              CountKey("old-test", "a", "", "all", day): Tally(exposures=200),
              CountKey("old-test", "a", "purchase", "all", day): Tally(0, 20),
              CountKey("ep:affinity", "x", "y", "z", day): Tally(0, 9)}
    (old,) = results(RuleSet.empty("v1"), totals)["experiments"]
    assert (old["name"], old["status"], old["control"], old["exposed"]) == \
        ("old-test", "stopped", "a", 400)
    purchase = old["goals"]["purchase"]
    assert purchase["srm"] is False and purchase["srm_p"] is None   # its weights are gone
    assert purchase["variants"]["b"]["rate"] == 0.2
    assert purchase["variants"]["b"]["chance_to_beat_control"] > 0.95


def test_a_stopped_experiment_is_judged_on_the_goals_recorded_while_it_ran() -> None:
    # Its rules gone, the store's record says which goals it was judged on, the first
    # leading: a goal it was never judged on (counted for it before goals were recorded)
    # is no result of it, and "signup" leads although "purchase" comes first by name.
    day = "2026-12-02"
    totals = {CountKey("old-test", v, goal, "all", day): Tally(exposures=100)
              if goal == "" else Tally(0, n)
              for v in ("a", "b") for goal, n in (("", 0), ("signup", 30), ("purchase", 5),
                                                  ("newsletter", 9))}
    recorded = GoalCatalog(MappingProxyType({"old-test": ("signup", "purchase")}))
    (old,) = results(RuleSet.empty("v1"), totals, recorded)["experiments"]
    assert old["status"] == "stopped" and list(old["goals"]) == ["signup", "purchase"]
    (unrecorded,) = results(RuleSet.empty("v1"), totals)["experiments"]
    assert list(unrecorded["goals"]) == ["newsletter", "purchase", "signup"]


def test_a_stopped_experiment_lists_a_variant_it_had_that_no_visitor_reached() -> None:
    # bolder (a rename) reached no one before the stop: listed at 0, as while it ran
    day = "2026-12-05"
    totals = {CountKey("old-test", "control", "", "all", day): Tally(40),
              CountKey("old-test", "bold", "", "all", day): Tally(30)}
    recorded = GoalCatalog(MappingProxyType({"old-test": ("buy",)}), 1,
                           MappingProxyType({"old-test": ("control", "bolder")}))
    (old,) = results(RuleSet.empty("v1"), totals, recorded)["experiments"]
    variants = old["goals"]["buy"]["variants"]
    assert {name: (v["exposed"], v["removed"]) for name, v in variants.items()} == {
        "control": (40, False), "bolder": (0, False), "bold": (30, True)}


def test_a_stopped_experiment_s_variant_removed_before_the_stop_stays_removed() -> None:
    # free-ship was renamed free-delivery, then the experiment was removed from the rules:
    # the record of its variants says free-ship was no choice any more when it stopped.
    day = "2026-12-05"
    totals = {}
    for period, variants in ((1, ("control", "free-ship")), (2, ("control", "free-delivery"))):
        for variant in variants:
            totals[CountKey("old-test", variant, "", "all", day, period)] = Tally(500)
            totals[CountKey("old-test", variant, "buy", "all", day, period)] = Tally(0, 25)
    totals[CountKey("old-test", "free-ship", "buy", "all", day, 1)] = Tally(0, 60)
    recorded = GoalCatalog(MappingProxyType({"old-test": ("buy",)}), 1,
                           MappingProxyType({"old-test": ("control", "free-delivery")}))
    (old,) = results(RuleSet.empty("v1"), totals, recorded)["experiments"]
    variants = old["goals"]["buy"]["variants"]
    assert [name for name, v in variants.items() if v["removed"]] == ["free-ship"]
    assert variants["free-ship"]["chance_to_beat_control"] > 0.98   # better, in its split
    assert leader_of(old["goals"]["buy"]) == (None, None)   # but no longer a choice
    # without the record (counted before variants were recorded): every variant a choice
    (unrecorded,) = results(RuleSet.empty("v1"), totals,
                            GoalCatalog(MappingProxyType({"old-test": ("buy",)})))[
        "experiments"]
    assert leader_of(unrecorded["goals"]["buy"])[0] == "free-ship"


def test_a_removed_variant_stays_counted_and_out_of_the_split_check() -> None:
    hero = dataclasses.replace(experiment("hero-test", ("control", 50.0), ("a", 50.0)),
                               allocation="bandit")
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    day = "2026-12-02"
    totals = {CountKey("hero-test", v, "", "all", day, 1): Tally(exposures=84)
              for v in ("control", "a", "b")}
    totals |= {CountKey("hero-test", v, "", "all", day, 2): Tally(exposures=48)
               for v in ("control", "a")}
    (result,) = results(ruleset, totals)["experiments"]
    variants = result["goals"]["purchase"]["variants"]
    assert list(variants) == ["control", "a", "b"]
    assert [v["removed"] for v in variants.values()] == [False, False, True]
    assert sum(v["exposed"] for v in variants.values()) == result["exposed"] == 348


def test_a_variant_is_compared_with_the_control_only_where_both_were_shown() -> None:
    # `free-ship` renamed `free-delivery` while the experiment ran: a new split. In its
    # one split free-ship converted a little below the control (1.0% to 1.1%); the
    # control converted far better afterwards (5%), beside free-delivery (5%). Against the
    # control's rate over both splits, free-ship showed +110% and free-delivery an uplift
    # where the two were even.
    today = experiment("hero-test", ("control", 50.0), ("free-delivery", 50.0))
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(today,))
    before = experiment("hero-test", ("control", 50.0), ("free-ship", 50.0)).fixed_period
    day = "2026-12-05"

    def rows(period: int, rates: dict[str, float]) -> dict[CountKey, Tally]:
        out = {}
        for variant, rate in rates.items():
            out[CountKey("hero-test", variant, "", "all", day, period)] = Tally(2000)
            out[CountKey("hero-test", variant, "purchase", "all", day, period)] = \
                Tally(0, round(2000 * rate), 0.0, 0.0)
        return out

    totals = rows(before, {"control": 0.011, "free-ship": 0.010}) | rows(
        today.fixed_period, {"control": 0.05, "free-delivery": 0.05})
    purchase = results(ruleset, totals)["experiments"][0]["goals"]["purchase"]
    assert purchase["weighted_by"] == "period"
    ship, delivery = purchase["variants"]["free-ship"], purchase["variants"]["free-delivery"]
    assert ship["removed"] is True
    assert ship["uplift"] == pytest.approx(0.010 / 0.011 - 1, abs=1e-9)   # -9%, in its split
    assert delivery["uplift"] == pytest.approx(0.0, abs=1e-9)
    assert ship["chance_to_beat_control"] < 0.5 and 0.45 < delivery["chance_to_beat_control"]
    assert delivery["control_rate"] == pytest.approx(0.05)   # the baseline compared with
    assert delivery["compared_exposed"] == 2000
    # a variant that shares no split with the control is not compared at all
    alone = rows(before, {"control": 0.011}) | rows(today.fixed_period,
                                                    {"free-delivery": 0.05})
    lone = results(ruleset, alone)["experiments"][0]["goals"]["purchase"]["variants"]
    assert lone["free-delivery"]["uplift"] is None
    assert lone["free-delivery"]["compared_exposed"] == 0
    # nor when the first split was counted before splits were told apart (period 0), and
    # the results are pooled: the rename still splits what each variant was shown beside
    pooled = rows(0, {"control": 0.011, "free-ship": 0.010}) | rows(
        today.fixed_period, {"control": 0.05, "free-delivery": 0.05})
    judged = results(ruleset, pooled)["experiments"][0]["goals"]["purchase"]
    assert "weighted_by" not in judged
    assert judged["variants"]["free-ship"]["uplift"] == pytest.approx(0.010 / 0.011 - 1,
                                                                      abs=1e-9)
    assert judged["variants"]["free-delivery"]["uplift"] == pytest.approx(0.0, abs=1e-9)


def _holdout_totals(period: int = 0, day: str = "2026-12-05") -> dict[CountKey, Tally]:
    """hero-test's variants (control 50/1000, bold 80/1000) and 100 visitors held out,
    of whom 4 bought."""
    return counted("hero-test", {"control": (1000, 50), "bold": (1000, 80), "holdout": (100, 4)},
                   value=10.0, day=day, period=period)


def test_the_experiment_is_compared_with_the_visitors_it_held_out() -> None:
    hero = dataclasses.replace(experiment(), holdout=5.0)
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    (result,) = results(ruleset, _holdout_totals())["experiments"]
    assert (result["exposed"], result["held_out"]) == (2000, 100)
    purchase = result["goals"]["purchase"]
    # The variants are judged among themselves as before: the holdout is no variant, in
    # no split check (100 held out against 1,000 a variant would fail it).
    assert list(purchase["variants"]) == ["control", "bold"] and purchase["srm"] is False
    assert purchase["variants"]["bold"]["uplift"] == pytest.approx(0.6)
    held, together = purchase["holdout"]["held_out"], purchase["holdout"]["experiment"]
    assert (held["exposed"], held["converted"], held["rate"]) == (100, 4, 0.04)
    assert held["uplift"] is None and held["value_sum"] == 40.0
    assert (together["exposed"], together["converted"]) == (2000, 130)
    assert together["rate"] == pytest.approx(0.065)
    assert together["uplift"] == pytest.approx(0.065 / 0.04 - 1)   # +62.5%
    assert together["control_rate"] == pytest.approx(0.04)
    assert 0.5 < together["chance_to_beat_control"] < 1
    # 4 held out converted: too few, named as the results name that arm (not "holdout")
    assert together["too_few_conversions"] == ["held_out"]
    assert held["too_few_conversions"] is None


def test_an_experiment_that_holds_no_one_out_has_no_holdout_comparison() -> None:
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(experiment(),))
    totals = {k: t for k, t in _holdout_totals().items() if k.variant != "holdout"}
    (result,) = results(ruleset, totals)["experiments"]
    assert result["held_out"] == 0 and "holdout" not in result["goals"]["purchase"]


def test_the_holdout_is_compared_only_in_the_periods_it_was_held_out_in() -> None:
    # A bandit whose holdout came in its second version: the first version's visitors
    # (who converted far better, at 20%) say nothing of what holding out costs.
    hero = dataclasses.replace(experiment(), holdout=5.0, allocation="bandit")
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    totals = _holdout_totals(period=2)
    for variant in ("control", "bold"):
        totals[CountKey("hero-test", variant, "", "all", "2026-12-04", 1)] = Tally(1000)
        totals[CountKey("hero-test", variant, "purchase", "all", "2026-12-04", 1)] = \
            Tally(0, 200, 0.0, 0.0)
    (result,) = results(ruleset, totals)["experiments"]
    together = result["goals"]["purchase"]["holdout"]["experiment"]
    assert (together["exposed"], together["converted"]) == (2000, 130)   # its counts there
    assert together["rate"] == pytest.approx(0.065)
    assert together["uplift"] == pytest.approx(0.065 / 0.04 - 1)


def test_the_holdout_is_weighed_per_period_by_what_it_says_of_the_comparison() -> None:
    # A bandit whose holdout was lowered from 50% to 0.5%: its first version held out 500
    # of 1,000 (20% bought on both sides), its second 10 of 2,000 (5% of the variants'
    # visitors bought, 3 of the 10 held out). Weighted by its share of all visitors, the
    # second version's 10 decided the holdout's rate (26.7%: "the experiment cost -62%");
    # weighted as the variants are against the control (n1*n2/(n1+n2)), they weigh 10.
    hero = dataclasses.replace(experiment(), holdout=0.5, allocation="bandit")
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    totals = counted("hero-test", {"control": (250, 50), "bold": (250, 50),
                                   "holdout": (500, 100)}, period=1, day="2026-12-04")
    totals |= counted("hero-test", {"control": (995, 50), "bold": (995, 49),
                                    "holdout": (10, 3)}, period=2, day="2026-12-05")
    (result,) = results(ruleset, totals)["experiments"]
    held, together = (result["goals"]["purchase"]["holdout"][arm]
                      for arm in ("held_out", "experiment"))
    first, second = 500 * 500 / 1000, 10 * 1990 / 2000
    assert held["rate"] == pytest.approx((first * 0.2 + second * 0.3) / (first + second))
    assert together["rate"] == pytest.approx((first * 0.2 + second * 99 / 1990)
                                             / (first + second))
    assert -0.1 < together["uplift"] < 0 and together["p_value"] > 0.5


def test_a_holdout_never_beside_a_variant_is_not_compared() -> None:
    hero = dataclasses.replace(experiment(), holdout=5.0, allocation="bandit")
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    totals = {k: t for k, t in _holdout_totals(period=1).items() if k.variant != "holdout"}
    totals |= {k: t for k, t in _holdout_totals(period=2).items() if k.variant == "holdout"}
    (result,) = results(ruleset, totals)["experiments"]
    assert result["held_out"] == 100 and "holdout" not in result["goals"]["purchase"]


def test_a_stopped_experiment_keeps_its_holdout_apart_from_its_variants() -> None:
    (result,) = results(RuleSet.empty("v1"), _holdout_totals(),
                        GoalCatalog(MappingProxyType({"hero-test": ("purchase",)})))[
        "experiments"]
    assert result["status"] == "stopped" and result["held_out"] == 100
    purchase = result["goals"]["purchase"]
    assert sorted(purchase["variants"]) == ["bold", "control"]
    assert purchase["holdout"]["experiment"]["uplift"] == pytest.approx(0.625)


def test_a_stopped_experiment_that_only_held_visitors_out_is_no_error() -> None:
    totals = {k: t for k, t in _holdout_totals().items() if k.variant == "holdout"}
    (result,) = results(RuleSet.empty("v1"), totals)["experiments"]
    assert "error" not in result
    assert (result["status"], result["exposed"], result["held_out"]) == ("stopped", 0, 100)


def test_conversions_on_a_goal_the_experiment_no_longer_names_are_said() -> None:
    # signup renamed purchase in the rules: 245 conversions counted on signup showed
    # nowhere, and nothing said why the experiment's conversions went to 0.
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(experiment(),))
    totals = counted("hero-test", {"control": (1000, 120), "bold": (1000, 125)}, goal="signup")
    totals |= counted("hero-test", {"bold": (1000, 1)})
    (hero,) = results(ruleset, totals)["experiments"]
    assert list(hero["goals"]) == ["purchase"]
    assert hero["warnings"] == ["signup is no longer one of the experiment's goals: its 245 "
                                "conversions counted so far are not judged here (they are if "
                                "it is put back)"]


def test_an_experiment_paused_whose_schedule_ended_is_ended() -> None:
    # "paused" said that removing paused: would resume it.
    hero = dataclasses.replace(experiment(), paused=True,
                               audience=Schedule(end=date(2026, 11, 30)))
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(hero,))
    (result,) = results(ruleset, {}, now=datetime(2026, 12, 5, tzinfo=UTC))["experiments"]
    assert result["status"] == "ended"


def test_page_views_a_rule_took_from_an_experiment_s_visitors_are_told_per_rule() -> None:
    totals = {CountKey(TAKEN, "hero-test", "", "phone-hero", "2026-12-05"): Tally(3),
              CountKey(TAKEN, "hero-test", "", "phone-hero", "2026-12-04"): Tally(1),
              CountKey(TAKEN, "hero-test", "", "uk-hero", "2026-12-05"): Tally(1),
              CountKey(TAKEN, "other-test", "", "phone-hero", "2026-12-01"): Tally(9)}
    phone, uk = taken_warnings("hero-test", totals)
    assert phone.startswith("rule phone-hero filled the experiment's slot on 4 page views "
                            "of visitors it had counted (from 2026-12-04 on)")
    assert "profile.variants.hero-test: {exists: false}" in phone
    assert uk.startswith("rule uk-hero filled the experiment's slot on 1 page view of")
    assert taken_warnings("quiet-test", totals) == []
