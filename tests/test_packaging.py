"""The installable package carries its data files (what `pip install .` and the Docker
image get, unlike the editable install the tests run from)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_the_data_the_code_reads(tmp_path: Path) -> None:
    # A clean copy: a build/ directory left by an earlier build would hide missing files.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", ".git", "__pycache__", ".*_cache", "*.so"))
    # Built without compiling the request path (test_setup.py checks the compiled build):
    # the files a wheel carries are the same either way.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True,
                   timeout=300, env=os.environ | {"EP_PURE_PYTHON": "1"})
    wheel = next((tmp_path / "dist").glob("edge_personalizer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("edge_personalizer/classify/data/bots.json",
                   "edge_personalizer/classify/data/referrers.json",
                   "edge_personalizer/classify/data/bots.LICENSE.txt",
                   "edge_personalizer/demo/site/layout.html",
                   "edge_personalizer/demo/site/static/shop.css",
                   "edge_personalizer/py.typed"):
        assert needed in names, needed
