from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import _config as httpx_config
from httpx._transports import default as httpx_transports

from .compiled import runs_compiled, stale_builds
from .servers import ADMIN_TOKEN as ADMIN_TOKEN
from .servers import RedisServer, Server, start_origin, start_proxy

ROOT = Path(__file__).resolve().parent.parent
PROFILE_KEY = "test-profile-key-0123456789abcdef"


def pytest_configure(config: pytest.Config) -> None:
    """Each httpx client (and each httpx.get) builds the TLS context that verifies against
    certifi's bundle: 30-45 ms of CPU, ~5,000 times a run (servers.start polls with it), on
    the cores the servers under test need. The suite speaks plain HTTP to 127.0.0.1 only,
    so each kind of context is built once (TLS would still be verified as before)."""
    if httpx_transports.__dict__.get("create_ssl_context") is not httpx_config.create_ssl_context:
        raise RuntimeError("httpx's transports no longer build TLS contexts with "
                           "httpx._config.create_ssl_context: update tests/conftest.py")
    httpx_transports.__dict__["create_ssl_context"] = functools.cache(
        httpx_config.create_ssl_context)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The request path runs compiled (setup.py): a source changed since its build would be
    tested as it was built, so the run stops until the build is made again."""
    stale = stale_builds(ROOT)
    if stale:
        pytest.exit(f"changed since they were compiled: {', '.join(stale)}; run `make "
                    "compiled` (or `make test`, which does it first)", returncode=1)


@pytest.fixture(autouse=True)
def _no_patching_compiled_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch of compiled code is silently bypassed by its compiled callers: refused, so
    no test passes without testing what it says (tests/faults.py patches libraries)."""
    setattr_ = monkeypatch.setattr

    def checked(target: Any, *args: Any, **kwargs: Any) -> None:
        if runs_compiled(target):
            raise AssertionError(f"{target!r} runs compiled: patching it changes nothing "
                                 "its compiled callers see")
        setattr_(target, *args, **kwargs)

    monkeypatch.setattr = checked   # type: ignore[method-assign]


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def origin(server_logs: Path) -> Iterator[Server]:
    server = start_origin(server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    """The product as an operator runs it: `edge-personalizer serve` in front of the origin,
    trusting 127.0.0.2 as a proxy (tests connect from 127.0.0.2 to act as a CDN)."""
    server = start_proxy(server_logs, "--origin", origin.url, "--trusted-proxy", "127.0.0.2",
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         "--geo-db", str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"),
                         "--read-timeout", "1.5", "--log-format", "json",
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_EDGE_VENDOR": "cloudflare,cloudfront"})
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port, nothing persisted (Debian's redis-server; a test
    that needs it fails without it)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
