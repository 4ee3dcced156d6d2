"""Request limits and origin failures through the real server: clear 4xx and 502/504."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..servers import Server, free_port, start_proxy


@pytest.fixture(scope="module")
def strict_proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    """Limits set through EP_* variables, as an operator would in a container."""
    server = start_proxy(server_logs, "--origin", origin.url, env={
        "EP_MAX_BODY_BYTES": "1048576", "EP_MAX_HEADER_COUNT": "30",
        "EP_MAX_HEADER_BYTES": "4096"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def orphan_proxy(server_logs: Path) -> Iterator[Server]:
    """A proxy whose origin is down: nothing listens on the port."""
    server = start_proxy(server_logs, "--origin", f"http://127.0.0.1:{free_port()}",
                         "--connect-timeout", "1")
    yield server
    server.stop()


def test_body_over_limit_by_content_length_gets_413(strict_proxy: Server) -> None:
    response = httpx.post(f"{strict_proxy.url}/upload", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert "request body too large" in response.text


def test_streamed_body_over_limit_gets_413(strict_proxy: Server) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536

    response = httpx.post(f"{strict_proxy.url}/upload", content=body())
    assert response.status_code == 413


def test_body_within_limit_passes(strict_proxy: Server) -> None:
    response = httpx.post(f"{strict_proxy.url}/upload", content=b"z" * 1000)
    assert response.json()["received"] == 1000


def test_too_many_headers_get_431(strict_proxy: Server) -> None:
    headers = {f"x-h{i}": "1" for i in range(40)}
    response = httpx.get(f"{strict_proxy.url}/echo", headers=headers)
    assert response.status_code == 431
    assert "too many request headers" in response.text


def test_oversized_headers_get_431(strict_proxy: Server) -> None:
    response = httpx.get(f"{strict_proxy.url}/echo", headers={"x-big": "a" * 5000})
    assert response.status_code == 431


def test_overlong_url_gets_414(strict_proxy: Server) -> None:
    response = httpx.get(f"{strict_proxy.url}/echo?q=" + "a" * 5000)
    assert response.status_code == 414


def test_origin_down_gives_502_page_for_browsers(orphan_proxy: Server) -> None:
    response = httpx.get(orphan_proxy.url + "/", headers={"accept": "text/html,*/*"})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "could not be reached" in response.text
    assert "Traceback" not in response.text


def test_origin_down_gives_short_text_to_other_clients(orphan_proxy: Server) -> None:
    response = httpx.get(orphan_proxy.url + "/api", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert response.text.startswith("502 Bad Gateway: ")
    assert response.text.count("\n") == 1


def test_origin_down_is_logged_with_its_cause(orphan_proxy: Server) -> None:
    httpx.get(orphan_proxy.url + "/logged")
    assert "origin error for GET /logged -> 502: origin unreachable: cannot connect to " \
           "127.0.0.1:" in orphan_proxy.log()
    assert "Connection refused" in orphan_proxy.log()


def test_health_reports_unreachable_origin_as_not_ready(orphan_proxy: Server) -> None:
    response = httpx.get(orphan_proxy.url + "/__ep/health")
    assert response.status_code == 503
    assert response.json()["origin"]["reachable"] is False
    assert httpx.get(orphan_proxy.url + "/__ep/health/live").status_code == 200
