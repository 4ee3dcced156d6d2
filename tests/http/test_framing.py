"""What a response head says about its body: the limits and the framing a proxy trusts, and
when the body ends with the connection."""

from __future__ import annotations

import pytest

from edge_personalizer.http.framing import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_NAME_BYTES,
    TOO_LARGE,
    ends_at_close,
    framing_error,
    head_error,
    status_error,
)


@pytest.mark.parametrize(("headers", "problem"), [
    ([(b"content-length", b"5")], None),
    ([(b"transfer-encoding", b"Chunked ")], None),
    ([(b"content-type", b"text/html")], None),
    ([(b"content-length", b"5"), (b"content-length", b"5")], "several Content-Length"),
    ([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")], "with Transfer-Encoding"),
    ([(b"content-length", b"5, 5")], "invalid Content-Length"),
    ([(b"content-length", b"")], "invalid Content-Length"),
    ([(b"transfer-encoding", b"gzip, chunked")], "unsupported Transfer-Encoding"),
    ([(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")],
     "unsupported Transfer-Encoding"),
])
def test_framing_error(headers: list[tuple[bytes, bytes]], problem: str | None) -> None:
    found = framing_error(headers)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_head_past_the_limits_is_refused_before_its_framing_is_read() -> None:
    conflicting = [(b"content-length", b"5"), (b"content-length", b"6")]
    assert head_error(200, [(b"X", b"y")] * MAX_HEADERS, 1000) is None
    assert head_error(200, [(b"X", b"y")] * (MAX_HEADERS + 1), 1000) == TOO_LARGE
    assert head_error(200, conflicting, MAX_HEADER_BYTES + 1) == TOO_LARGE
    assert "several Content-Length" in (head_error(200, conflicting, 100) or "")
    assert head_error(200, [(b"n" * MAX_NAME_BYTES, b"1")], 100) is None
    assert head_error(200, [(b"n" * (MAX_NAME_BYTES + 1), b"1")], 100) == TOO_LARGE


@pytest.mark.parametrize(("status", "problem"), [
    (0, "origin sent an invalid status 000"), (99, "origin sent an invalid status 099"),
    (100, None), (200, None), (599, None), (999, None),
])
def test_a_status_below_100_is_refused_first(status: int, problem: str | None) -> None:
    assert status_error(status) == problem
    conflicting = [(b"content-length", b"5"), (b"content-length", b"6")]
    assert head_error(status, conflicting, 100) == (problem or head_error(200, conflicting, 100))


@pytest.mark.parametrize(("head", "status", "headers", "at_close"), [
    (False, 200, [(b"content-type", b"text/html")], True),
    (False, 200, [(b"content-length", b"5")], False),
    (False, 200, [(b"transfer-encoding", b"chunked")], False),
    (True, 200, [], False),     # an answer to HEAD has no body
    (False, 204, [], False),
    (False, 304, [], False),
])
def test_which_bodies_end_with_the_connection(head: bool, status: int,
                                              headers: list[tuple[bytes, bytes]],
                                              at_close: bool) -> None:
    assert ends_at_close(head, status, headers) is at_close
