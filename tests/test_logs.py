"""The access log: one line a request, JSON on request, no cookies, no full IPs."""

from __future__ import annotations

import io
import json
import logging
import re
import time

import httpx
import pytest

from edge_personalizer.logs import BatchingStreamHandler, JsonFormatter, mask_ip

from .servers import Server


def access_lines(server: Server) -> list[dict[str, object]]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["logger"] == "edge_personalizer.access":
                lines.append(entry)
    return lines


def test_one_json_line_per_request_without_cookie_or_query(proxy: Server) -> None:
    httpx.get(proxy.url + "/echo/logged?email=someone@example.com",
              headers={"cookie": "session=topsecret", "user-agent": "LogProbe/1.0"})
    deadline = time.monotonic() + 3   # access lines are written in batches (~0.2 s)
    entries: list[dict[str, object]] = []
    while not entries and time.monotonic() < deadline:
        time.sleep(0.05)
        entries = [e for e in access_lines(proxy) if e["path"] == "/echo/logged"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["method"] == "GET" and entry["status"] == 200
    assert entry["client"] == "127.0.0.0"
    assert entry["user_agent"] == "LogProbe/1.0"
    assert isinstance(entry["duration_ms"], float)
    assert "topsecret" not in proxy.log()
    assert "someone@example.com" not in proxy.log()


@pytest.mark.parametrize(("ip", "masked"), [
    ("203.0.113.77", "203.0.113.0"),
    ("2001:db8:1234:5678::1", "2001:db8:1234::"),
    (None, "-"),
    ("not-an-ip", "-"),
])
def test_mask_ip_cuts_the_host_part(ip: str | None, masked: str) -> None:
    assert mask_ip(ip) == masked


def test_json_formatter_writes_plain_messages_too() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello you" and entry["level"] == "warning"


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
    logger.warning("trouble")                            # out at once, after the others
    assert stream.getvalue() == "INFO first\nINFO second\nWARNING trouble\n"
    logger.info("later")
    deadline = time.monotonic() + 2
    while "later" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stream.getvalue().endswith("INFO later\n")   # the background flush
    logger.info("last")
    handler.close()                                      # closing writes what waits
    assert stream.getvalue().endswith("INFO last\n")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_access_lines_written_directly_match_log_records(fmt: str) -> None:
    from edge_personalizer.classify.client_ip import TrustedProxies
    from edge_personalizer.logs import AccessLog, configure_logging
    from edge_personalizer.metrics import Metrics

    configure_logging(fmt=fmt, level="info")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, BatchingStreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    log = AccessLog(None, metrics=Metrics(), trusted=TrustedProxies())   # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "/über", "client": ("203.0.113.9", 1),
             "headers": [(b"user-agent", b"Probe/1")]}
    log._log(scope, 200, 1234, 0.0125, complete=True)          # the direct path
    handler.addFilter(lambda record: True)                     # now through logging
    log._log(scope, 200, 1234, 0.0125, complete=True)
    handler.flush()
    direct, recorded = stream.getvalue().splitlines()
    stamp = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")   # may differ by a second
    if fmt == "json":
        first, second = json.loads(direct), json.loads(recorded)
        assert stamp.fullmatch(first.pop("time")) and stamp.fullmatch(second.pop("time"))
        assert first == second and first["path"] == "/über"
    else:
        assert stamp.match(direct) and stamp.match(recorded) and direct[19] == ","
        assert direct[23:] == recorded[23:]
    handler.filters.clear()
    configure_logging(fmt="text", level="warning")
