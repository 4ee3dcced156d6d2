"""Redirects between rules that go round in a circle are found when rules load."""

from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules

SLOTS = "slots: {hero: {}}\nrules:\n"


def redirect(name: str, to: str, when: str = "", priority: int = 0) -> str:
    return (f"  - name: {name}\n    priority: {priority}\n"
            + (f"    when: {when}\n" if when else "") + f"    then: {{redirect: {to}}}\n")


def test_a_circle_of_two_rules_is_an_error(tmp_path: Path) -> None:
    # issue 18, bug 3: /landing/a -> /landing/b -> /landing/a
    (tmp_path / "r.yaml").write_text(
        SLOTS + redirect("to-b", "/landing/b", "{request.path: /landing/a}")
        + redirect("to-a", "/landing/a", "{request.path: /landing/b}"))
    _, errors = check_rules(tmp_path)
    assert len(errors) == 1 and errors[0].line == 6
    assert ("rule 'to-b': redirects go round in a circle: to-b (to /landing/b) -> to-a "
            "(to /landing/a) -> to-b") in str(errors[0])


def test_a_longer_circle_through_prefixes_is_found(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        SLOTS + redirect("one", "/b/x", "{request.path: {prefix: /a}}")
        + redirect("two", "/c", "{request.path: {prefix: /b/}, referral.medium: social}")
        + redirect("three", "/a/y", "{any: [{request.path: /c}, {request.path: /d}]}"))
    _, errors = check_rules(tmp_path)
    assert len(errors) == 1 and "one (to /b/x) -> two (to /c) -> three (to /a/y)" in str(
        errors[0])


def test_redirects_that_end_somewhere_are_fine(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        SLOTS + redirect("to-b", "/b", "{request.path: /a}")
        + redirect("to-c", "/c", "{request.path: /b}")
        + redirect("away", "https://other.example/a", "{request.path: /c}")
        + redirect("not-b", "/a", "{not: {request.path: {prefix: /b}}, geo.country: SE}"))
    assert check_rules(tmp_path)[1] == []


def test_a_rule_that_holds_on_its_own_target_shadows_lower_ones(tmp_path: Path) -> None:
    # everyone from facebook goes to /fb; on /fb that rule wins the redirect and the
    # server never sends a redirect to where one is, so `back` never runs for them
    (tmp_path / "r.yaml").write_text(
        SLOTS + redirect("fb", "/fb", "{referral.source: facebook}", priority=5)
        + redirect("back", "/", "{request.path: /fb}"))
    assert check_rules(tmp_path)[1] == []
    # ranked the other way round, a facebook visitor would go round: / -> /fb -> /
    (tmp_path / "r.yaml").write_text(
        SLOTS + redirect("fb", "/fb", "{referral.source: facebook}")
        + redirect("back", "/", "{request.path: /fb}", priority=5))
    assert "circle" in check_rules(tmp_path)[1][0].reason
