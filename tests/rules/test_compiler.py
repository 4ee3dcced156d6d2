"""The compiler's contract beyond the golden cases: every error at once, nothing served
from a broken set, fragments read at load."""

from __future__ import annotations

from pathlib import Path

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


def test_reserved_slot_names(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {head: {}, redirect: {}}\n")
    _, errors = check_rules(tmp_path)
    assert len(errors) == 2 and "reserved" in errors[0].reason


def test_slot_tag_qualifies_the_marker(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {hero: {tag: Section}, bad: {tag: '1x'}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert ruleset.slots["hero"].selector == 'section[data-ep-slot="hero"]'
    assert len(errors) == 1 and "tag is an element name" in errors[0].reason
