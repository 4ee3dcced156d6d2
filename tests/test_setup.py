"""The build: the request path runs compiled, and the build and its list agree."""

from __future__ import annotations

import importlib
import os
import zlib
from pathlib import Path

import pytest

from .compiled import SUFFIXES, compiled_sources, runs_compiled, stale_builds

ROOT = Path(__file__).resolve().parent.parent


def test_every_listed_module_runs_compiled() -> None:
    # `make test` compiles first: a module that fell back to plain Python (a build error,
    # a listed file mypyc skipped) would run slower without a word.
    for source in compiled_sources(ROOT):
        assert (ROOT / source).exists(), source
        module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None and module.__file__.endswith(SUFFIXES), source


def test_a_changed_or_unlisted_source_is_a_stale_build(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text('COMPILED = ["edge_personalizer/a.py"]\n')
    package = tmp_path / "edge_personalizer"
    package.mkdir()
    for name in ("a", "b", "compiled__mypyc"):
        (package / f"{name}.py").write_text("")
        (package / f"{name}{SUFFIXES[0]}").write_bytes(b"")
    assert stale_builds(tmp_path) == ["edge_personalizer/b.py"]     # built, then unlisted
    built = package / f"a{SUFFIXES[0]}"
    os.utime(built, (built.stat().st_atime, built.stat().st_mtime - 10))
    assert stale_builds(tmp_path) == ["edge_personalizer/a.py", "edge_personalizer/b.py"]


def test_compiled_code_is_told_from_interpreted() -> None:
    from edge_personalizer.rewrite import slot_search
    from edge_personalizer.rules import book

    assert runs_compiled(slot_search) and runs_compiled(slot_search.SlotSearch)
    assert not runs_compiled(book) and not runs_compiled(book.RuleBook)
    assert not runs_compiled(zlib) and not runs_compiled(Path)


def test_a_patch_of_compiled_code_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_personalizer.rewrite.slot_search import SlotSearch

    with pytest.raises(AssertionError, match="runs compiled"):
        monkeypatch.setattr(SlotSearch, "marker_in", lambda *args: True)
