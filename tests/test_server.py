"""`serve --workers N`: several processes behind one port, settings passed to each."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge_personalizer.server import CoalescingTransport, tune_allocator, uvicorn_options
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
    assert options["loop"] == "uvloop"
    assert issubclass(options["http"], HttpToolsProtocol)


class Recorder:
    """A real socket transport that notes each call reaching it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.calls: list[tuple[str, int]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", len(data)))
        self.transport.write(data)

    def writelines(self, lines: list[bytes]) -> None:
        self.calls.append(("writelines", sum(map(len, lines))))
        self.transport.writelines(lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def test_writes_of_one_loop_turn_leave_together() -> None:
    async def scenario() -> tuple[list[tuple[str, int]], bytes]:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
        recorder = Recorder(transport)
        coalescing = CoalescingTransport(recorder, loop)   # type: ignore[arg-type]
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        coalescing.write(b"5\r\nhello\r\n")
        coalescing.write(b"0\r\n\r\n")
        assert recorder.calls == []            # nothing leaves before the turn ends
        await asyncio.sleep(0)
        coalescing.write(b"x" * 70000)        # a large write does not wait
        assert recorder.calls[-1] == ("write", 70000)
        coalescing.write(b"tail")
        coalescing.close()                    # closing sends what is pending first
        received = b""
        right.setblocking(False)
        for _ in range(300):   # at most ~3 s
            if len(received) >= 34 + 70000 + 4:
                break
            try:
                received += right.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        right.close()
        return recorder.calls, received

    calls, received = asyncio.run(scenario())
    assert calls == [("writelines", 34), ("write", 70000), ("write", 4)]
    assert received.startswith(b"HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n0\r\n\r\nxxx")
    assert received.endswith(b"xtail")


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
    faults = {}
    for mode in ("default", "tuned"):
        done = subprocess.run([sys.executable, "-c", _BURSTS, mode], capture_output=True,
                              text=True, check=True, env={**os.environ, "PYTHONPATH": "."})
        faults[mode] = float(done.stdout)
    assert faults["default"] > 5 and faults["tuned"] < faults["default"] / 4, faults


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
