from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules
from edge_personalizer.rules.goals import GoalInvalid, window_seconds

from ..factories import default_classifier, make_request

GOALS = """
slots: {hero: {}}
goals:
  purchase:
    when: {request.path: /checkout/thanks}
    value: {query: total}
    window: 2d
  signup: {when: {request.path: /signup}, status: [200, 201]}
  click: {}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase, click]
    variants: {control: {weight: 1}, bold: {weight: 1, html: "<b>b</b>"}}
"""


def test_goals_compile_and_experiments_name_what_they_are_judged_on(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(GOALS)
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    purchase = ruleset.goals["purchase"]
    assert purchase.value_query == "total" and purchase.window_seconds == 2 * 86400
    assert ruleset.goals["signup"].statuses == {200, 201}
    assert ruleset.goals["click"].when is None
    assert not purchase.beacon   # the site reports it: no beacon reaches it
    assert ruleset.experiment("hero-test").goals == ("purchase", "click")   # type: ignore[union-attr]
    thanks = default_classifier().visitor(make_request("/checkout/thanks"), now=0.0)
    assert purchase.reached_by(thanks)
    assert not ruleset.goals["click"].reached_by(thanks)


@pytest.mark.parametrize(("text", "message", "line"), [
    ("goals:\n  buy:\n    whn: {request.path: /x}\n", "unknown key 'whn'", 3),
    ("goals:\n  buy: {window: forever}\n", "window 'forever': write 30m, 72h or 7d", 2),
    ("goals:\n  buy: {value: {cookie: x}}\n", "value is {query", 2),
    ("goals:\n  buy: {status: 99}\n", "status is an HTTP status", 2),
    ("goals:\n  buy: {status: [200, 999, abc]}\n", "; no status: 999, 'abc'", 2),
    ("goals:\n  click: {beacon: yes please}\n", "beacon is true", 2),
    ("goals:\n  buy: {when: {geo.contry: DE}}\n", "geo.contry", 2),
    ("goals:\n  b@d: {}\n", "a goal's name", 2),
    ("goals: [buy]\n", "goals is a mapping", 1),
    ("slots: {hero: {}}\ngoals: {buy: {}}\nexperiments:\n  - name: t\n    slot: hero\n"
     "    goals: [by]\n    variants: {a: {weight: 1}, b: {weight: 1, html: x}}\n",
     "unknown goal 'by'", 6),
])
def test_a_bad_goal_names_file_line_and_reason(tmp_path: Path, text: str, message: str,
                                               line: int) -> None:
    (tmp_path / "goals.yaml").write_text(text)
    _, errors = check_rules(tmp_path)
    assert errors, text
    assert message in str(errors[0]) and errors[0].line == line, str(errors[0])
    assert str(errors[0]).startswith(str(tmp_path / "goals.yaml"))


HUGE = "1" + "0" * 400   # YAML reads an int of any number of digits


@pytest.mark.parametrize(("written", "reason"), [
    # Each was quoted whole: 400 digits in one error (the window's four times)
    (f"status: {HUGE}", "status is an HTTP status (200) or a list of them ([200, 201]); no "
                        "status: 10000000000000000000…"),
    (f"status: [200, -{HUGE}]", "status is an HTTP status (200) or a list of them ([200, "
                                "201]); no status: -1000000000000000000…"),
    (f"window: {HUGE}", "window 10000000000000000000…: write it with its unit (72h, 72m or "
                        "72s; or days: 7d)"),
    (f"window: '{HUGE}'", "window '1000000000000000000…: write 30m, 72h or 7d"),
])
def test_a_number_of_many_digits_is_told_briefly_at_its_place(tmp_path: Path, written: str,
                                                              reason: str) -> None:
    (tmp_path / "goals.yaml").write_text(f"goals:\n  buy:\n    {written}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.column, e.reason) for e in errors] == [(3, 13, f"goal 'buy': {reason}")]


@pytest.mark.parametrize(("raw", "seconds"), [(None, 72 * 3600.0), ("30m", 1800.0),
                                              ("1.5h", 5400.0), ("90s", 90.0)])
def test_windows(raw: object, seconds: float) -> None:
    assert window_seconds(raw, ()) == seconds


def test_windows_are_bounded_and_written_with_their_unit() -> None:
    with pytest.raises(GoalInvalid):
        window_seconds("91d", ())
    # `window: 72` meant as hours would be 72 seconds and count next to nothing
    with pytest.raises(GoalInvalid, match="write it with its unit .72h, 72m or 72s"):
        window_seconds(72, ())
