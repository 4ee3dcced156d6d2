"""`serve --workers N`: several processes behind one port, settings passed to each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.server import uvicorn_options
from edge_personalizer.settings import load_settings

from .servers import Server, start_proxy


@pytest.fixture(scope="module")
def workers_proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--trusted-proxy", "127.0.0.2")
    yield server
    server.stop()


def test_workers_serve_with_the_same_settings(workers_proxy: Server) -> None:
    for _ in range(20):
        assert httpx.get(workers_proxy.url + "/status/204").status_code == 204
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        data = client.get(workers_proxy.url + "/echo",
                          headers={"x-forwarded-for": "203.0.113.4"}).json()
    assert ["x-real-ip", "203.0.113.4"] in data["headers"]
    assert workers_proxy.log().count("Application startup complete") == 2


def test_server_reads_forwarding_headers_itself() -> None:
    options = uvicorn_options(load_settings({}, origin_url="http://x"))
    assert options["proxy_headers"] is False
    assert options["access_log"] is False
    assert (options["loop"], options["http"]) == ("uvloop", "httptools")
