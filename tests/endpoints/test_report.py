"""`edge-personalizer report`'s text table, from results judged over known counts, and the
number formats the dashboard's pages share with it."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from edge_personalizer.endpoints.dashboard_views import make_snapshot
from edge_personalizer.endpoints.report import (
    _column,
    _segment_lines,
    amount,
    count,
    p_value,
    pct,
    points,
    render_text,
    signed,
)
from edge_personalizer.learn.catalog import GoalCatalog
from edge_personalizer.learn.counters import CountKey, Tally
from edge_personalizer.rules.book import load_rules

from ..conftest import ROOT
from ..factories import counted
from .test_dashboard import opposed_segments

START = 1_794_960_000.0   # 2026-11-18 00:00 UTC

PER_DEVICE = """\
slots: {hero: {}}
goals: {purchase: {when: {request.path: /thanks}}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
    per: [device.type]
    variants: {control: {weight: 1}, a-variant-with-a-long-name: {weight: 1, html: A}}
"""


def test_text_report_lists_each_variant_and_warns_of_a_split_mismatch() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {CountKey("hero-test", "control", "", "all", "2026-11-01"): Tally(5200),
              CountKey("hero-test", "bold", "", "all", "2026-11-01"): Tally(4800),
              CountKey("hero-test", "control", "purchase", "all", "2026-11-01"): Tally(0, 520),
              CountKey("hero-test", "bold", "purchase", "all", "2026-11-01"): Tally(0, 600)}
    text = render_text(make_snapshot(ruleset, totals, store="x", taken_at=START).results)
    assert "hero-test: 10,000 visitors exposed" in text
    assert "    control" in text and "    bold" in text
    assert "WARNING sample ratio mismatch" in text
    assert "ahead: bold" in text


def test_text_report_names_each_segment_s_own_when_they_differ(tmp_path: Path) -> None:
    text = render_text(opposed_segments(tmp_path).results)
    assert "ahead: bold" not in text
    assert "ahead: none over all, each segment its own: from_facebook bold, other control" \
        in text


def test_text_report_compares_the_experiment_with_its_holdout() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = counted("hero-test", {"control": (500, 25), "bold": (500, 40), "holdout": (60, 2)})
    text = render_text(make_snapshot(ruleset, totals, store="x", taken_at=START).results)
    assert "hero-test: 1,000 visitors exposed, 60 held out" in text
    table = text.split("against the holdout (the page as it is), every variant together, "
                       "both counted where both were shown:\n")[1]
    held, together = table.splitlines()[:2]
    assert held.split()[:5] == ["held", "out", "60", "2", "3.3%"] and "baseline" in held
    assert together.split()[:6] == ["all", "variants", "1,000", "65", "6.5%", "5.1%..8.2%"]
    assert together.split()[6] == "+95.0%"
    # 2 of 60 is not clearly above 0: the uplift may be any number of times that (2
    # conversions spread as both sides together do)
    assert together.split()[7:9] == ["-35.3%", "or"] and "or more" in together
    # 2 conversions held out: the comparison is no verdict yet, and says so; bold's is one
    assert together.endswith("  (too few conversions to judge yet)")
    bold = next(line for line in text.splitlines() if line.strip().startswith("bold "))
    assert "too few" not in bold


def test_text_report_says_an_experiment_s_schedule_ended_or_has_not_begun(
        tmp_path: Path) -> None:
    text = {}
    for phase, schedule in (("ended", "{end: 2026-11-10}"), ("scheduled", "{start: 2026-12-01}")):
        (tmp_path / "r.yaml").write_text(PER_DEVICE.replace(
            "    slot: hero\n", f"    slot: hero\n    schedule: {schedule}\n"))
        totals = counted("hero-test", {"control": (50, 5)})
        text[phase] = render_text(make_snapshot(load_rules(tmp_path), totals, store="x",
                                                taken_at=START).results)
    assert "hero-test: 50 visitors exposed (ended: its schedule is over everywhere" in text["ended"]
    assert "(scheduled: its first day has come nowhere yet)" in text["scheduled"]


def test_text_report_marks_a_rule_since_removed_from_the_rules() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {CountKey("old-promo", "old-promo", "", "all", "2026-11-01"): Tally(40),
              CountKey("facebook-hero", "facebook-hero", "", "all", "2026-11-01"): Tally(9)}
    text = render_text(make_snapshot(ruleset, totals, store="x", taken_at=START).results)
    # every goal of the rules, none converted yet: said as 0
    none = "cta-click 0 (0.0%), purchase 0 (0.0%), signup 0 (0.0%)"
    assert f"  old-promo [old-promo]: 40 exposed; {none}  (removed from the rules)" in text
    assert f"  facebook-hero [facebook-hero]: 9 exposed; {none}\n" in text + "\n"
    # a goal that joined the rules late says over whom its rate is
    late = GoalCatalog(rule_goals=("purchase",),
                       rules_since=MappingProxyType({"purchase": "2026-11-02"}))
    joined = render_text(make_snapshot(ruleset, totals, store="x", taken_at=START,
                                       recorded=late).results)
    assert "purchase 0 (– of 0 from 2026-11-02)" in joined


def test_text_report_has_a_table_per_cell_with_columns_as_wide_as_their_names(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(PER_DEVICE)
    ruleset = load_rules(tmp_path)
    long = "a-variant-with-a-long-name"
    totals = {}
    for cell, (n_a, c_a, n_b, c_b) in {"mobile": (400, 40, 400, 80),
                                       "desktop": (700, 70, 300, 31)}.items():
        totals[CountKey("hero-test", "control", "", cell, "2026-11-01")] = Tally(n_a)
        totals[CountKey("hero-test", "control", "purchase", cell, "2026-11-01")] = \
            Tally(0, c_a)
        totals[CountKey("hero-test", long, "", cell, "2026-11-01")] = Tally(n_b)
        totals[CountKey("hero-test", long, "purchase", cell, "2026-11-01")] = Tally(0, c_b)
    totals[CountKey("hero-test", "holdout", "", "mobile", "2026-11-01")] = Tally(50)
    totals[CountKey("hero-test", "holdout", "purchase", "mobile", "2026-11-01")] = Tally(0, 2)
    lines = render_text(make_snapshot(ruleset, totals, store="x",
                                      taken_at=START).results).splitlines()
    at = lines.index("    by cell (device.type)")
    rows = [line.split() for line in lines[at + 2:]]
    assert rows[0][:4] == ["desktop", "control", "700", "70"]
    assert rows[1][:3] == [long, "300", "31"]   # the cell named once
    assert rows[2][:4] == ["WARNING", "sample", "ratio", "mismatch"]   # 700 against 300
    assert rows[3][:4] == ["mobile", "control", "400", "40"]
    assert rows[4][:3] == [long, "400", "80"]
    # mobile held visitors out: they, then every variant together against them
    assert rows[5][:4] == ["held", "out", "50", "2"] and rows[5][-2] == "baseline"
    assert rows[6][:4] == ["all", "variants", "800", "120"] and rows[6][6] == "+275.0%"
    # 50 held out at the 14.4% of both together would have bought 7.2 times
    assert " ".join(rows[6][-6:]) == "(too few conversions to judge yet)"
    assert len(rows) == 7   # no mismatch within mobile


def test_numbers_read_the_same_on_the_pages_and_in_the_table() -> None:
    assert (pct(None), signed(None), count(None), p_value(None)) == ("–",) * 4
    assert pct(0.1234) == "12.3%" and pct(0.1234, 2) == "12.34%"
    assert signed(0.05) == "+5.0%" and signed(-0.05).endswith("5.0%")
    assert count(12345.0) == "12,345" and count(12.5) == "12.50"
    # Sums of money always with their cents, so a column lines up: 86.00 beside 29.56.
    assert (amount(86.0), amount(29.56), amount(1234.5), amount(None)) == (
        "86.00", "29.56", "1,234.50", "–")
    assert p_value(0.00001) == "< 0.0001" and p_value(0.01234) == "0.0123"
    # a risk: percentage points of conversion rate, not a share of the control's rate
    assert points(0.0012) == "0.12 pp" and points(None) == "–"


def test_a_stopped_experiments_cells_are_headed_as_cells() -> None:
    # Its rules (and what it counted per) are gone: the heading names no empty list.
    assert _segment_lines({"segments": {}}, None)[0] == "    by cell"
    assert _segment_lines({"segments": {}}, ["device.type"])[0] == "    by cell (device.type)"
    assert _segment_lines({"segments": {}}, "segment")[0] == "    by segment"


def test_a_name_column_cuts_only_past_40_characters_and_keeps_names_apart() -> None:
    # Names were cut to 16 characters: free-shipping-banner-eu and -us read alike.
    eu, us = "free-shipping-banner-eu", "free-shipping-banner-us"
    assert _column([eu, us]) == {eu: eu, us: us}
    # past 40, cut in the middle: the start and the end stay
    long_eu = "free-shipping-banner-for-the-whole-summer-season-eu"
    long_us = long_eu.replace("-eu", "-us")
    assert _column([long_eu, long_us]) == {
        long_eu: "free-shipping-banner-for-th…er-season-eu",
        long_us: "free-shipping-banner-for-th…er-season-us"}
    # where the cut would leave two alike, whole
    middle = [f"summer-campaign-banner-2026-{region}-free-shipping" for region in ("eu", "us")]
    assert _column(middle) == {name: name for name in middle}
    # a control character counted under an old name is shown escaped, not sent raw
    assert _column(["a\x1b[31mRED\nline"]) == {"a\x1b[31mRED\nline": "a\\x1b[31mRED\\nline"}
