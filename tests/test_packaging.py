"""The installable package: what building it needs (pyproject.toml's build requirements),
and the data files it carries (what `pip install .` and the Docker image get, unlike the
editable install the tests run from)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from .conftest import ROOT


def test_wheel_contains_the_data_the_code_reads(tmp_path: Path) -> None:
    # A clean copy: a build/ directory left by an earlier build would hide missing files.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", ".git", "__pycache__", ".*_cache", "*.so"))
    # Built without compiling the request path (test_setup.py checks the compiled build):
    # the files a wheel carries are the same either way. In this environment, which has
    # the build requirements already (an isolated build would fetch them all again).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(source)], check=True,
                   capture_output=True, timeout=300, env=os.environ | {"EP_PURE_PYTHON": "1"})
    wheel = next((tmp_path / "dist").glob("edge_personalizer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("edge_personalizer/classify/data/bots.json",
                   "edge_personalizer/classify/data/referrers.json",
                   "edge_personalizer/classify/data/bots.LICENSE.txt",
                   "edge_personalizer/demo/site/layout.html",
                   "edge_personalizer/demo/site/static/shop.css",
                   "edge_personalizer/py.typed"):
        assert needed in names, needed


def _names(requirements: list[str]) -> dict[str, str]:
    """Requirement -> its project name, lower-case (extras and versions aside)."""
    return {req: re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_the_build_has_every_dependency_the_compiled_modules_are_type_checked_against() -> None:
    # mypyc compiles the request path from its types: in pip's isolated build environment
    # the type check sees only the build requirements, and failed (109 errors) without the
    # dependencies, so `pip install .` and the Dockerfile's `pip wheel .` broke.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = project["build-system"]["requires"]
    assert set(project["project"]["dependencies"]) <= set(build)
    dev = {name: req for req, name in _names(project["project"]["optional-dependencies"]
                                             ["dev"]).items()}
    built = {name: req for req, name in _names(build).items()}
    for tool in ("mypy", "types-pyyaml"):   # the same type check as the suite's
        assert built[tool] == dev[tool], tool
