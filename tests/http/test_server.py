"""`serve --workers N`: several processes behind one port, settings passed to each."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.protocol import HttpProtocol
from edge_personalizer.server import tune_allocator, uvicorn_options
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


def test_idle_client_connections_close_after_the_keep_alive_timeout(
        origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--keep-alive-timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 204 ")
            answered = time.monotonic()
            assert sock.recv(65536) == b""   # the server closed the idle connection ...
            assert 0.8 <= time.monotonic() - answered < 3   # ... after about a second
    finally:
        server.stop()


def test_server_reads_forwarding_headers_itself() -> None:
    options = uvicorn_options(load_settings({}, origin_url="http://x"))
    assert options["proxy_headers"] is False
    assert options["access_log"] is False
    assert options["loop"] == "uvloop"
    assert options["timeout_keep_alive"] == 5.0
    assert options["http"].func is HttpProtocol
    assert options["http"].keywords == {"max_head_bytes": 2 * 32768 + 4096}


_BURSTS = """
import resource, sys
from edge_personalizer.server import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator()
def burst():   # bodies alive at once under load, then freed together
    bodies = [bytes([n % 256]) * 100_000 for n in range(8)]
    del bodies
for _ in range(3):
    burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    burst()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 800)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_page_bodies_are_kept_instead_of_faulted_in_again() -> None:
    # glibc's defaults give freed 100 KB bodies back to the kernel, and the next ones are
    # faulted in page by page (the kit's 100 KB page: ~22 faults a request, a third of
    # the throughput).
    # Whether glibc's defaults trim depends on the heap's layout, which differs from one
    # start to the next (now and then an allocation above the bodies keeps the top from
    # being trimmed): the default is shown faulting in the worst of three starts.
    def faults(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", _BURSTS, mode], capture_output=True,
                              text=True, check=True, env={**os.environ, "PYTHONPATH": "."})
        return float(done.stdout)

    default = max(faults("default") for _ in range(3))
    tuned = faults("tuned")
    assert default > 5 and tuned < default / 4, (default, tuned)


def test_every_worker_tunes_its_allocator(origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--log-level", "debug")
    try:
        httpx.get(server.url + "/page")
    finally:
        server.stop()
    tuned = {line for line in server.log().splitlines() if "malloc keeps" in line}
    assert len(tuned) == 2, server.log()[-2000:]


def test_the_allocator_is_left_alone_when_the_operator_tuned_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not tune_allocator()
