"""Serving: workers start from the server's own check of the app."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import httpx

from .http.test_server import worker_pids
from .servers import Server, start_proxy

ROOT = Path(__file__).resolve().parent.parent


def test_workers_start_from_the_rules_their_server_compiled(origin: Server,
                                                            tmp_path: Path) -> None:
    # The server compiles the rules once, to check them before it listens; its forked
    # workers start from that. A worker started later (one replaced after a crash) compiles
    # only what changed since.
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    files = len(list(rules.rglob("*.yaml")))
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        "--workers", "2", env={"EP_RULES_WATCH_INTERVAL": "0"})
    try:
        started = re.findall(r"forwarding to .*", proxy.log())
        assert len(started) == 2
        assert all(f"{files} files, 0 read, 0 compiled)" in line for line in started)
        edited = sorted(rules.glob("*.yaml"))[0]
        edited.write_text(edited.read_text() + "\n# edited after the server started\n")
        os.kill(worker_pids(proxy)[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(re.findall(r"forwarding to .*", proxy.log())) < 3:
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.2)
        replaced = re.findall(r"forwarding to .*", proxy.log())[2]
        assert f"{files} files, 1 read, 1 compiled)" in replaced
        for _ in range(10):
            assert httpx.get(proxy.url + "/page/home", timeout=10).status_code == 200
    finally:
        proxy.stop()
