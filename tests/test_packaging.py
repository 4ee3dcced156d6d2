"""What building the package needs: pyproject.toml's build requirements."""

from __future__ import annotations

import re
import tomllib

from .conftest import ROOT


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
