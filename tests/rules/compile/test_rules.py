"""The rules sections: every error at once, fragments read at load, ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules


def test_every_file_is_checked_and_errors_are_sorted_by_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("slots: {hero: {}}\nrules:\n  - {name: x, then: {hero: "
                                     "missing.html}}\n")
    (tmp_path / "b.yaml").write_text("rules:\n  - {name: y, when: {device.typ: mobile}, "
                                     "then: {hero: z}}\n")
    _, errors = check_rules(tmp_path)
    assert [e.source.name for e in errors] == ["a.yaml", "b.yaml"]
    assert "fragment file 'missing.html' does not exist" in errors[0].reason
    assert "did you mean 'device.type'" in errors[1].reason


def test_fragments_are_read_when_rules_load(tmp_path: Path) -> None:
    (tmp_path / "f.html").write_text("<b>{{ geo.city | default: 'you' }}</b>")
    (tmp_path / "r.yaml").write_text("slots: {hero: {}}\nrules:\n  - {name: x, then: {hero: "
                                     "f.html}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    (tmp_path / "f.html").unlink()   # deciding never reads files
    content = ruleset.rules[0].slots["hero"]
    assert content.source == "f.html" and content.template is not None


def test_fragments_outside_the_directory_are_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (tmp_path / "secret.html").write_text("x")
    (rules / "r.yaml").write_text("slots: {hero: {}}\nrules:\n  - {name: x, then: {hero: "
                                  "../secret.html}}\n")
    _, errors = check_rules(rules)
    assert "outside the rules directory" in errors[0].reason


@pytest.mark.parametrize("fragment", [".shared/hero.html", "fragments/.hero.html"])
def test_hidden_fragments_are_refused(tmp_path: Path, fragment: str) -> None:
    # Hidden files are left out of the rules' version, so a reload would never show their
    # edits: they are refused at the rule's line instead.
    (tmp_path / fragment).parent.mkdir(parents=True)
    (tmp_path / fragment).write_text("<b>one</b>")
    (tmp_path / "r.yaml").write_text("slots: {hero: {}}\nrules:\n  - name: x\n"
                                     f"    then: {{hero: {fragment}}}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.reason.split(": ", 1)[1].split(" (")[0]) for e in errors] == [
        (4, f"fragment {fragment!r} is hidden")]


def test_rank_is_priority_then_file_then_position(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("slots: {hero: {}}\nrules:\n  - {name: a1, then: {hero: x}}"
                                     "\n  - {name: a2, priority: 5, then: {hero: x}}\n")
    (tmp_path / "b.yaml").write_text("rules:\n  - {name: b1, priority: 5, then: {hero: x}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    assert [(r.name, r.rank) for r in ruleset.rules] == [("a2", 0), ("b1", 1), ("a1", 2)]
    assert ruleset.rules[0].source == f"{tmp_path / 'a.yaml'}:4"


@pytest.mark.parametrize(("priority", "line"), [
    ("1000000", None), ("-1000000", None), ("0", None),
    # priorities of 400 digits validated, and ordered rules as 1 and -1 would
    ("1000001", 4), ("-1000001", 4), ("1" + "0" * 400, 4), ("-1" + "0" * 400, 4),
    ("2.5", 4), ("high", 4),
])
def test_a_priority_is_a_whole_number_within_a_million_either_way(
        tmp_path: Path, priority: str, line: int | None) -> None:
    (tmp_path / "r.yaml").write_text("slots: {hero: {}}\nrules:\n  - name: r\n"
                                     f"    priority: {priority}\n    then: {{hero: x}}\n")
    ruleset, errors = check_rules(tmp_path)
    if line is None:
        assert errors == [] and ruleset.rules[0].priority == int(priority)
    else:
        assert [(e.line, e.reason) for e in errors] == [(line, (
            "rule 'r': priority is a whole number from -1,000,000 to 1,000,000 (higher "
            "goes first)"))]


def test_schedule_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n"
        "  - name: x\n    schedule: {start: '2026-11-31', days: 3}\n    then: {hero: x}\n"
        "  - name: y\n    schedule: {days: [mon, funday]}\n    then: {hero: x}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.reason.split(": ", 1)[1][:30]) for e in errors] == [
        (4, "'2026-11-31' is not a date (da"), (4, "days is a day (mon..sun, weekd"),
        (7, "unknown day 'funday'; expected")]   # each mistake of a schedule


def test_a_schedule_s_days_are_days_by_name_and_its_dates_have_no_time(
        tmp_path: Path) -> None:
    # Any word beginning with a day's three letters was that day ("sunny", "wedding"), and
    # a date with a time of day started at midnight.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n"
        "  - name: x\n    schedule: {days: [Monday, tue, SUNDAY]}\n    then: {hero: x}\n"
        "  - name: y\n    schedule: {days: [sunny, wedding]}\n    then: {hero: x}\n"
        "  - name: z\n    schedule: {start: 2026-12-01T10:00:00}\n    then: {hero: x}\n"
        "  - name: w\n    schedule: {end: '2026-12-01 18:00'}\n    then: {hero: x}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [(e.line, e.reason.split(": ", 1)[1]) for e in errors] == [
        (7, "unknown day 'sunny'; expected mon..sun (or monday..sunday), weekdays or weekend"
            "; did you mean 'sun'?"),
        (7, "unknown day 'wedding'; expected mon..sun (or monday..sunday), weekdays or "
            "weekend; did you mean 'wed'?"),   # (each wrong day of the list)
        (10, "2026-12-01 10:00:00 has a time of day, and a schedule's start and end are days: "
             'write 2026-12-01, and the hours as hours: "10:00-18:00"'),
        (13, "2026-12-01 18:00 has a time of day, and a schedule's start and end are days: "
             'write 2026-12-01, and the hours as hours: "10:00-18:00"')]
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n"
        "  - name: x\n    schedule: {days: [Monday, tues, THURS, sun], start: 2026-12-01T00:00:00}"
        "\n    then: {hero: x}\n")
    (rule,) = check_rules(tmp_path)[0].rules   # (midnight: the day itself)
    assert rule.condition.describe() == "scheduled from 2026-12-01 on mon, tue, thu, sun"


def test_every_mistake_of_a_schedule_is_told_at_once(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - name: x\n    schedule:\n"
        "      start: 2026-12-24\n      end: 2026-12-01\n      hours: 18-23\n"
        "      dayz: weekend\n    then: {hero: x}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.reason.split(": ", 1)[1][:34]) for e in errors] == [
        (6, "the schedule ends before it starts"), (7, "hours are written \"18:00-23:00\""),
        (8, "unknown schedule key 'dayz'; expec")]


def test_a_schedule_whose_days_fall_on_none_of_its_dates_is_refused(tmp_path: Path) -> None:
    # Friday 2026-12-04 to Sunday 2026-12-06 holds no weekday but fri: a rule only ever on
    # weekdays other than that would never be on, as days: [] would not.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n"
        "  - name: x\n    schedule: {start: 2026-12-04, end: 2026-12-06, days: [mon, tue]}\n"
        "    then: {hero: x}\n"
        "  - name: y\n    schedule: {start: 2026-12-04, end: 2026-12-06, days: weekend}\n"
        "    then: {hero: x}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [(e.line, e.reason) for e in errors] == [
        (4, "rule 'x': no date from 2026-12-04 to 2026-12-06 falls on mon, tue, so the rule "
            "would never be on")]
    assert [rule.name for rule in ruleset.rules] == ["y"]


@pytest.mark.parametrize(("name", "reason"), [
    ("uk shipping", "rule name 'uk shipping': names are ASCII letters, digits, '-', '_' and "
                    "'.', starting with a letter or digit; e.g. 'uk-shipping'"),
    ("café", "rule name 'café': names are ASCII letters"),
    ("3", "rule name 3 is a number: write it as text"),
    ("", "every rule needs a name"),
])
def test_a_name_that_cannot_be_used_says_why(tmp_path: Path, name: str, reason: str) -> None:
    # It said "every rule needs a name" of a name written with a space or an accent.
    (tmp_path / "r.yaml").write_text(
        f"slots: {{a: {{}}}}\nrules:\n  - name: {name}\n    then: {{a: x}}\n"
        f"experiments:\n  - name: {name}\n    slot: a\n    variants: {{x: {{weight: 1}}}}\n")
    _, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [3, 6]
    assert reason in errors[0].reason, errors[0].reason
    assert reason.replace("rule", "experiment", 1) in errors[1].reason, errors[1].reason


def test_a_schedule_day_of_many_digits_is_told_briefly(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n"
        f"  - name: x\n    schedule: {{days: [mon, {'1' + '0' * 400}]}}\n    then: {{hero: x}}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.reason.split(": ", 1)[1]) for e in errors] == [
        (4, "unknown day 10000000000000000000…; expected mon..sun (or monday..sunday), "
            "weekdays or weekend")]
