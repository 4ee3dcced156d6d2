"""Server-drawn SVG charts: well-formed, escaped, coloured by significance."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from edge_personalizer.endpoints.charts import (
    NOT_SIGNIFICANT,
    SIGNIFICANT_DOWN,
    SIGNIFICANT_UP,
    line_chart,
    percent,
    span,
    uplift_bar,
)

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("value", "signed", "expected"), [
    (0.1234, False, "12.3%"), (0.1234, True, "+12.3%"), (-0.05, True, "-5.0%"),
    (0.0, True, "0.0%"),
])
def test_percent(value: float, signed: bool, expected: str) -> None:
    assert percent(value, signed=signed) == expected


@pytest.mark.parametrize(("low", "high", "colour", "words"), [
    (0.05, 0.30, SIGNIFICANT_UP, "significant"),
    (-0.30, -0.02, SIGNIFICANT_DOWN, "significant"),
    (-0.10, 0.30, NOT_SIGNIFICANT, "not significant"),
])
def test_uplift_bar_is_grey_unless_its_interval_leaves_out_zero(
        low: float, high: float, colour: str, words: str) -> None:
    svg = ET.fromstring(uplift_bar((low + high) / 2, low, high, scale=(-0.3, 0.3),
                                   label="bold"))
    bar = svg.findall(f"{SVG}line")[1]
    assert bar.get("stroke") == colour
    assert svg.get("aria-label", "").endswith(words)
    assert (bar.get("stroke-opacity") is None) == (colour != NOT_SIGNIFICANT)


def test_uplift_bar_of_too_few_conversions_is_grey_and_says_so() -> None:
    # 2 of 60 held out against 65 of 1,000: the interval leaves out 0, but rests on too
    # few conversions to be read as a verdict: it was drawn green, and titled
    # "significant" beside the words "too few conversions to judge yet".
    svg = ET.fromstring(uplift_bar(0.95, 0.10, 1.80, scale=(0.0, 2.0), label="all variants",
                                   judged=False))
    assert svg.findall(f"{SVG}line")[1].get("stroke") == NOT_SIGNIFICANT
    assert svg.get("aria-label", "").endswith("too few conversions to judge yet")


def test_uplift_bar_places_zero_and_the_interval_on_one_scale() -> None:
    svg = ET.fromstring(uplift_bar(0.1, 0.0, 0.2, scale=(-0.2, 0.2), label="b", width=240))
    zero, bar = svg.findall(f"{SVG}line")
    assert float(zero.get("x1", "")) == pytest.approx(120, abs=1)
    assert float(bar.get("x1", "")) == pytest.approx(120, abs=1)
    assert float(bar.get("x2", "")) > 200


def test_an_open_ended_uplift_bar_runs_off_the_scale_with_an_arrow() -> None:
    # Nobody converted under the control, 85 of 170 under the variant: no uplift to mark,
    # an interval from +205% with no upper end, significant.
    svg = ET.fromstring(uplift_bar(None, 2.05, None, scale=(0.0, 2.55), label="free_ship",
                                   width=240))
    bar = svg.findall(f"{SVG}line")[1]
    assert bar.get("stroke") == SIGNIFICANT_UP
    assert float(bar.get("x2", "")) > 220
    (arrow,) = svg.findall(f"{SVG}polygon")
    assert arrow.get("fill") == SIGNIFICANT_UP
    assert svg.findall(f"{SVG}circle") == []
    assert svg.get("aria-label") == ("free_ship: uplift none (the control's is 0), 95% interval "
                                     "+205.0% or more, no upper end, significant")
    # holding 0, it is grey
    svg = ET.fromstring(uplift_bar(0.0, -0.6, None, scale=(-0.6, 0.5), label="b"))
    assert svg.findall(f"{SVG}line")[1].get("stroke") == NOT_SIGNIFICANT
    assert svg.get("aria-label", "").endswith("or more, no upper end, not significant")


def test_names_are_escaped_in_charts() -> None:
    hostile = '<script>alert("x")</script>'
    bar = uplift_bar(0.1, -0.1, 0.3, scale=(-0.1, 0.3), label=hostile)
    chart = line_chart(["2026-11-01"], {hostile: [0.1]}, title=hostile)
    for svg in (bar, chart):
        assert "<script" not in svg
        ET.fromstring(svg)   # still well-formed


def test_line_chart_draws_a_line_per_series_with_gaps_for_unknown_days() -> None:
    days = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    svg = ET.fromstring(line_chart(days, {"control": [0.1, 0.12, 0.11, 0.1],
                                          "bold": [None, 0.21, None, 0.18]},
                                   title="rates"))
    lines = svg.findall(f"{SVG}polyline")
    assert len(lines) == 1                          # bold has no two known days in a row
    assert len(svg.findall(f"{SVG}circle")) == 4 + 2
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    assert "25.0%" in labels and "0.0%" in labels   # the axis tops out at a round 25%
    assert "11-01" in labels and "11-04" in labels
    assert lines[0].get("stroke-dasharray") is None


def test_line_chart_with_one_day_or_none_still_draws() -> None:
    one = ET.fromstring(line_chart(["2026-11-01"], {"a": [0.5], "b": [None]}, title="t"))
    assert len(one.findall(f"{SVG}circle")) == 1
    empty = ET.fromstring(line_chart([], {}, title="t"))
    assert empty.find(f"{SVG}title") is not None


def test_a_mark_and_a_fixed_top_for_shares() -> None:
    svg = ET.fromstring(line_chart(["d1", "d2", "d3"], {"a": [0.5, 0.4, 0.2]}, title="t",
                                   y_max=1.0, marks=[(1, "reweighted (v2)")]))
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    assert "100.0%" in labels and "reweighted (v2)" in labels
    mark = [line for line in svg.findall(f"{SVG}line")
            if line.get("stroke-dasharray") == "5 4"]
    assert len(mark) == 1 and mark[0].get("x1") == mark[0].get("x2")


def test_an_interval_reads_the_same_in_the_table_and_the_bar_s_description() -> None:
    # an uplift's interval, open-ended where the control's rate is too near 0 to bound it
    assert span(-0.05, 0.2) == "-5.0% to +20.0%" and span(0.5, 1.2, "..") == "+50.0%..+120.0%"
    assert span(2.05, None) == "+205.0% or more" and span(None, None) == "–"
