from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.errors import RuleError
from edge_personalizer.rules.book import RuleBook


def test_invalid_reload_keeps_the_last_good_set(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: a\n")
    book = RuleBook(tmp_path)
    good = book.current
    rules.write_text("rules: [\n")
    assert book.reload() is False
    assert book.current is good
    assert book.last_error is not None and "rules.yaml:2" in book.last_error
    rules.write_text("rules:\n  - name: a\n  - name: b\n")
    assert book.reload() is True
    assert book.current.rule_count == 2 and book.last_error is None


def test_invalid_rules_at_startup_fail_fast(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: {\n")
    with pytest.raises(RuleError, match="bad.yaml"):
        RuleBook(tmp_path)
