"""An HTTP/1.1 response head from an ASGI start message: checked, framed, as bytes.

`response_head` checks the headers as one block (names are tokens; no CR, LF or other
control character inside a line, which would let a value split the response) and works
out the body's framing: the app's Content-Length, chunked encoding when there is none, or
— to an HTTP/1.0 client — the end of the connection. Names go out as the app wrote them
(ASGI apps write them lower-case); the framing headers are found whatever their case.
"""

from __future__ import annotations

import http
from collections.abc import Iterable, Sequence

# What may be in a header name (a token), and in a header line besides its CR LF: every
# byte but the control characters, HT excepted. Checked with bytes.translate, which
# deletes them: what is left must be nothing, or the CR LF between the lines.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE = bytes([9, *range(32, 127), *range(128, 256)])
_CRLF = b"\r\n"
_NO_BODY_STATUS = frozenset((204, 304))


def status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: status_line(status) for status in range(100, 600)}


def plain_response(status: int, text: str, *, close: bool) -> bytes:
    """A whole short text response, for what the server answers itself."""
    body = text.encode()
    return (STATUS_LINES[status] + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\n" % len(body)
            + (b"connection: close\r\n" if close else b"") + b"\r\n" + body)


# The head's bytes; whether the connection may carry another request after it; whether
# the body goes out chunked; the body's length as the head announces it (None: unknown).
# A plain tuple: built once a response, on the hot path.
ResponseHead = tuple[bytes, bool, bool, "int | None"]


def response_head(status: int, headers: Iterable[Sequence[bytes]], keep_alive: bool,
                  head_only: bool, http_version: str) -> ResponseHead:
    """The head for `status` and the app's `headers`; ValueError for a header that may
    not go out. `keep_alive`: what the request allows; `head_only`: a HEAD request."""
    if type(headers) is not list:
        headers = list(headers)
    block = b"\r\n".join(map(b": ".join, headers))
    names = [name for name, _ in headers]
    joined = b"".join(names)
    if (joined.translate(None, _TOKEN) or b"" in names
            or block.translate(None, _VALUE) != _CRLF * (len(headers) - 1)):
        raise ValueError("Invalid HTTP header name or value.")
    if not joined.islower():
        names = [name.lower() for name in names]
    length = (int(headers[names.index(b"content-length")][1])
              if b"content-length" in names else None)
    chunked = (b"transfer-encoding" in names and headers[
        names.index(b"transfer-encoding")][1].strip().lower() == b"chunked")
    extra = b""
    if b"connection" in names and b"close" in [
            token.strip() for token in headers[names.index(b"connection")][1].lower().split(b",")]:
        keep_alive = False
    elif not keep_alive:
        extra = b"connection: close\r\n"
    bodiless = head_only or status in _NO_BODY_STATUS or status < 200
    if chunked or bodiless or length is not None:
        pass
    elif http_version == "1.0":
        # No chunked framing in HTTP/1.0: the body ends with the connection.
        if keep_alive:
            extra = b"connection: close\r\n"
        keep_alive = False
    else:
        chunked = True
        extra += b"transfer-encoding: chunked\r\n"
    data = b"".join((STATUS_LINES.get(status) or status_line(status), block,
                     _CRLF if block else b"", extra, _CRLF))
    chunked = chunked and not bodiless
    return data, keep_alive, chunked, None if bodiless or chunked else length
