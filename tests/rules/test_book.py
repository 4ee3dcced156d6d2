from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.errors import RuleError
from edge_personalizer.rules.book import RuleBook

SLOTS = "slots:\n  hero: {}\n"
RULE = "  - name: {name}\n    then: {{hero: '<b>{name}</b>'}}\n"


def write_rules(directory: Path, *names: str, extra: str = "") -> None:
    text = SLOTS + "rules:\n" + "".join(RULE.format(name=n) for n in names) + extra
    (directory / "rules.yaml").write_text(text)


def test_invalid_reload_keeps_the_last_good_set(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    outcomes: list[bool] = []
    book = RuleBook(tmp_path, on_reload=outcomes.append)
    good = book.current
    (tmp_path / "rules.yaml").write_text(SLOTS + "rules:\n  - name: a\n    then: {heor: x}\n")
    assert book.reload() is False
    assert book.current is good
    assert book.last_error is not None and "rules.yaml:5:12" in book.last_error
    assert "did you mean 'hero'" in book.last_error
    write_rules(tmp_path, "a", "b")
    assert book.reload() is True
    assert [r.name for r in book.current.rules] == ["a", "b"] and book.last_error is None
    assert outcomes == [False, True]


def test_changes_on_disk_are_noticed(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    assert not book.changed_on_disk()
    write_rules(tmp_path, "a", "b")
    assert book.changed_on_disk()
    book.reload()
    assert not book.changed_on_disk()


def test_invalid_rules_at_startup_fail_fast(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: {\n")
    with pytest.raises(RuleError, match="bad.yaml"):
        RuleBook(tmp_path)
