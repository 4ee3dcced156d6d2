"""Logging setup: batched lines, text or JSON."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edge_personalizer.observability.logs import (
    BatchingStreamHandler,
    JsonFormatter,
    TextFormatter,
)

from ..servers import ADMIN_TOKEN, ROOT, Server, free_port, start_proxy


def test_json_formatter_writes_plain_messages_too() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello you" and entry["level"] == "warning"


def test_a_text_access_line_says_when_the_answer_was_cut_short() -> None:
    # Only the JSON line had `aborted`: a text log showed a page the origin broke off as
    # "200 1706", like any other.
    fields = {"client": "127.0.0.0", "method": "GET", "path": "/p", "status": 200,
              "bytes": 1706, "duration_ms": 5.95, "user_agent": "curl"}
    line = TextFormatter().access_line(fields)
    assert line.endswith('"GET /p" 200 1706 5.95ms\n')
    assert TextFormatter().access_line({**fields, "aborted": True}).endswith(
        '"GET /p" 200 1706 5.95ms aborted\n')


def test_a_text_message_of_several_lines_continues_indented(origin: Server,
                                                           tmp_path: Path) -> None:
    # A refused reload's reasons came on lines of their own, which a line-based shipper
    # parted from the ERROR line; indented, they join it as a stack trace's lines do.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text("rules: []\n")
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_LOG_FORMAT": "text"})
    try:
        (rules / "broken.yaml").write_text("rules:\n  - name: [not, a, name]\n")
        assert httpx.post(f"{server.url}/__ep/reload", timeout=15, headers={
            "authorization": f"Bearer {server.env['EP_ADMIN_TOKEN']}"}).status_code == 422
    finally:
        server.stop()
    refused = re.search(r"^\S.* ERROR .*:\n((?:  .*\n)+)", server.log(), re.MULTILINE)
    assert refused is not None and f"  {rules / 'broken.yaml'}:2" in refused[1], server.log()
    unindented = [line for line in server.log().splitlines()
                  if line and not line.startswith("  ") and not re.match(r"\d{4}-", line)]
    assert unindented == [], unindented


def test_info_lines_leave_in_batches_and_warnings_at_once() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=0.1)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.batching")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info("first")
    logger.info("second")
    assert stream.getvalue() == ""                       # waiting for the batch
    logger.warning("trouble")                  # out without waiting, after the others
    deadline = time.monotonic() + 5
    while "trouble" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "INFO first\nINFO second\nWARNING trouble\n"
    logger.info("later")
    deadline = time.monotonic() + 2
    while "later" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stream.getvalue().endswith("INFO later\n")   # the background flush
    logger.info("last")
    handler.close()                                      # closing writes what waits
    assert stream.getvalue().endswith("INFO last\n")


def test_a_server_stopped_at_once_has_logged_every_request(origin: Server,
                                                           tmp_path: Path) -> None:
    # Workers end without the interpreter's exit handlers (their process is forked): the
    # access lines still waiting for their batch were lost, 9 of 10 at times.
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--workers", "2")
    try:
        with httpx.Client() as client:
            for n in range(10):
                assert client.get(f"{proxy.url}/page/n{n}").status_code == 200
    finally:
        proxy.process.send_signal(signal.SIGTERM)
        proxy.process.wait(timeout=15)
    logged = re.findall(r'"GET /page/n(\d+)" 200', proxy.log())
    assert sorted(int(n) for n in logged) == list(range(10)), proxy.log()[-2000:]


def access_fields(path: str) -> dict[str, object]:
    return {"client": "127.0.0.0", "method": "GET", "path": path, "status": 200,
            "bytes": 1706, "duration_ms": 5.95, "user_agent": "curl"}


@pytest.mark.parametrize(("path", "shown"), [
    ("/a\n2026-12-06 05:00:00,000 WARNING x: FAKE",
     "/a\\x0a2026-12-06 05:00:00,000 WARNING x: FAKE"),
    ("/a\rb", "/a\\x0db"),
    ("/a\x1b[31mred\x1b]0;title\x07", "/a\\x1b[31mred\\x1b]0;title\\x07"),
    ('/a" 200 0 0.01ms', "/a\\x22 200 0 0.01ms"),
    ("/a\\x0a", "/a\\x5cx0a"),
    ("/a\x85b\u2028c\u202ed", "/a\\x85b\\u2028c\\u202ed"),
    ("/über", "/über"),
])
def test_a_text_access_line_escapes_what_the_client_wrote(path: str, shown: str) -> None:
    # The decoded path was written raw: %0a began a forged line of the log, %1b reached
    # the terminal, %22 closed the quoted field so a made-up status could follow.
    line = TextFormatter().access_line(access_fields(path))
    assert line.endswith(f'"GET {shown}" 200 1706 5.95ms\n')
    assert line.splitlines() == [line[:-1]]


def test_a_text_message_shows_control_characters_escaped() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "rejected %s", (
        "/a\r\x1b[2Jb\u2028c\nd",), None)
    assert TextFormatter().format(record).endswith("rejected /a\\x0d\\x1b[2Jb\\u2028c\n  d")


@pytest.mark.parametrize("text", ["/a\x85b", "/a\u2028b", "/a\u2029b\x1b"])
def test_a_json_line_stays_one_line_for_every_tool(text: str) -> None:
    # U+0085 and U+2028 were written raw: one line to a JSON reader, two to tools that
    # split lines as Python's splitlines() does.
    line = JsonFormatter().access_line(access_fields(text))
    assert line.splitlines() == [line[:-1]] and json.loads(line)["path"] == text
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (text,), None)
    message = JsonFormatter().format(record)
    assert message.splitlines() == [message] and json.loads(message)["message"] == text


def test_a_path_with_a_newline_leaves_one_line_in_the_servers_log(origin: Server,
                                                                  tmp_path: Path) -> None:
    server = start_proxy(tmp_path, "--origin", origin.url, env={"EP_LOG_FORMAT": "text"})
    try:
        forged = "2026-12-06%2005:00:00,000%20WARNING%20edge_personalizer.admin:%20FAKE"
        httpx.get(f"{server.url}/inj1%0a{forged}", timeout=15)
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "FAKE" in line]
    assert len(lines) == 1 and "INFO edge_personalizer.access: " in lines[0], lines
    assert '"GET /inj1\\x0a2026-12-06 05:00:00,000 WARNING' in lines[0]



def test_a_refused_path_leaves_one_line_in_the_servers_log(origin: Server,
                                                          tmp_path: Path) -> None:
    # A refusal's line wrote the path raw: %0a began a line of its own ("  2026-12-06 ...
    # WARNING edge_personalizer.admin: FAKE", a forged line to whoever reads the log),
    # %1b sent the terminal its escapes.
    server = start_proxy(tmp_path, "--origin", origin.url, env={"EP_LOG_FORMAT": "text"})
    forged = ("%0a2026-12-06%2005:00:00,000%20WARNING%20edge_personalizer.admin:%20FAKE"
              "%1b[2J%22")
    try:
        assert httpx.request("TRACE", f"{server.url}/trace{forged}",
                             timeout=15).status_code == 405
        socket_refused = httpx.get(f"{server.url}/socket{forged}", timeout=15, headers={
            "connection": "upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert 400 <= socket_refused.status_code < 500
    finally:
        server.stop()
    refusals = [line for line in server.log().splitlines() if "FAKE" in line
                and "edge_personalizer.access" not in line]
    assert len(refusals) == 2 and all(re.match(r"\d{4}-", line) for line in refusals), \
        server.log()[-2000:]
    assert all("\\x0a2026-12-06 05:00:00,000 WARNING edge_personalizer.admin: FAKE"
               "\\x1b[2J\\x22" in line for line in refusals), refusals

class StalledStream(io.StringIO):
    """A log stream whose reader stopped reading: writes wait until `resume` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.resume = threading.Event()

    def write(self, text: str) -> int:
        self.resume.wait()
        return super().write(text)


def in_thread(work: Callable[[], object], timeout: float = 20) -> bool:
    """Whether `work` finished within `timeout` seconds (run in a thread of its own, which
    stays behind when it hangs)."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def test_a_stalled_stream_never_holds_up_whoever_logs() -> None:
    # Past 64 KiB pending the logging thread (the event loop) wrote itself, under a lock
    # the writer thread also held while blocked: a stalled pipe froze every request.
    stream = StalledStream()
    handler = BatchingStreamHandler(stream, interval=0.05)   # 1 MiB may wait
    handler.setFormatter(TextFormatter())
    line = "x" * 10_000 + "\n"
    logger = logging.getLogger("tests.stalled")
    logger.handlers[:] = [handler]
    logger.propagate = False

    def flood() -> None:
        for _ in range(300):
            handler.write_line(line)
        logger.warning("trouble")

    assert in_thread(flood), "logging waited on the stalled stream"
    assert in_thread(handler.flush), "a flush waited on the stalled stream for good"
    assert handler.dropped > 0   # (about 100 lines fit in what may wait, and the writer
    # may have taken a batch or two before the stream stalled it)
    stream.resume.set()
    deadline = time.monotonic() + 20
    while "log lines dropped" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    told = re.findall(r"WARNING \S+: (\d+) log lines dropped", stream.getvalue())
    assert [int(n) for n in told] == [handler.dropped], stream.getvalue()[-500:]
    handler.write_line("after\n")
    handler.close()
    assert stream.getvalue().endswith("after\n")


def test_a_server_whose_log_nobody_reads_still_answers(origin: Server,
                                                       tmp_path: Path) -> None:
    # A log pipe gone quiet (journald or docker paused) froze the worker after ~1,000
    # requests: pages and /__ep/health/live went unanswered until the pipe was read.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EP_")}
    env |= {"EP_DATA_DIR": str(tmp_path / "data"), "EP_ADMIN_TOKEN": ADMIN_TOKEN,
            "EP_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_personalizer", "serve", "--port", str(port),
         "--origin", origin.url], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env)
    url = f"http://127.0.0.1:{port}"
    read: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while not ready(url):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        with httpx.Client(timeout=20) as client:
            for n in range(600):   # access lines of ~3 KiB: far past the pipe's 64 KiB
                assert client.get(f"{url}/page/{n}/{'x' * 3000}").status_code == 200
            assert client.get(f"{url}/__ep/health/live").status_code == 200
            metrics = client.get(f"{url}/__ep/metrics",
                                 headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
        dropped = re.search(r"^ep_log_lines_dropped_total (\S+)$", metrics, re.MULTILINE)
        assert dropped is not None and float(dropped[1]) > 0, metrics
        pipe = process.stdout
        assert pipe is not None
        reader = threading.Thread(target=lambda: read.append(pipe.read()), daemon=True)
        reader.start()                         # the pipe drains
        httpx.get(f"{url}/page/after", timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    reader.join(20)
    pipe.close()
    log = b"".join(read).decode(errors="replace")
    assert re.search(r"WARNING \S+: \d+ log lines dropped", log), log[-2000:]
    assert '"GET /page/after" 200' in log


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/__ep/health/live", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_line_larger_than_all_that_may_wait_goes_when_nothing_else_waits() -> None:
    # A traceback longer than the bound was always dropped, even with nothing waiting.
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=0.05, max_pending=100)
    handler.write_line("x" * 500 + "\n")
    handler.write_line("y" * 50 + "\n")   # (beside it, past the bound: dropped)
    handler.flush()
    written = stream.getvalue()
    assert written.startswith("x" * 500 + "\n") and "y" * 50 not in written
    assert handler.dropped == 1 and "1 log lines dropped" in written
    handler.close()


def test_a_closed_handler_is_not_started_again_in_a_forked_process() -> None:
    handler = BatchingStreamHandler(io.StringIO(), interval=0.05)
    handler.close()
    handler._writer.join(5)
    assert forked(lambda: not handler._writer.is_alive())


def test_closed_handlers_leave_nothing_behind() -> None:
    # Each handler registered a fork hook of its own, which no close took back: a process
    # setting logging up again and again kept one more each time, run at every fork.
    def opened_and_closed(count: int) -> None:
        for _ in range(count):
            handler = BatchingStreamHandler(io.StringIO(), interval=0.05)
            handler.close()
            handler._writer.join(5)

    opened_and_closed(5)
    gc.collect()
    before = len(gc.get_objects())
    opened_and_closed(300)
    gc.collect()
    assert len(gc.get_objects()) - before < 100, len(gc.get_objects()) - before


def forked(check: Callable[[], bool]) -> bool:
    """What `check` says in a process forked from this one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # (forking with threads)
        pid = os.fork()
    if pid == 0:
        passed = False
        try:
            passed = check()
        finally:
            os._exit(0 if passed else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_a_worker_forked_while_the_log_pipe_is_full_still_logs() -> None:
    # The writer thread wrote with the stream's own write, which holds the stream's buffer
    # lock while a full pipe blocks it: a worker forked then inherited that lock held by a
    # thread it does not have, and its log stayed silent for good.
    read_fd, write_fd = os.pipe()
    stream = open(write_fd, "w", buffering=1, encoding="utf-8")   # as sys.stderr is
    handler = BatchingStreamHandler(stream, interval=0.05, max_pending=200_000,
                                    flush_timeout=10)
    for n in range(40):   # ~400 KB: the writer blocks on the pipe's 64 KiB, the rest waits
        handler.write_line(f"server {n} " + "x" * 10_000 + "\n")
    time.sleep(0.5)
    assert handler.dropped > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # (forking with threads)
        pid = os.fork()
    if pid == 0:   # the worker: its own lines, its own count of lines dropped
        try:
            fresh = handler.dropped == 0
            handler.write_line("from the worker\n")
            handler.flush()
        finally:
            os._exit(0 if fresh else 3)
    read = drain(read_fd, until=b"from the worker\n", timeout=20)
    _, status = os.waitpid(pid, 0)
    handler.close()
    stream.close()
    os.close(read_fd)
    assert b"from the worker\n" in read and os.waitstatus_to_exitcode(status) == 0, \
        (read[-300:], status)


def drain(fd: int, *, until: bytes, timeout: float) -> bytes:
    """What `fd` gives until `until` came, or `timeout` seconds passed."""
    read = b""
    deadline = time.monotonic() + timeout
    while until not in read and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            read += os.read(fd, 1 << 16)
    return read


def test_a_pipe_another_process_made_non_blocking_gets_every_line_whole() -> None:
    # (node and others set O_NONBLOCK on the stderr they share) A pipe taking part of a
    # batch lost the rest of it, and the lines after it were cut.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    stream = open(write_fd, "w", buffering=1, encoding="utf-8")
    handler = BatchingStreamHandler(stream, interval=0.05)
    lines = [f"line {n} {'é' * 5000}\n" for n in range(30)]   # ~300 KB, the pipe takes 64
    for line in lines:
        handler.write_line(line)
    handler.write_line("the end\n")
    read = drain(read_fd, until=b"the end\n", timeout=20)
    handler.close()
    stream.close()
    os.close(read_fd)
    assert read.decode() == "".join(lines) + "the end\n"
