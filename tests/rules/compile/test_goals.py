from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules


def test_each_goal_mistake_is_reported_where_it_was_written(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "goals:\n  buy: {when: {request.pth: /thanks}}\n  '-x': {}\n  ok: {window: 3y}\n")
    (tmp_path / "b.yaml").write_text(
        "slots: {hero: {}}\ngoals: [buy]\nexperiments:\n"
        "  - {name: e, slot: hero, goals: [buy], variants: {a: {}, b: {html: x}}}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.source.name, e.line) for e in errors] == [
        ("a.yaml", 2), ("a.yaml", 3), ("a.yaml", 4), ("b.yaml", 2), ("b.yaml", 4)]
    assert "goal 'buy': unknown field 'request.pth'" in str(errors[0])
    assert "unknown goal 'buy'" in errors[4].reason   # it did not compile


def test_a_goal_defined_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("goals: {buy: {}}\n")
    (tmp_path / "b.yaml").write_text("goals: {buy: {}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert len(errors) == 1 and "defined twice" in errors[0].reason
    assert list(ruleset.goals) == ["buy"]
