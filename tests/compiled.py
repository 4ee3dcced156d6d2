"""What the build compiled (setup.py's COMPILED, beside their sources), and which of those
builds a change of source has made stale."""

from __future__ import annotations

import ast
import importlib.machinery
import sys
from pathlib import Path
from types import ModuleType

# What a compiled module's file name ends with after its module name, on this interpreter
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def compiled_sources(root: Path) -> list[str]:
    """setup.py's COMPILED list, read without running setup.py."""
    tree = ast.parse((root / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "COMPILED"
                for target in node.targets):
            paths = ast.literal_eval(node.value)
            assert isinstance(paths, list)
            return [str(path) for path in paths]
    raise LookupError("setup.py has no COMPILED list")


def stale_builds(root: Path) -> list[str]:
    """Sources newer than their compiled module, and compiled modules whose source is gone
    or no longer listed (each would shadow its source when imported)."""
    listed = set(compiled_sources(root))
    stale = []
    for built in sorted((root / "edge_personalizer").rglob("*.so")):
        name = built.name
        suffix = next((s for s in SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            continue
        if name[:-len(suffix)].endswith("__mypyc"):
            continue   # the library the compiled modules share
        source = built.with_name(name[:-len(suffix)] + ".py")
        relative = source.relative_to(root).as_posix()
        if (relative not in listed or not source.exists()
                or source.stat().st_mtime > built.stat().st_mtime):
            stale.append(relative)
    return stale


def runs_compiled(target: object) -> bool:
    """Whether `target` (a module, or a class) is the package's compiled code: compiled
    callers never look a patched attribute up, so a test patching it tests nothing."""
    module = target if isinstance(target, ModuleType) else (
        sys.modules.get(target.__module__) if isinstance(target, type) else None)
    if module is None or not module.__name__.startswith("edge_personalizer"):
        return False
    return (getattr(module, "__file__", None) or "").endswith(SUFFIXES)
