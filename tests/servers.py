"""Real servers for the tests: processes on 127.0.0.1, started and stopped by fixtures."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ADMIN_TOKEN = "test-admin-token"   # the suite's, the proxies' unless a test turns admin off
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server process; `url` is where it listens, `log` what it printed."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the server printed so far. Its lines leave through a writer thread of its
        own (a warning at once, the rest within 0.2 s): a running server's log is read
        once that has passed."""
        if self.process.poll() is None:
            time.sleep(0.3)
        return self.log_path.read_text(errors="replace")

    def health(self, timeout: float = 5.0) -> httpx.Response:
        """/__ep/health with its details: as the operator asks, with the admin token."""
        token = self.env.get("EP_ADMIN_TOKEN")
        return httpx.get(f"{self.url}/__ep/health", timeout=timeout,
                         headers={"authorization": f"Bearer {token}"} if token else {})

    def serve_rules(self, path: Path, text: str) -> None:
        """Writes `text` to the rule file `path` and waits until this proxy serves it."""
        before = self.health().json()["rules"]["version"]
        path.write_text(text)
        deadline = time.monotonic() + 10
        while self.health().json()["rules"]["version"] == before:
            assert time.monotonic() < deadline, "the edited rules were never served"
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """The worker processes the server started (granian logs each one it spawns)."""
        return [int(pid) for pid in re.findall(r"Spawning worker-\d+ with PID: (\d+)",
                                               self.log())]

    def listening_workers(self) -> int:
        """How many times a worker has started serving (granian logs it once its socket
        listens; read from the text log format), the replaced ones included."""
        return len(re.findall(r"Started worker-\d+$", self.log(), re.MULTILINE))

    def peak_rss_kib(self) -> int:
        """The highest peak resident memory of the server and its workers (the workers
        answer the requests)."""
        peaks = []
        for pid in (self.process.pid, *self.worker_pids()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue   # a worker replaced since
            peaks += [int(line.split()[1]) for line in status.splitlines()
                      if line.startswith("VmHWM:")]
        if len(peaks) < 2:
            raise RuntimeError("no worker's VmHWM to read")
        return max(peaks)

    def stop(self) -> None:
        """SIGINT, then SIGTERM (a process started with SIGINT ignored never sees the
        first), then SIGKILL: a stop takes seconds at most, not a test's budget."""
        for stop_signal, grace in ((signal.SIGINT, 3), (signal.SIGTERM, 7)):
            if self.process.poll() is not None:
                return
            self.process.send_signal(stop_signal)
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        self.process.kill()
        self.process.wait()


def start(args: Sequence[str], port: int, log_path: Path, *, ready_path: str = "/",
          env: dict[str, str] | None = None, timeout: float = 20.0,
          workers: int = 1) -> Server:
    """Start `args` and wait until it answers HTTP on `port` and its `workers` all listen.
    (It answers once one does: a test that kills that one before the others listen would
    find nothing listening.)"""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if not k.startswith("EP_")} | (env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(list(args), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env=full_env)
    server = Server(process, port, log_path, env or {})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args} exited with {process.returncode}:\n{server.log()}")
        try:
            httpx.get(server.url + ready_path, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if workers == 1 or server.listening_workers() >= workers:
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{args} did not answer on port {port}:\n{server.log()}")


def start_origin(tmp: Path) -> Server:
    port = free_port()
    return start([sys.executable, "-m", "tests.origin_app", str(port)], port,
                 tmp / f"origin-{port}.log", ready_path="/status/200")


def start_proxy(tmp: Path, *flags: str, env: dict[str, str] | None = None,
                timeout: float = 20.0, admin: bool = True) -> Server:
    port = free_port()
    # Each proxy counts into a store of its own unless the test names one, and has an
    # admin token (as an operator's would) unless the test turns admin off.
    env = {"EP_DATA_DIR": str(tmp / f"data-{port}"),
           **({"EP_ADMIN_TOKEN": ADMIN_TOKEN} if admin else {}), **(env or {})}
    workers = int(flags[flags.index("--workers") + 1]) if "--workers" in flags else 1
    return start([sys.executable, "-m", "edge_personalizer", "serve", "--port", str(port),
                  *flags], port, tmp / f"proxy-{port}.log", ready_path="/__ep/health/live",
                 env=env, timeout=timeout, workers=workers)


class RedisServer:
    """One redis-server process; `stop`, `start` (same port, empty) and `pause`/`resume`
    (SIGSTOP/SIGCONT: connections are accepted by the kernel but never answered)."""

    def __init__(self, workdir: Path) -> None:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(executable).exists():
            pytest.fail("redis-server is not installed (apt-get install redis-server, "
                        "or make system-deps)")
        self.executable = executable
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited:\n"
                                   + (self.workdir / "redis.log").read_text())
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)   # a paused server cannot exit
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
