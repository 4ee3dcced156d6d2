"""WebSocket upgrades proxied both ways, through the real server."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from edge_personalizer.proxy.websocket import MAX_MESSAGE_BYTES

from ..servers import Server


def ws_url(server: Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_messages_flow_both_ways(proxy: Server) -> None:
    with connect(ws_url(proxy, "/ws/echo")) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"echo:\x00\x01binary"


def test_subprotocol_chosen_by_origin_reaches_client(proxy: Server) -> None:
    with connect(ws_url(proxy, "/ws/echo"), subprotocols=["chat.v2", "chat.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v2"


def test_origin_sees_forwarding_headers_and_cookies(proxy: Server) -> None:
    with connect(ws_url(proxy, "/ws/echo"), additional_headers={"cookie": "sid=abc"}) as ws:
        ws.send("whoami")
        headers = json.loads(ws.recv(timeout=5))
    assert headers["cookie"] == "sid=abc"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"


def test_origin_push_and_close_code_reach_client(proxy: Server) -> None:
    with connect(ws_url(proxy, "/ws/push")) as ws:
        assert [ws.recv(timeout=5) for _ in range(3)] == ["push 0", "push 1", "push 2"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1000


def test_origin_close_with_custom_code(proxy: Server) -> None:
    with connect(ws_url(proxy, "/ws/echo")) as ws:
        ws.send("close-please")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4001
        assert ws.close_reason == "asked to"


def test_a_message_from_the_origin_past_the_limit_closes_the_socket(proxy: Server) -> None:
    # Held whole before it is passed on: unbounded, one message took a worker's memory.
    with connect(ws_url(proxy, "/ws/echo"), max_size=None) as ws:
        ws.send(f"bytes:{MAX_MESSAGE_BYTES}")
        assert len(ws.recv(timeout=10)) == MAX_MESSAGE_BYTES   # the limit itself passes
        ws.send(f"bytes:{MAX_MESSAGE_BYTES + 1}")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1009   # message too big
    with connect(ws_url(proxy, "/ws/echo")) as ws:   # the worker serves on
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"


def test_a_visitor_that_vanishes_closes_the_origin_s_side_quietly(proxy: Server) -> None:
    # No close frame (a reset): granian reports 1006, which may not be sent on the wire;
    # the origin is told 1001 (going away), and nothing is logged as a failure.
    logged = len(proxy.log())
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            key = base64.b64encode(os.urandom(16))
            sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                         b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert sock.recv(1000).startswith(b"HTTP/1.1 101")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(1)
    assert "Application callable raised" not in proxy.log()[logged:]
    with connect(ws_url(proxy, "/ws/echo")) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"


def test_origin_refusing_upgrade_is_answered_with_its_status(proxy: Server,
                                                             origin: Server) -> None:
    # A 403 or 404 of the origin's own is no outage: a 502 read as one at the CDN.
    with pytest.raises(InvalidStatus) as direct:
        connect(ws_url(origin, "/no-such-socket"), open_timeout=5)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(proxy, "/no-such-socket"), open_timeout=5)
    assert 400 <= direct.value.response.status_code < 500
    assert refused.value.response.status_code == direct.value.response.status_code


def test_a_refused_socket_s_path_is_logged_escaped_in_json(proxy: Server) -> None:
    # Its line wrote the path raw: %0a and %1b came back from the JSON as a newline and
    # an escape for a terminal, where the text log and the access line show \x0a.
    logged = len(proxy.log())
    with pytest.raises(InvalidStatus):
        connect(ws_url(proxy, "/no-such-socket%0aFAKE%1b[2J%22"), open_timeout=5)
    lines = [line for line in proxy.log()[logged:].splitlines() if "FAKE" in line]
    refused = [entry for entry in map(json.loads, lines) if "message" in entry]
    assert [entry["message"].split(" refused")[0] for entry in refused] == [
        "WebSocket /no-such-socket\\x0aFAKE\\x1b[2J\\x22"], lines
