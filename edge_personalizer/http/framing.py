"""What an origin's response head says about its body, checked as a proxy must (issue 20).

A head is refused when its status is no HTTP status (below 100), when it is larger than a
proxy keeps (MAX_HEADERS fields, MAX_HEADER_BYTES, a name of more than MAX_NAME_BYTES) or
when its framing headers could let two parsers disagree on where the body ends. A body with
neither Content-Length nor Transfer-Encoding ends with the connection, except where the
answer has no body at all (HEAD, 204, 304).
"""

from __future__ import annotations

from typing import Final

# Header fields as (name, value). Names are lower-case everywhere past the edges: the
# server gives a request's so (granian and uvicorn do, as ASGI recommends), the origin
# clients lower-case a response's as they read it, and PersonalizeMiddleware a site app's.
RawHeaders = list[tuple[bytes, bytes]]

MAX_HEADER_BYTES: Final = 128 * 1024   # of one response's header block
MAX_HEADERS: Final = 500
MAX_NAME_BYTES: Final = 8 * 1024   # of one name (the server refuses to send longer ones)
TOO_LARGE: Final = "origin sent too many or too large headers"


def too_large(headers: RawHeaders, header_bytes: int) -> bool:
    """Whether a head (whole or still arriving) is past what a proxy keeps."""
    return len(headers) > MAX_HEADERS or header_bytes > MAX_HEADER_BYTES


def name_too_long(headers: RawHeaders) -> bool:
    return any(len(name) > MAX_NAME_BYTES for name, _ in headers)


def framing_error(headers: RawHeaders) -> str | None:
    """Why a response head's framing cannot be trusted, or None when it can.

    One Content-Length, or one Transfer-Encoding that is exactly `chunked`, or neither:
    anything else lets two parsers disagree on where the body ends."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            codings.append(value.strip().lower())
    if len(lengths) > 1:
        return "origin sent conflicting lengths (several Content-Length headers)"
    if lengths and codings:
        return "origin sent conflicting lengths (Content-Length with Transfer-Encoding)"
    if lengths and not lengths[0].isdigit():
        return f"origin sent an invalid Content-Length {lengths[0][:40]!r}"
    if codings and codings != [b"chunked"]:
        return f"origin sent an unsupported Transfer-Encoding {b', '.join(codings)[:60]!r}"
    return None


def status_error(status: int) -> str | None:
    """Why a response's status cannot be passed on, or None when it can: a status is three
    digits from 100 (below that, no client knows what it means, and the server cannot
    send it)."""
    return None if status >= 100 else f"origin sent an invalid status {status:03d}"


def head_error(status: int, headers: RawHeaders, header_bytes: int) -> str | None:
    """Why a complete response head is refused, or None when it is taken."""
    problem = status_error(status)
    if problem is not None:
        return problem
    if too_large(headers, header_bytes) or name_too_long(headers):
        return TOO_LARGE
    return framing_error(headers)


def parsed_head_error(status: int, headers: RawHeaders) -> str | None:
    """head_error for a head another parser read whole (its size counted here; the
    connection counts it as it arrives)."""
    return head_error(status, headers, sum(len(name) + len(value) + 4
                                           for name, value in headers))


def ends_at_close(head_request: bool, status: int, headers: RawHeaders) -> bool:
    """Whether the answer's body is delimited by the end of the connection."""
    if head_request or status in (204, 304):
        return False
    names = {name for name, _ in headers}
    return b"content-length" not in names and b"transfer-encoding" not in names
