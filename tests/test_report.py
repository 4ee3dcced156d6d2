from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from edge_personalizer.report import (
    classify_lines,
    render_explanation,
    render_summary,
    summarize,
    visitor_for,
)
from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.evaluator import explain

from .factories import default_classifier, make_visitor, with_profile


def test_visitor_for_a_url() -> None:
    visitor = visitor_for(default_classifier(), url="https://shop.example/a?utm_source=fb",
                          headers={"Referer": "https://www.google.com/"}, now=1.795e9)
    assert visitor.request.host == "shop.example" and visitor.referral.source == "facebook"


def test_bad_lines_are_reported_not_fatal() -> None:
    rows = list(classify_lines(default_classifier(), [
        '{"url": "/", "time": "not a time"}', '[]', '{"url": "/", "headers": "x"}',
        '{"url": "ftp://x/"}', '{"url": "/ok", "time": 1795000000}'], now=0))
    assert [("error" in row) for row in rows] == [True, True, True, True, False]
    summary = summarize(rows)
    assert summary["visitors"] == 1 and summary["errors"] == 4
    assert "1 visitors, 4 unreadable lines" in render_summary(summary)


@pytest.mark.parametrize(("line", "said"), [
    ('{"url": "/", "ip": 5}', "ip must be a string, not 5"),
    ('{"url": "/", "headers": {"User-Agent": ["x"]}}',
     "headers: 'User-Agent' must be a string (or null: not sent), not ['x']"),
    ('{"url": "/\\udc00"}', "'\\udc00' is no character (half of a UTF-16 pair alone)"),
    ('{"url": "/", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "JSON nested too deeply to read"),
])
def test_a_line_of_the_wrong_types_is_a_bad_line(line: str, said: str) -> None:
    # An ip of 5 and JSON nested deep stopped the run with a traceback; a list was read as
    # the User-Agent "['x']"; the URL was classified, then could not be written out.
    (row,) = classify_lines(default_classifier(), [line], now=0)
    assert row == {"line": 1, "error": said}


def test_a_header_given_as_null_is_one_the_request_did_not_have() -> None:
    # It was read as the text "None": a User-Agent of no bot.
    absent, null = classify_lines(default_classifier(), [
        '{"url": "/"}', '{"url": "/", "headers": {"User-Agent": null, "Referer": null}}'],
        now=0)
    del absent["profile"]["visitor_id"], null["profile"]["visitor_id"]   # (new ones: random)
    assert null == absent and null["device"]["type"] == "bot"


@pytest.mark.parametrize("time", [
    "1e300", "-1e300", "NaN", "Infinity", "-1", "1" + "0" * 400, '"0001-01-01T00:00:00+14:00"',
    '"9999-12-31T23:59:59-12:00"', '"1969-12-31T23:59:59Z"', "253402214401"])
def test_a_time_no_clock_shows_is_a_bad_line(time: str) -> None:
    # Before 1970 or past 9999 (in some time zone), or not a number at all: the run
    # stopped with a traceback, or a time of NaN was answered in Python's words.
    (row,) = classify_lines(default_classifier(), [f'{{"url": "/", "time": {time}}}'], now=0)
    assert row["line"] == 1
    assert "is out of range: epoch seconds from 0 to 253402214400, or ISO 8601 from " \
        "1970-01-01T00:00:00Z to 9999-12-31T00:00:00Z" in row["error"]


@pytest.mark.parametrize("time", ["0", "253402214400", '"9999-12-31T00:00:00Z"',
                                  '"1970-01-01T00:00:00Z"', '"9999-12-31T10:00:00+10:00"'])
def test_the_first_and_last_times_are_read(time: str) -> None:
    (row,) = classify_lines(default_classifier(), [f'{{"url": "/", "time": {time}}}'], now=0)
    assert "error" not in row, row


def test_a_url_without_its_scheme_is_an_error_not_a_path() -> None:
    # It classified as a visitor of host "site.invalidshop.example".
    (row,) = classify_lines(default_classifier(), ['{"url": "shop.example/sale"}'], now=0)
    assert "'shop.example/sale' is no http(s) URL; write https://shop.example/sale" \
        in str(row["error"])


def _explained(tmp_path: Path, rules: str, **profile: Any) -> dict[str, Any]:
    """explain's report of `rules` for a stored visitor v-1 (with `profile`'s fields)."""
    (tmp_path / "r.yaml").write_text(rules)
    base = make_visitor()
    visitor = with_profile(base, base.profile._replace(visitor_id="v-1", stored=True,
                                                       **profile))
    return {"visitor": visitor.to_dict(), **explain(load_rules(tmp_path), visitor)}


def test_a_held_out_visitor_is_told_so_not_how_a_variant_would_be_placed(
        tmp_path: Path) -> None:
    report = _explained(
        tmp_path, "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    holdout: 99\n"
        "    variants: {control: {weight: 1}, b: {weight: 1, html: x}}\n")
    (experiment,) = report["experiments"]
    assert experiment["held_out"]   # 99% held out: v-1's bucket is below 0.99
    text = render_explanation(report)
    assert "holdout 99% (buckets below 0.99): bucket" in text and ", held out," in text
    assert "    held out: shown the page as it is, in no variant" in text
    assert "placed by the visitor's id" not in text


def test_a_paused_experiment_is_told_so_whoever_the_visitor(tmp_path: Path) -> None:
    report = _explained(
        tmp_path, "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    paused: true\n"
        "    variants: {control: {weight: 1}, b: {weight: 1, html: x}}\n",
        variants=MappingProxyType({"e": "b"}))
    (experiment,) = report["experiments"]
    assert experiment["paused"] is True and experiment["variant"] is None
    assert report["decision"]["slots"] == {}   # not even the variant they had
    text = render_explanation(report)
    assert "  e (hero): paused: shows no variant, counts no one new\n" in text
    assert "placed by the visitor's id" not in text and "kept" not in text


def test_an_experiment_whose_slot_a_rule_takes_is_told_so(tmp_path: Path) -> None:
    # It said "variant bucket 0.85 -> the page as it is" and, in JSON, "placed by the
    # visitor's id", with no word of the rule that took the slot.
    report = _explained(
        tmp_path, "slots: {hero: {}}\nrules:\n  - {name: everyone, then: {hero: {html: r}}}\n"
        "experiments:\n  - name: e\n    slot: hero\n"
        "    variants: {control: {weight: 1}, b: {weight: 1, html: x}}\n")
    (experiment,) = report["experiments"]
    assert experiment["taken_by"] == "rule everyone (slot hero)"
    assert experiment["why"].startswith("its slot is taken by rule everyone (slot hero)")
    text = render_explanation(report)
    assert ("  e (hero): not placed: its slot is taken by rule everyone (slot hero): the page "
            "as that rule makes it, counted nowhere in this experiment\n") in text
    assert "variant bucket" not in text and "placed by the visitor's id" not in text


def test_a_visitor_held_out_before_is_told_held_out_whatever_the_share_now(
        tmp_path: Path) -> None:
    report = _explained(
        tmp_path, "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    holdout: 0\n"
        "    variants: {control: {weight: 1}, b: {weight: 1, html: x}}\n",
        variants=MappingProxyType({"e": "holdout"}))
    (experiment,) = report["experiments"]
    assert experiment["held_out"] and experiment["kept_held_out"]
    text = render_explanation(report)
    assert "held out on an earlier visit, so still (holdout now 0%)" in text
    assert "no holdout" not in text
