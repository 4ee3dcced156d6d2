"""WebSocket relay: the one module that speaks the websockets client library.

The library is imported by the first WebSocket a worker relays: a site without WebSockets
never has it in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import anyio
from starlette.types import Receive, Send

from ..errors import UpstreamError, UpstreamRefused, UpstreamTimeout

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

logger = logging.getLogger(__name__)

_RESERVED_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})
# The largest message taken from the origin, as large as the server takes from a visitor
# (granian: 64 MiB): a message is held whole before it is passed on, so without a bound one
# message could take a worker's memory. A larger one closes the socket with 1009. At most
# one more waits while a slow visitor takes the last (the library's default queue is 16).
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
_TOO_BIG: Final = 1009

# Set by the WebSocket handshake itself; the client library writes its own.
_HANDSHAKE: Final = frozenset({
    b"host", b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol", b"content-length",
})


async def open_upstream(
    url: str, headers: Sequence[tuple[bytes, bytes]], subprotocols: Sequence[str],
    *, connect_timeout: float,
) -> ClientConnection:
    """Open the origin's side of a WebSocket; raises UpstreamError / UpstreamTimeout."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.typing import Subprotocol

    extra = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers
             if k not in _HANDSHAKE]
    try:
        return await connect(
            url, additional_headers=extra,
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            open_timeout=connect_timeout, user_agent_header=None, compression=None,
            max_size=MAX_MESSAGE_BYTES, max_queue=1, ping_interval=None,
        )
    except TimeoutError as exc:
        raise UpstreamTimeout(
            f"origin WebSocket handshake timed out after {connect_timeout}s") from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        message = f"origin refused the WebSocket upgrade with status {status}"
        if 400 <= status < 500:
            raise UpstreamRefused(message, status=status) from exc
        raise UpstreamError(message) from exc
    except (OSError, InvalidHandshake) as exc:
        raise UpstreamError(f"origin WebSocket unreachable: {exc}") from exc


async def relay(upstream: ClientConnection, receive: Receive, send: Send) -> None:
    """Pass messages both ways until either side closes, then close the other."""
    from websockets.exceptions import ConnectionClosed

    async def client_to_origin(scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                # A visitor that vanished (1006: no close frame) is "going away" to the
                # origin: the reserved codes may not be sent on the wire.
                await upstream.close(code=1001 if code in _RESERVED_CLOSE_CODES else code)
                break
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])
        scope.cancel()

    async def origin_to_client(scope: anyio.CancelScope) -> None:
        try:
            async for data in upstream:
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code if upstream.close_code is not None else 1011
        sent = upstream.protocol.close_sent
        if sent is not None and sent.code == _TOO_BIG:   # the origin's message was too big
            code = _TOO_BIG
        if code in _RESERVED_CLOSE_CODES:   # may not be sent on the wire
            code = 1000 if code == 1005 else 1011
        await send({"type": "websocket.close", "code": code,
                    "reason": upstream.close_reason or ""})
        scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client_to_origin, tg.cancel_scope)
            tg.start_soon(origin_to_client, tg.cancel_scope)
    finally:
        await upstream.close()
