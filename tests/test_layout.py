"""Tests mirror the package: every module has its test file."""

from __future__ import annotations

import ast
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


# What each part of the package may import of the others: the request's way points one
# way (http <- proxy <- personalize -> classify, rules, rewrite, learn). Imports made
# only for type checking do not count. observability imports nothing of the others: the
# stages that log what a client wrote escape it as its log lines do.
ALLOWED = {
    "errors": set(),
    "config": {"errors", "http"},
    "http": {"errors"},
    "classify": {"errors"},
    "rules": {"errors", "classify"},
    "rewrite": {"errors"},
    "learn": {"errors", "classify", "rules"},
    "proxy": {"errors", "http", "observability"},
    "observability": {"errors"},
    "personalize": {"errors", "classify", "rules", "rewrite", "learn", "proxy",
                    "observability"},
    "endpoints": {"errors", "classify", "rules", "learn", "proxy", "http", "personalize",
                  "observability"},
}


def _part(module: Path) -> str:
    relative = module.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_parts(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(child) for child in ast.walk(node)}
    depth = len(module.relative_to(PACKAGE).parts)   # 1 at the top, 2 in a part...
    parts = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level == depth and node.module:              # the package's top
                parts.add(node.module.split(".")[0])
            elif node.level == depth and not node.module:
                parts |= {alias.name for alias in node.names}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names]
            for name in names:
                if name.startswith("edge_personalizer."):
                    parts.add(name.split(".")[1])
    return parts


def test_imports_point_along_the_request_s_way() -> None:
    wrong = []
    for module in sorted(PACKAGE.rglob("*.py")):
        part = _part(module)
        allowed = ALLOWED.get(part)
        if allowed is None:
            continue   # app, cli, demo, report: the wiring sees every part
        for imported in sorted(_imported_parts(module) - allowed - {part}):
            wrong.append(f"{module.relative_to(PACKAGE)} imports {imported}")
    assert wrong == []


def test_every_part_says_what_comes_in_and_goes_out() -> None:
    for part in ALLOWED:
        init = PACKAGE / part / "__init__.py"
        if init.exists():
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            lines = [line for line in doc.splitlines() if line.strip()]
            assert 3 <= len(lines) <= 6, f"{part}/__init__.py needs its docstring"


def test_modules_and_classes_stay_readable_in_a_sitting() -> None:
    # A module over 400 lines or a class over 200 does more than one job: split it.
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        tree = ast.parse(text)
        too_long += [f"{path.relative_to(PACKAGE)}: class {node.name}, "
                     f"{node.end_lineno - node.lineno + 1} lines"
                     for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                     and node.end_lineno and node.end_lineno - node.lineno + 1 > 200]
    assert not too_long


# What makes module-level state: a mutable container built when the module loads (tables
# are frozenset, tuple or MappingProxyType), or a function that remembers its answers
# (functools' caches): either is shared by every app of the process.
_MUTABLE_CALLS = frozenset({"dict", "list", "set", "bytearray", "defaultdict", "OrderedDict",
                            "deque", "Counter", "LRU"})
_CACHES = frozenset({"cache", "lru_cache", "cached_function"})


def _called_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _module_state(tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == \
                ["__all__"]:
            continue   # what the module exports: read by tools, never changed
        if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp,
                              ast.SetComp)) or (isinstance(value, ast.Call)
                                                and _called_name(value) in _MUTABLE_CALLS):
            found.append(f"line {node.lineno}: a container built at load")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"line {node.lineno}: {node.name} remembers its answers"
                      for decorator in node.decorator_list
                      if _called_name(decorator) in _CACHES]
    return found


def test_no_module_keeps_state_of_its_own() -> None:
    """Caches are objects the app owns (and bounds); module-level ones would be shared by
    every app in the process, and by every test."""
    found = [f"{module.relative_to(PACKAGE)} {what}"
             for module in sorted(PACKAGE.rglob("*.py"))
             for what in _module_state(ast.parse(module.read_text()))]
    assert found == []


def test_module_state_is_recognised() -> None:
    tree = ast.parse("import functools\n__all__ = []\nSEEN = {}\nNAMES: list[str] = []\n"
                     "KNOWN = LRU(10)\nFIXED = frozenset({1})\n"
                     "@functools.lru_cache(maxsize=8)\ndef f(x): return x\n"
                     "@cache\ndef g(x): return x\n")
    assert _module_state(tree) == [
        "line 3: a container built at load", "line 4: a container built at load",
        "line 5: a container built at load", "line 8: f remembers its answers",
        "line 10: g remembers its answers"]
