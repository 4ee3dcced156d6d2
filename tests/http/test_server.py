"""The server: granian runs the product (`edge-personalizer serve`, in front of the real test
origin) and, for what the product never does on purpose (raise, split a header, stream
16 MiB to a client that does not read), the small app in asgi_site.py. HTTP/1.1 is checked
on raw sockets where a client library would hide it."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as websocket

from edge_personalizer.http.server import (
    ServerOptions,
    granian_server,
    migrates_queued_connections,
    tune_allocator,
)

from ..servers import Server, free_port, start, start_proxy

ROOT = Path(__file__).resolve().parents[2]
PAGE = {"accept": "text/html"}
BROWSER = {**PAGE, "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                 "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}


def open_socket(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


class Response:
    """One response read off a socket, framing and all."""

    def __init__(self, reader: io.BufferedReader, *, to_head: bool = False) -> None:
        self.head = b""
        while not self.head.endswith(b"\r\n\r\n"):
            line = reader.readline()
            if not line:
                raise ConnectionError(f"closed in the head: {self.head!r}")
            self.head += line
        self.status = int(self.head.split(b" ", 2)[1])
        self.headers: dict[str, str] = {}
        for text in self.head.decode("latin-1").split("\r\n")[1:]:
            if text:
                name, _, value = text.partition(":")
                self.headers.setdefault(name.lower(), value.strip())
        self.chunks: list[bytes] = []
        if to_head or self.status in (204, 304) or self.status < 200:
            self.body = b""
        elif "content-length" in self.headers:
            self.body = reader.read(int(self.headers["content-length"]))
        elif self.headers.get("transfer-encoding") == "chunked":
            while size := int(reader.readline().strip(), 16):
                self.chunks.append(reader.read(size))
                reader.readline()
            reader.readline()
            self.body = b"".join(self.chunks)
        else:
            self.body = reader.read()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def closed_after(sock: socket.socket, timeout: float = 5.0) -> float:
    """Seconds until the server closes `sock` (nothing else may come)."""
    started = time.monotonic()
    sock.settimeout(timeout)
    assert sock.recv(65536) == b""
    return time.monotonic() - started


# --- the product on granian ------------------------------------------------------------

def test_a_kept_alive_connection_serves_requests_in_turn(proxy: Server) -> None:
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        answers = []
        for path in ("/status/204", "/echo/a?x=1", "/page/b"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answers.append(Response(stream))
    assert [answer.status for answer in answers] == [204, 200, 200]
    assert b'"raw_path":"/echo/a"' in answers[1].body
    assert b"<title>/page/b</title>" in answers[2].body
    assert not any("connection" in answer.headers for answer in answers)


def test_pipelined_requests_are_answered_in_order(proxy: Server) -> None:
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /slow-headers?delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /echo/second HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        first, second, third = Response(stream), Response(stream), Response(stream)
    assert first.body == b"late\n"
    assert b'"raw_path":"/echo/second"' in second.body
    assert b'"method":"POST"' in third.body and b'"body_length":5' in third.body


def test_a_body_without_length_is_chunked_on_http11_and_ends_the_connection_on_http10(
        proxy: Server) -> None:
    # The origin sends a first part, then the rest 0.2 s later, without a length.
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /slow-body?delay=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
        response = Response(stream)
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.chunks == [b"first-chunk\n", b"rest\n"]
        sock.sendall(b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Response(stream).status == 204   # and the connection went on
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /slow-body?delay=0.2 HTTP/1.0\r\n\r\n")
        response = Response(stream)
    assert response.head.startswith(b"HTTP/1.0 200 ")
    assert "transfer-encoding" not in response.headers
    assert response.body == b"first-chunk\nrest\n"   # read up to the close


def test_head_and_not_modified_carry_no_body(proxy: Server) -> None:
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"HEAD /download?size=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = Response(stream, to_head=True)
        assert head.status == 200 and head.headers["content-length"] == "1000"
        sock.sendall(b"GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Response(stream).status == 304
        # Had a body followed either answer, it would stand where this one's head is.
        sock.sendall(b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Response(stream).head.startswith(b"HTTP/1.1 204 ")


def test_a_chunked_upload_streams_in_after_100_continue(proxy: Server) -> None:
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        assert Response(stream).head == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"3\r\nabc\r\n")
        time.sleep(0.05)
        sock.sendall(b"2\r\nde\r\n0\r\n\r\n")
        response = Response(stream)
    assert response.status == 200
    assert httpx.Response(200, content=response.body).json() == {
        "received": 5,
        "sha256": "36bbe50ed96841d10443bcb670d6554f0a34b761be67ec9c4a8ad2c0c44ca42c"}


def test_a_malformed_request_is_answered_400_and_closed(proxy: Server) -> None:
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        response = Response(stream)
        assert response.status == 400
        assert closed_after(sock) < 1


def test_request_heads_past_twice_the_header_limit_are_refused_by_the_server(
        proxy: Server, origin: Server) -> None:
    # 40 KiB of headers: over max_header_bytes (32 KiB), the app answers 431 itself ...
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"x-f%d: %s\r\n" % (n, b"a" * 1000) for n in range(40))
                     + b"\r\n")
        assert Response(stream).status == 431
    # ... and 200 KiB, sent without end, never reach it: the server refuses them and closes.
    with open_socket(proxy) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        try:
            for n in range(200):
                sock.sendall(b"x-f%d: %s\r\n" % (n, b"a" * 1000))
        except (ConnectionResetError, BrokenPipeError):
            pass   # refused before all was sent
        response = Response(stream)
        assert response.status == 431
        assert response.headers["connection"] == "close"


def test_websockets_pass_through_several_workers(workers_proxy: Server) -> None:
    for _ in range(4):
        with websocket(f"ws://127.0.0.1:{workers_proxy.port}/ws/echo") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo:hello"


def test_the_admin_endpoints_answer_from_every_worker(workers_proxy: Server) -> None:
    for _ in range(6):
        health = workers_proxy.health()
        assert health.status_code == 200 and health.json()["status"] == "ready"
        assert httpx.get(workers_proxy.url + "/__ep/health/live").json() == {"status": "alive"}


def test_the_server_adds_no_header_of_its_own_when_the_app_has_it(proxy: Server) -> None:
    # granian cannot be told to leave out `server` (README): it sends `server: granian`
    # only when the answer has none, so the origin's own header comes through alone ...
    proxied = httpx.get(proxy.url + "/page/x", headers=PAGE)
    assert proxied.headers.get_list("server") == ["uvicorn"]
    assert len(proxied.headers.get_list("date")) == 1
    # ... and answers of our own (the admin endpoints, error pages) name granian.
    assert httpx.get(proxy.url + "/__ep/health/live").headers["server"] == "granian"


def test_requests_are_logged_once_by_the_app_and_not_by_the_server(
        origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--log-format", "json")
    try:
        httpx.get(server.url + "/page/logged", headers=PAGE)
        time.sleep(0.5)   # the access log writes in batches
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "/page/logged" in line]
    assert len(lines) == 1 and '"logger": "edge_personalizer.access"' in lines[0], lines
    assert '"logger": "_granian"' in server.log()   # granian's own lines in our format


# --- keep-alive, slow clients, stopping --------------------------------------------------

@pytest.fixture(scope="module")
def short_keep_alive(origin: Server, server_logs: Path) -> Iterator[Server]:
    server = start_proxy(server_logs, "--origin", origin.url, "--keep-alive-timeout", "1")
    yield server
    server.stop()


def test_idle_connections_close_after_the_keep_alive_timeout(short_keep_alive: Server) -> None:
    with open_socket(short_keep_alive) as sock, sock.makefile("rb") as stream:
        started = time.monotonic()
        # An answer that takes longer than the timeout is not cut off ...
        sock.sendall(b"GET /slow-headers?delay=1.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Response(stream).body == b"late\n"
        assert time.monotonic() - started >= 1.3
        # ... and the connection closes about a second after it.
        assert 0.8 <= closed_after(sock) < 2


def test_a_request_head_sent_slowly_is_closed_at_the_keep_alive_timeout(
        short_keep_alive: Server) -> None:
    with open_socket(short_keep_alive) as sock:
        sock.sendall(b"GET /page/x HTTP/1.1\r\nHost: x\r\n")   # and nothing more
        assert 0.8 <= closed_after(sock) < 2


def test_a_new_idle_connection_and_a_trickling_head_are_closed_at_the_keep_alive_timeout(
        short_keep_alive: Server) -> None:
    # The head timer runs from the connection's start, whatever comes meanwhile: a client
    # that never writes, or writes a header line every 0.3 s, is closed after a second.
    with open_socket(short_keep_alive) as sock:
        assert 0.8 <= closed_after(sock) < 2
    with open_socket(short_keep_alive) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /page/x HTTP/1.1\r\n")
        try:
            while time.monotonic() - started < 5:
                time.sleep(0.3)
                sock.sendall(b"X-A: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 2


def test_stopping_finishes_the_answer_under_way_and_closes_idle_connections(
        origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url)
    with open_socket(server) as idle, idle.makefile("rb") as idle_stream, \
            open_socket(server) as busy, busy.makefile("rb") as busy_stream:
        idle.sendall(b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Response(idle_stream).status == 204
        busy.sendall(b"GET /slow-headers?delay=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)   # as a container runtime stops it
        assert closed_after(idle) < 0.5   # idle: closed at once
        response = Response(busy_stream)
        assert response.status == 200 and response.body == b"late\n"
        assert closed_after(busy) < 1
    assert server.process.wait(timeout=10) == 0


# --- several workers ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def workers_proxy(origin: Server, server_logs: Path) -> Iterator[Server]:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--trusted-proxy", "127.0.0.2")
    yield server
    server.stop()


def worker_pids(server: Server) -> list[int]:
    return server.worker_pids()


def test_workers_serve_with_the_same_settings(workers_proxy: Server) -> None:
    for _ in range(20):
        assert httpx.get(workers_proxy.url + "/status/204").status_code == 204
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        data = client.get(workers_proxy.url + "/echo",
                          headers={"x-forwarded-for": "203.0.113.4"}).json()
    assert ["x-real-ip", "203.0.113.4"] in data["headers"]
    assert len(worker_pids(workers_proxy)) == 2
    assert workers_proxy.log().count("forwarding to") == 2   # each worker's lifespan


def test_the_kernel_setting_that_keeps_a_dying_workers_queue_is_read(tmp_path: Path) -> None:
    setting = tmp_path / "tcp_migrate_req"
    setting.write_text("0\n")
    assert migrates_queued_connections(setting) is False
    setting.write_text("1\n")
    assert migrates_queued_connections(setting) is True
    assert migrates_queued_connections(tmp_path / "absent") is None


def test_several_workers_warn_when_a_dying_workers_queue_would_be_refused(
        workers_proxy: Server, proxy: Server) -> None:
    # This host's own setting decides which: the warning says what it is and how to set it.
    warned = "net.ipv4.tcp_migrate_req is 0" in workers_proxy.log()
    assert warned == (migrates_queued_connections() is False)   # (tested above)
    assert "tcp_migrate_req" not in proxy.log()   # one worker: nothing to hand over


COUNTING_RULES = """
slots:
  hero: {}
  banner: {}
rules:
  - name: count
    when: {request.path: {prefix: /slotted/}}
    then:
      banner: {html: "<p>views {{ profile.pageviews }}</p>"}
experiments:
  - name: sticky
    slot: hero
    holdout: 0
    variants:
      one: {weight: 50, html: "<h1>variant one</h1>"}
      two: {weight: 50, html: "<h1>variant two</h1>"}
"""


@pytest.fixture()
def counting_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(COUNTING_RULES)
    return rules


def worker_holding(sock: socket.socket, pids: list[int]) -> int:
    """The worker process holding the server's end of the client socket `sock`."""
    client_port, server_port = sock.getsockname()[1], sock.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{server_port:04X}") and \
                fields[2].endswith(f":{client_port:04X}"):
            target = f"socket:[{fields[9]}]"
            for pid in pids:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    try:
                        if os.readlink(fd) == target:
                            return pid
                    except OSError:
                        continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_every_worker_signs_profiles_with_the_key_the_server_made(
        origin: Server, server_logs: Path, counting_rules: Path) -> None:
    # No EP_PROFILE_KEYS: one key for the whole server, so a visitor's page views count on
    # whichever worker answers, and the experiment keeps their variant.
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--rules", str(counting_rules))
    try:
        assert "several instances serving one site need one shared key" in server.log()
        pids = worker_pids(server)
        cookie = ""
        views: list[int] = []
        workers: list[int] = []
        variants: set[bytes] = set()
        while len(views) < 8 or min(map(workers.count, pids)) < 2:
            assert len(views) < 40, workers
            with open_socket(server) as sock, sock.makefile("rb") as stream:   # a new one
                sock.sendall(f"GET /slotted/x HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
                             f"User-Agent: {BROWSER['user-agent']}\r\n{cookie}\r\n".encode())
                page = Response(stream)
                workers.append(worker_holding(sock, pids))
            value = re.findall(r"^set-cookie: ep_profile=([^;]+)", page.head.decode(), re.M)
            assert value, page.head
            cookie = f"Cookie: ep_profile={value[0]}\r\n"
            views.append(int(re.findall(rb"views (\d+)", page.body)[0]))
            variants.update(re.findall(rb"variant (one|two)", page.body))
        assert views == list(range(1, len(views) + 1)), (views, workers)
        assert len(variants) == 1
    finally:
        server.stop()


def test_a_configured_key_is_used_as_it_is(origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         env={"EP_PROFILE_KEYS": "an-operators-own-key-0123456789"})
    server.stop()
    assert "no profile_keys configured" not in server.log()


def test_sighup_reaches_every_worker_and_a_broken_file_leaves_them_serving(
        origin: Server, server_logs: Path, counting_rules: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2",
                         "--rules", str(counting_rules), env={"EP_RULES_WATCH_INTERVAL": "0"})
    try:
        def banners() -> set[str]:
            return {re.findall(r"<p>(\w+) \d+</p>", httpx.get(
                server.url + "/slotted/x", headers=PAGE).text)[0] for _ in range(10)}

        assert banners() == {"views"}
        (counting_rules / "site.yaml").write_text(COUNTING_RULES.replace("<p>views", "<p>seen"))
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while banners() != {"seen"}:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.2)
        (counting_rules / "site.yaml").write_text("rules: [")   # broken
        server.process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert banners() == {"seen"}   # the last good rules, from both workers
        assert server.process.poll() is None
    finally:
        server.stop()


def test_a_worker_that_dies_is_replaced(origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2")
    try:
        first, _ = worker_pids(server)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while len(worker_pids(server)) < 3 or server.listening_workers() < 3:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.1)
        for _ in range(10):
            assert httpx.get(server.url + "/status/204").status_code == 204
    finally:
        server.stop()


# --- the server itself, with a small app: errors, flow control, lifespan ----------------

def start_site(server_logs: Path, workers: int = 1) -> Server:
    port = free_port()
    return start([sys.executable, "-m", "tests.http.asgi_site", str(port), str(workers)],
                 port, server_logs / f"site-{port}.log", ready_path="/")


@pytest.fixture(scope="module")
def site(server_logs: Path) -> Iterator[Server]:
    server = start_site(server_logs)
    yield server
    server.stop()


def test_an_app_error_is_answered_500(site: Server) -> None:
    with open_socket(site) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Response(stream).status == 500
    assert eventually(lambda: "RuntimeError: the app broke" in site.log())


def test_a_header_that_would_split_the_response_is_refused(site: Server) -> None:
    with open_socket(site) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n")
        response = Response(stream)
    assert response.status == 500
    assert b"stolen" not in response.head + response.body


def test_a_client_that_does_not_read_holds_the_app_back(site: Server) -> None:
    def sent() -> int:
        return int(httpx.get(site.url + "/sent").text)

    already = sent()
    with open_socket(site) as sock:
        sock.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)   # nothing read meanwhile
        waiting = sent() - already
        received = 0
        while received < 16 * 1024 * 1024:
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
    # What the socket buffers and granian's own buffer allow (~4 MiB), not 16 MiB.
    assert 0 < waiting < 8 * 1024 * 1024
    assert sent() - already == 16 * 1024 * 1024


def test_lifespan_starts_and_stops_the_app_in_every_worker(server_logs: Path) -> None:
    server = start_site(server_logs, workers=2)
    # The server answers once one worker is up: stop it only when both have started (a
    # worker still starting when the server is told to stop may be killed instead).
    deadline = time.monotonic() + 20
    while len(re.findall(r"lifespan startup in \d+", server.log())) < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    pids = worker_pids(server)
    # Given time to stop (Server.stop sends SIGTERM after 3 s, SIGKILL after 10): on a
    # loaded machine the log once ended at the first worker's stop, the second's missing.
    # A worker that does not stop within 30 s fails here.
    server.process.send_signal(signal.SIGINT)
    server.process.wait(timeout=30)
    log = server.log()
    for pid in pids:
        assert f"lifespan startup in {pid}" in log
        assert f"lifespan shutdown in {pid}" in log
    assert server.process.returncode == 0


def test_options_map_onto_granian() -> None:
    server = granian_server("x:y", ServerOptions(keep_alive_timeout=2.5, max_head_bytes=70000,
                                                  workers=3, graceful_timeout=7.5))
    assert (server.interface, server.http, server.loop) == ("asgi", "1", "uvloop")
    assert server.workers == 3 and server.websockets and server.factory
    assert server.http1_settings is not None
    assert server.http1_settings.header_read_timeout == 2500
    assert server.http1_settings.max_buffer_size == 70000
    assert server.workers_kill_timeout == 8
    assert not server.log_access


# --- the allocator, in every worker ------------------------------------------------------

_BURSTS = """
import resource, sys
if sys.argv[1] == "tuned":
    from edge_personalizer.http.server import tune_allocator
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
    # faulted in page by page (the kit's 100 KB page: ~35 faults a request in an untuned
    # granian worker). glibc raises its thresholds by itself after some large frees and a
    # busy heap's layout may keep its top from being trimmed, so whether an untuned process
    # faults depends on its history (one of two untuned workers did): the default is shown
    # in a fresh process, which does.
    def faults(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", _BURSTS, mode], capture_output=True,
                              text=True, check=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        return float(done.stdout)

    default = faults("default")
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


def test_workers_stop_when_their_server_is_killed(origin: Server, server_logs: Path) -> None:
    # Orphaned workers went on serving beside a server started anew on the same port.
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "2")
    workers = worker_pids(server)
    try:
        server.process.kill()
        server.process.wait()
        assert eventually(lambda: not any(Path(f"/proc/{pid}").exists()
                                          and "zombie" not in _state(pid) for pid in workers),
                          timeout=10), server.log()[-3000:]
        assert "is gone: worker" in server.log()
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/status/204", timeout=2)
    finally:
        for pid in workers:   # should the test fail: no worker left serving
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0]
    except (OSError, IndexError):
        return "zombie"
