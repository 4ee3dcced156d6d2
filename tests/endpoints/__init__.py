"""What the tests of the endpoints share."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..servers import Server, start_proxy


def proxy_on_own_rules(origin: Server, logs: Path, tmp_path: Path) -> tuple[Server, Path]:
    """A server with the admin token and profile key, serving a copy of the tests' rules
    (tmp_path/rules) that the test may edit and reload; and that directory."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "tests" / "data" / "rules", rules)
    return start_proxy(logs, "--origin", origin.url, "--rules", str(rules),
                       env={"EP_ADMIN_TOKEN": ADMIN_TOKEN,
                            "EP_PROFILE_KEYS": PROFILE_KEY}), rules
