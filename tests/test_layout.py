"""Tests mirror the package: every module has its test file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edge_personalizer"


def test_every_module_has_a_test_file() -> None:
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.name in ("__init__.py", "__main__.py"):
            continue
        relative = module.relative_to(PACKAGE)
        expected = ROOT / "tests" / relative.parent / f"test_{relative.name}"
        if not expected.exists():
            missing.append(str(expected.relative_to(ROOT)))
    assert missing == []
