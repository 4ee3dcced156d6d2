"""response_head: the checks and the framing of a response head."""

from __future__ import annotations

import pytest

from edge_personalizer.response_head import ResponseHead, plain_response, response_head


def head(status: int = 200, headers: list[tuple[bytes, bytes]] | list[list[bytes]] | None = None,
         *,
         keep_alive: bool = True, head_only: bool = False,
         http_version: str = "1.1") -> ResponseHead:
    return response_head(status, headers if headers is not None else [], keep_alive,
                         head_only, http_version)


def test_headers_go_out_as_written_after_the_status_line() -> None:
    result = head(200, [(b"content-type", b"text/html"), (b"Content-Length", b"5")])
    assert result == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nContent-Length: 5\r\n\r\n",
        True, False, 5)


@pytest.mark.parametrize("value", [b"a\r\nset-cookie: x=1", b"a\nb", b"a\rb", b"a\x00b",
                                   b"a\x1fb", b"a\x7fb"])
def test_a_value_that_could_split_the_response_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="Invalid HTTP header"):
        head(200, [(b"x-ok", b"fine"), (b"x-evil", value)])


@pytest.mark.parametrize("name", [b"", b"x y", b"x:y", b"x\r\ny", b"caf\xc3\xa9"])
def test_a_name_that_is_not_a_token_is_refused(name: bytes) -> None:
    with pytest.raises(ValueError, match="Invalid HTTP header"):
        head(200, [(name, b"v")])


def test_tabs_and_non_ascii_bytes_may_be_in_values() -> None:
    assert b"\r\nx-a: one\ttwo \xe9\r\n" in head(200, [(b"x-a", b"one\ttwo \xe9")])[0]


def test_without_a_length_the_body_is_chunked_or_ends_with_the_connection() -> None:
    data, keep_alive, chunked, length = head(200, [(b"content-type", b"text/html")])
    assert chunked and keep_alive and length is None
    assert data.endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert head(200, [], keep_alive=False, http_version="1.0") == (
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", False, False, None)


def test_no_body_no_framing() -> None:
    for data, _, chunked, length in (head(204), head(304, [(b"content-length", b"99")]),
                                     head(200, [(b"content-length", b"99")], head_only=True)):
        assert not chunked and length is None
        assert b"transfer-encoding" not in data


def test_the_apps_own_framing_headers_count_whatever_their_case() -> None:
    data, keep_alive, _, length = head(200, [[b"Connection", b"Keep-Alive, Close"],
                                             [b"Content-Length", b"2"]])
    assert not keep_alive and length == 2
    assert data.lower().count(b"connection") == 1   # not a second one
    data, _, chunked, length = head(200, [(b"Transfer-Encoding", b"chunked")])
    assert chunked and length is None
    assert data.lower().count(b"transfer-encoding") == 1


def test_a_connection_that_must_close_says_so() -> None:
    assert head(200, [(b"content-length", b"0")], keep_alive=False)[0].endswith(
        b"content-length: 0\r\nconnection: close\r\n\r\n")


def test_plain_response() -> None:
    assert plain_response(431, "too large", close=True) == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
        b"charset=utf-8\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large")
