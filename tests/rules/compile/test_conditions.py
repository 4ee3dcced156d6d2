"""Clauses -> conditions: what is accepted, and each mistake at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules, load_rules

from ...factories import make_visitor
from . import told


def rules_with(tmp_path: Path, when: str) -> Path:
    (tmp_path / "r.yaml").write_text(
        f"slots: {{a: {{}}}}\nrules:\n  - name: r\n    when: {when}\n    then: {{a: x}}\n")
    return tmp_path


def test_in_lists_the_values_any_of_which_matches(tmp_path: Path) -> None:
    rule = load_rules(rules_with(tmp_path, "{geo.country: {in: [SE, GB]}}")).rules[0]
    assert rule.condition(make_visitor(ip="81.2.69.142"))        # GB
    assert not rule.condition(make_visitor(ip="216.160.83.56"))  # US


def test_time_zone_is_a_field_rules_can_read(tmp_path: Path) -> None:
    # `explain` prints time.time_zone, so a rule may test it (issue 18, item 11).
    rule = load_rules(rules_with(tmp_path, "{time.time_zone: Europe/London}")).rules[0]
    assert rule.condition(make_visitor(ip="81.2.69.142"))
    assert not rule.condition(make_visitor(ip="216.160.83.56"))


SATURDAY = 1796472000.0   # 2026-12-05 12:00 in London
TUESDAY = SATURDAY + 3 * 86400


@pytest.mark.parametrize("written", [
    "sat", "Saturday", "satur", "weekend", "[fri, sat]", "{in: [monday, Weekend]}",
    "{equals: SAT}", "{not: weekdays}"])
def test_a_weekday_is_written_as_in_a_schedule(tmp_path: Path, written: str) -> None:
    rule = load_rules(rules_with(tmp_path, f"{{time.weekday: {written}}}")).rules[0]
    assert rule.condition(make_visitor(ip="81.2.69.142", now=SATURDAY))
    assert not rule.condition(make_visitor(ip="81.2.69.142", now=TUESDAY))


@pytest.mark.parametrize(("when", "message"), [
    ("{geo.country: {in: GB}}", "in takes a list of values"),
    ("{geo.country: {is: GB}}", "unknown operator 'is'"),
    ("{geo.country: []}", "geo.country: empty list"),
    ("{profile.visits: {between: [5, 1]}}", "the low end is above the high end"),
    ("{request.path: {matches: '(?=a)'}}", "not a usable regular expression"),
    ("{equals: 3}", "'equals' is an operator"),
    ("{segment: nobody}", "unknown segment 'nobody' (the segments: section names none)"),
    # values no visitor can have (each rule was accepted and never matched)
    ("{geo.country: UK}", "geo.country 'UK' is no such code; did you mean 'GB'?"),
    ("{geo.country: England}", "a country is its two-letter ISO 3166-1 code"),
    ("{geo.country: {in: [GB, Germany]}}", "geo.country 'Germany'"),
    ("{language.primary: german}", "a language is its ISO 639 code, e.g. de"),
    ("{time.hour: 25}", "time.hour is a whole number between 0 and 23, got 25"),
    ("{time.date: 24.12.2026}", "a date is written 2026-12-24"),
    ("{time.weekday: sunny}", "unknown time.weekday 'sunny'; expected mon..sun (or "
                              "monday..sunday), weekdays or weekend; did you mean 'sun'?"),
    ("{time.weekday: funday}", "did you mean 'sunday'?"),   # (as days: says)
    ("{time.weekday: {in: [mon, mo]}}", "unknown time.weekday 'mo'"),
])
def test_mistakes_are_reported_at_their_line(tmp_path: Path, when: str, message: str) -> None:
    _, errors = check_rules(rules_with(tmp_path, when))
    assert len(errors) == 1 and message in errors[0].reason and errors[0].line == 4


def test_an_empty_when_or_all_says_what_to_write(tmp_path: Path) -> None:
    # They said "conditions are a mapping of fields to values" and "all takes a list of
    # conditions", of a when: left empty and of an all: given an empty list.
    assert told(tmp_path, "slots: {a: {}}\nrules:\n  - name: r\n    when:\n"
                          "    then: {a: x}\n  - name: s\n    when: {all: []}\n"
                          "    then: {a: x}\n") == [
        (4, "rule 'r': when is empty; to match every visitor, leave it out"),
        (7, "rule 's': all: [] holds no condition; write them in it, or leave all out")]


def test_every_wrong_item_of_any_all_segments_and_days_is_told(tmp_path: Path) -> None:
    # Only the first of each list was told: mobil, nope1, funday.
    said = [reason for _, reason in told(
        tmp_path, "slots: {a: {}}\nrules:\n  - name: r\n"
                  "    when: {any: [{device.type: mobil}, {device.type: tablett}, "
                  "{geo.country: GBR}], segment: [nope1, nope2]}\n"
                  "    schedule: {days: [mon, funday, sat, caturday]}\n    then: {a: x}\n")]
    for wrong in ("'mobil'", "'tablett'", "'GBR'", "'nope1'", "'nope2'", "'funday'",
                  "'caturday'"):
        assert sum(wrong in one for one in said) == 1, (wrong, said)
    assert len(said) == 7


def test_every_wrong_value_of_a_list_is_told(tmp_path: Path) -> None:
    # Only the first wrong value of each list was told: a marketer ran validate once a value.
    when = "{device.type: [tablett, mobil], geo.country: {in: [UK, DE, DEU]}}"
    _, errors = check_rules(rules_with(tmp_path, when))
    assert [e.reason.split(": ", 1)[1][:27] for e in errors] == [
        "unknown device.type 'tablet", "unknown device.type 'mobil'",
        "geo.country 'UK' is no such", "geo.country 'DEU': a countr"]
    assert all(e.line == 4 for e in errors)


def test_values_of_the_right_form_are_taken(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, "{geo.country: [gb, DE], language.primary: [de, fil], "
                                 "time.hour: [0, 23], time.date: 2026-12-24}")
    assert check_rules(rules)[1] == []


def test_segments_in_a_circle_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "segments:\n  a: {when: {segment: b}}\n  b: {when: {segment: a}}\n")
    _, errors = check_rules(tmp_path)
    assert any("circle: a -> b -> a" in e.reason for e in errors)


def test_regular_expressions_match_text_beyond_ascii(tmp_path: Path) -> None:
    rule = load_rules(rules_with(tmp_path, "{request.query.q: {matches: '^m.nchen$'}}")).rules[0]
    assert rule.condition(make_visitor(query="q=m%C3%BCnchen"))
    assert not rule.condition(make_visitor(query="q=muenchen"))


HUGE = "1" + "0" * 400


@pytest.mark.parametrize(("when", "reason"), [
    # "gte takes a number, got a number" for .nan; .inf was taken as a number
    ("{profile.visits: {gte: .nan}}", "gte takes a number, got .nan (not a number)"),
    ("{profile.visits: {lt: .inf}}", "lt takes a number, got .inf (infinity, no number)"),
    ("{profile.visits: {between: [1, .inf]}}",
     "between takes a number, got .inf (infinity, no number)"),
    ("{profile.visits: -.inf}", "profile.visits is a number, got -.inf (infinity, no number)"),
    ("{profile.visits: {gte: many}}", "gte takes a number, got text 'many'"),
    # an int of 400 digits (YAML reads any number of them) crashed validate
    (f"{{profile.visits: {{gte: {HUGE}}}}}",
     "gte takes a number, got a number beyond ±1.8e308, too large to compare"),
    (f"{{profile.visits: {{between: [0, {HUGE}]}}}}",
     "between takes a number, got a number beyond ±1.8e308, too large to compare"),
    (f"{{time.hour: -{HUGE}}}",
     "time.hour is a number, got a number beyond ±1.8e308, too large to compare"),
    (f"{{geo.metro: {{in: [501, {HUGE}]}}}}",
     "geo.metro is a number, got a number beyond ±1.8e308, too large to compare"),
    # a number of many digits a float holds, or more than 4,300 (read as text), or one
    # where true or false belongs, was quoted whole
    (f"{{time.hour: {HUGE[:300]}}}",
     "time.hour is a whole number between 0 and 23, got 10000000000000000000…"),
    (f"{{profile.visits: {HUGE * 12}}}",
     "profile.visits is a number, got text '1000000000000000000…"),
    (f"{{device.touch: {HUGE}}}", "device.touch is true or false, got 10000000000000000000…"),
    # ... and so were a value of a field of named values, or of a written form
    (f"{{device.type: {HUGE}}}", "unknown device.type '1000000000000000000…; expected "
                                 "mobile, tablet, desktop, tv, bot, other"),
    (f"{{geo.country: {HUGE}}}", "geo.country '1000000000000000000…: a country is its "
                                 "two-letter ISO 3166-1 code, e.g. GB (the United Kingdom), "
                                 "US, DE"),
])
def test_a_number_that_is_no_number_is_named(tmp_path: Path, when: str, reason: str) -> None:
    _, errors = check_rules(rules_with(tmp_path, when))
    assert [(e.line, e.reason) for e in errors] == [(4, f"rule 'r': {reason}")]
