from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules


def test_each_goal_mistake_is_reported_where_it_was_written(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "goals:\n  buy: {when: {request.pth: /thanks}}\n  '-x': {}\n  ok: {window: 3y}\n")
    (tmp_path / "b.yaml").write_text(
        "slots: {hero: {}}\ngoals: [buy]\nexperiments:\n"
        "  - {name: e, slot: hero, goals: [buy], variants: {a: {}, b: {html: x}}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [(e.source.name, e.line) for e in errors] == [
        ("a.yaml", 2), ("a.yaml", 3), ("a.yaml", 4), ("b.yaml", 2)]
    assert "goal 'buy': unknown field 'request.pth'" in str(errors[0])
    # The experiment judged on it is not compiled, and not told the goal is undeclared:
    # the goal's own error says what to fix.
    assert ruleset.experiments == ()


def test_an_experiment_naming_an_undeclared_goal_is_told_so(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "slots: {hero: {}}\ngoals: {buy: {}}\nexperiments:\n"
        "  - {name: e, slot: hero, goals: [by], variants: {a: {}, b: {html: x}}}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.reason) for e in errors] == [
        (4, "experiment 'e': unknown goal 'by'; declare it under goals:; did you mean "
            "'buy'?")]


def test_a_goal_defined_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("goals: {buy: {}}\n")
    (tmp_path / "b.yaml").write_text("goals: {buy: {}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert len(errors) == 1 and "defined twice" in errors[0].reason
    assert list(ruleset.goals) == ["buy"]
    # the first place is the line of the goal's name, not of its first key
    (tmp_path / "a.yaml").write_text("goals:\n  buy:\n    when: {request.path: /thanks}\n")
    _, errors = check_rules(tmp_path)
    assert f"defined twice (first at {tmp_path / 'a.yaml'}:2)" in errors[0].reason


def test_every_mistake_of_a_goal_is_told_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "goals:\n  buy:\n"
        "    when: {request.pth: /thanks}\n"   # 3
        "    status: 999\n"                    # 4
        "    value: {cookie: total}\n"         # 5
        "    window: 72\n"                     # 6
        "    beacon: yes please\n"             # 7
        "    colour: red\n")                   # 8
    ruleset, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [3, 4, 5, 6, 7, 8], errors
    said = [e.reason for e in errors]
    assert "goal 'buy': unknown field 'request.pth'" in said[0]
    assert "status is an HTTP status" in said[1]
    assert "value is {query: <parameter>} or {header: <response header>}" in said[2]
    assert "window 72: write it with its unit" in said[3]
    assert "beacon is true" in said[4]
    assert "unknown key 'colour'; a goal has" in said[5]
    assert "buy" not in ruleset.goals
