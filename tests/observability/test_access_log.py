"""The access log: one line a request, JSON on request, no cookies, no full IPs."""

from __future__ import annotations

import io
import json
import logging
import re
import time

import httpx
import pytest

from edge_personalizer.observability.access_log import AccessLog, IpMasker
from edge_personalizer.observability.logs import BatchingStreamHandler, configure_logging
from edge_personalizer.observability.metrics import Metrics

from ..servers import Server


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
    assert IpMasker().mask(ip) == masked


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_access_lines_written_directly_match_log_records(fmt: str) -> None:
    configure_logging(fmt=fmt, level="info")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, BatchingStreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    log = AccessLog(None, metrics=Metrics())   # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "/über", "client": ("203.0.113.9", 1),
             "headers": [(b"user-agent", b"Probe/1")]}
    log.log(scope, 200, 1234, 0.0125, complete=True)          # the direct path
    handler.addFilter(lambda record: True)                     # now through logging
    log.log(scope, 200, 1234, 0.0125, complete=True)
    handler.flush()
    direct, recorded = stream.getvalue().splitlines()
    stamp = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")   # may differ by a second
    if fmt == "json":
        first, second = json.loads(direct), json.loads(recorded)
        rfc3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")
        assert rfc3339.fullmatch(first.pop("time")) and rfc3339.fullmatch(second.pop("time"))
        assert first == second and first["path"] == "/über"
    else:
        assert stamp.match(direct) and stamp.match(recorded) and direct[19] == ","
        assert direct[23:] == recorded[23:]
    handler.filters.clear()
    configure_logging(fmt="text", level="warning")
