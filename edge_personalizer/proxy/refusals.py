"""The proxy's own answers when a request is not (or no longer) forwarded: a refusal that
ends the connection, a body refused half-way, an origin that fails (502, 504) or is busy
(503 with Retry-After), a WebSocket the origin would not take."""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from starlette.types import Message, Scope, Send

from ..errors import (
    RequestRejected,
    UpstreamBusy,
    UpstreamError,
    UpstreamInvalid,
    UpstreamRefused,
    UpstreamTimeout,
)
from ..observability.logs import escaped
from .pages import send_error_page
from .request_body import RequestBody

if TYPE_CHECKING:
    from .origin import ProxyObserver

logger = logging.getLogger(__name__)

# Refusals after which the connection closes, as nginx closes it: the request may be framed
# otherwise than a proxy in front believes, so nothing more is read from that connection.
CLOSING: Final = frozenset({400, 408, 413, 414, 431, 501})
# What a visitor reads when the origin fails, by the kind counted in ep_origin_errors
_FAILURE_MESSAGES: Final = MappingProxyType({
    "timeout": "The site's server did not answer in time. Please try again in a moment.",
    "unreachable": "The site's server could not be reached. Please try again in a moment.",
    "invalid": "The site's server sent an answer that cannot be passed on. "
               "Please try again in a moment.",
})
_RETRY_AFTER: Final = b"5"   # seconds, on our 503s: a pool or the long-lived cap frees up fast


async def refuse_request(exc: RequestRejected, scope: Scope, send: Send) -> None:
    """The answer to a request refused by its head alone."""
    logger.info("rejected %s: %s", requested(scope), exc)
    await send_error_page(closing(send) if exc.status in CLOSING else send, exc.status,
                          str(exc), scope["headers"], head=scope["method"] == "HEAD")


async def request_failed(exc: RequestRejected | UpstreamError, body: RequestBody | None,
                         scope: Scope, send: Send, observer: ProxyObserver) -> None:
    """The answer when the origin's request failed before its answer came: the body's own
    refusal (413, 408), a body the server ended (400), else the origin's failure."""
    # The HTTP client may wrap what the body stream raised: ask the stream itself.
    rejected = ((body.rejected if body is not None else None)
                or (exc if isinstance(exc, RequestRejected) else None))
    if rejected is not None:
        # What is left of the body is never read: the connection ends with the answer.
        logger.info("rejected %s: %s", requested(scope), rejected)
        await send_error_page(closing(send), rejected.status, str(rejected), scope["headers"])
    elif body is not None and body.client_gone:
        # The server ends a body it cannot frame (a bad chunk size, a bare LF) as if the
        # client had left: 400, as nginx answers; to a client really gone, the answer goes
        # nowhere.
        logger.info("request body of %s broke off (malformed, or the client went away)",
                    requested(scope))
        await send_error_page(closing(send), 400, "the request body was malformed or cut "
                              "short", scope["headers"])
    else:
        await origin_failed(exc, scope, send, observer)   # type: ignore[arg-type]


async def origin_failed(exc: UpstreamError, scope: Scope, send: Send,
                        observer: ProxyObserver) -> None:
    if isinstance(exc, UpstreamBusy):
        await busy(exc, "pool", scope, send, observer)
        return
    timed_out = isinstance(exc, UpstreamTimeout)
    kind = ("timeout" if timed_out else
            "invalid" if isinstance(exc, UpstreamInvalid) else "unreachable")
    observer.origin_failed(kind)
    status = 504 if timed_out else 502
    logger.warning("origin error for %s -> %d: %s", requested(scope), status, exc)
    await send_error_page(send, status, _FAILURE_MESSAGES[kind], scope["headers"],
                          head=scope["method"] == "HEAD")


async def busy(exc: UpstreamBusy, reason: str, scope: Scope, send: Send,
               observer: ProxyObserver, *, close: bool = False) -> None:
    """A 503 with Retry-After; `close`: the connection too (a request body left unread
    would otherwise be read as the next request)."""
    observer.origin_busy(reason)
    logger.warning("origin busy for %s -> 503: %s", requested(scope), exc)
    await send_error_page(
        with_headers(send, [(b"retry-after", _RETRY_AFTER),
                            *([(b"connection", b"close")] if close else [])]), 503,
        "The site is very busy right now. Please try again in a moment.",
        scope["headers"], head=scope["method"] == "HEAD")


async def refuse_websocket(exc: Exception, scope: Scope, send: Send,
                           observer: ProxyObserver) -> None:
    if isinstance(exc, (RequestRejected, UpstreamRefused)):
        status = exc.status   # the visitor's request, or the origin's answer to it
    else:
        status = 504 if isinstance(exc, UpstreamTimeout) else 502
        observer.origin_failed("timeout" if status == 504 else "unreachable")
    logger.warning("WebSocket %s refused with %d: %s", escaped(scope["path"]), status, exc)
    if "websocket.http.response" in scope.get("extensions", {}):
        await send_error_page(_as_websocket_response(send), status, str(exc),
                              scope["headers"])
    else:
        await send({"type": "websocket.close", "code": 1011})


def requested(scope: Scope) -> str:
    """The request's method and path as a log message shows them: escaped as the access
    line's are (a client's %0a would begin a forged line, %1b reach the terminal)."""
    return f"{escaped(scope['method'])} {escaped(scope['path'])}"


def with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)
    return wrapped


def closing(send: Send) -> Send:
    """`send`, ending the connection with the answer (granian honours the header)."""
    return with_headers(send, [(b"connection", b"close")])


def _as_websocket_response(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})
    return wrapped
