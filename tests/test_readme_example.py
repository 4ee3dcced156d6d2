"""The README's examples run as written: "Inside a Python site" through a real server, and
the `explain` of "Who is the visitor?"."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .servers import Server, free_port, start

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Server]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Inside a Python site"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "mysite.py").write_text(code.group(1))
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    port = free_port()
    server = start([sys.executable, "-m", "uvicorn", "mysite:app", "--port", str(port),
                    "--app-dir", str(tmp_path)], port, tmp_path / "site.log",
                   ready_path="/__ep/health/live",
                   env={"EP_PROFILE_KEYS": "k" * 32, "EP_PROFILE_COOKIE_SECURE": "false",
                        "EP_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    yield server
    server.stop()


def test_the_readme_example_personalizes_the_site_as_the_proxy_would(example: Server) -> None:
    with httpx.Client(base_url=example.url, headers={"user-agent": BROWSER,
                                                    "accept": "text/html"}) as visitor:
        first = visitor.get("/")
        assert first.status_code == 200 and "data-ep-slot" in first.text
        assert "ep_profile" in visitor.cookies                  # the profile cookie is kept
        facebook = visitor.get("/", headers={"referer": "https://l.facebook.com/"})
        assert "Hello" not in facebook.text                     # the demo rules' Facebook hero
        assert visitor.get("/__ep/nothing").status_code == 404  # /__ep/ is ours


def test_the_readme_s_explain_shows_the_demo_rule_it_is_written_for() -> None:
    # It named a newsletter without the campaign the demo's newsletter rule asks for.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Who is the visitor?"):]
    code = re.search(r"```sh\n(.*?)```", section, re.S)
    assert code is not None
    command = shlex.split(code.group(1).replace("\\\n", " ").replace("[--format json]", ""))
    assert command[0] == "edge-personalizer"
    done = subprocess.run([sys.executable, "-m", "edge_personalizer", *command[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert "banner: newsletter-readers (rule newsletter-readers)" in done.stdout, done.stdout
    assert "geo.city: London" in done.stdout and "device.type: mobile" in done.stdout
