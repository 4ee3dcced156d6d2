"""Rule files -> compiled rules: what is taken, and each mistake where it is written."""

from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules


def told(directory: Path, text: str) -> list[tuple[int | None, str]]:
    """The mistakes `validate` tells of a rules directory holding one file, `text`: the
    line of each, and what it says after the file and line."""
    (directory / "r.yaml").write_text(text)
    _, errors = check_rules(directory)
    return [(error.line, error.reason) for error in errors]
