"""The access log: one line a request, JSON on request, no cookies, no full IPs."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from edge_personalizer.logs import JsonFormatter, mask_ip

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
    time.sleep(0.1)
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
