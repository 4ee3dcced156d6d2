"""Rewrites the settings table in README.md from the declarations in config/settings.py."""

from __future__ import annotations

from pathlib import Path

from edge_personalizer.config.settings import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> None:
    lines = README.read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| setting | flag |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = settings_table().rstrip("\n").split("\n")
    README.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
