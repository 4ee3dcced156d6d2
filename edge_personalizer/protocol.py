"""The server side of HTTP/1.1: bytes from a client -> ASGI calls -> bytes back.

`HttpProtocol` is the connection protocol the product's uvicorn server runs (uvicorn still
binds the sockets, runs the workers, the lifespan and graceful shutdown, and takes over
WebSocket upgrades). It parses requests with llhttp (httptools), as uvicorn's own does, and
is made for a proxy's load: many small requests on kept-alive connections.

- A response's head and body leave in one system call when the body comes in the same
  turn of the event loop (the usual page); a streamed body's writes of one turn leave
  together.
- Response headers are checked as one block (names are tokens; no CR, LF or other control
  character inside a line), not with two regular expressions a header.
- A request head longer than `max_head_bytes` stops the parser (431); a refused connection
  closes lingering, so the client reads the answer instead of a reset.
- One keep-alive timer per connection, re-armed only when it fires, instead of a timer
  made and cancelled for every request.
- A request without a body is answered by `receive` at once, without an event to wait on.
- Scopes carry the BODY_VIEWS extension: bodies may be memoryviews.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import deque
from typing import Any

import httptools
from starlette.types import ASGIApp, Message

from .pipeline import BODY_VIEWS
from .response_head import plain_response, response_head

logger = logging.getLogger("uvicorn.error")

HIGH_WATER = 65536        # bytes of request body buffered before reading pauses
LINGER = 2.0              # seconds a refused client may go on sending before the close
_FLUSH_AT = 65536         # pending response bytes written at once, not at the turn's end

_METHODS: dict[bytes, str] = {}
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class HttpProtocol(asyncio.Protocol):
    """One client connection. The constructor is the one uvicorn calls for `http=`."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 max_head_bytes: int = 1 << 20) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app: ASGIApp = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.app_state = app_state
        self.keep_alive_timeout: float = config.timeout_keep_alive
        self.limit_concurrency: int | None = config.limit_concurrency
        self.root_path: str = config.root_path
        self.max_head_bytes = max_head_bytes   # a longer request head: 431, and closed
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)

        self.transport: asyncio.Transport = None   # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.read_paused = False
        self.write_paused: asyncio.Event | None = None   # set again when writable
        self.pending: list[bytes | memoryview] = []
        self.pending_size = 0
        self.flush_scheduled = False
        self.idle_since: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.lingering = False

        # The request being parsed, and requests parsed while an earlier one still runs.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_left = max_head_bytes
        self.expect_continue = False
        self.cycle: Exchange | None = None        # the one being parsed (takes the body)
        self.running: Exchange | None = None      # the one whose app runs
        self.queued: deque[Exchange] = deque()

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport   # type: ignore[assignment]
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        for cycle in (self.running, self.cycle, *self.queued):
            if cycle is not None and not cycle.complete:
                cycle.disconnected = True
                cycle.wake()
        self.queued.clear()
        if self.write_paused is not None:
            self.write_paused.set()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.pending = []
        self.parser = None   # type: ignore[assignment]

    def eof_received(self) -> None:
        pass   # the transport closes itself (also ending a lingering close)

    def pause_writing(self) -> None:
        if self.write_paused is None:
            self.write_paused = asyncio.Event()
        self.write_paused.clear()

    def resume_writing(self) -> None:
        if self.write_paused is not None:
            self.write_paused.set()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else after the current response."""
        if self.running is None or self.running.complete:
            self.close()
        else:
            self.running.keep_alive = False

    def close(self) -> None:
        self.flush()
        if not self.transport.is_closing():
            self.transport.close()

    def _linger(self) -> None:
        """Close after a refusal without resetting the connection: the client may still be
        sending, and a close with unread bytes would reset it before it reads the answer.
        Our side ends (FIN), what comes is dropped, and the connection closes when the
        client ends too, or after LINGER seconds."""
        self.flush()
        if self.transport.is_closing() or not self.transport.can_write_eof():
            self.close()
            return
        self.lingering = True
        self.transport.write_eof()
        self.resume_reading()
        self.loop.call_later(LINGER, self.close)

    # -- writing: what one turn of the loop writes leaves in one system call -----------

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= _FLUSH_AT:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self.flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        self.pending = []
        self.pending_size = 0
        if self.transport.is_closing():
            return
        if len(pending) == 1:
            self.transport.write(pending[0])
        else:
            self.transport.writelines(pending)

    # -- parsing -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return   # what a refused client still sends is read and dropped
        self.idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._is_websocket():
                self._hand_over_websocket(data[upgrade.args[0]:] if upgrade.args else b"")
            else:
                logger.warning("Unsupported upgrade request.")
        except httptools.HttpParserError:
            if self.head_left < 0:
                self._bad_request("Request header fields too large.", status=431)
            else:
                self._bad_request("Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_left = self.max_head_bytes
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_left -= len(url)
        if self.head_left < 0:
            raise ValueError("request head too large")   # the parser stops: 431

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_left -= len(name) + len(value) + 4
        if self.head_left < 0:
            raise ValueError("request head too large")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser.should_upgrade() and self._is_websocket():
            return   # data_received hands the connection to the WebSocket protocol
        method_bytes = parser.get_method()
        method = _METHODS.get(method_bytes)
        if method is None:
            method = _METHODS.setdefault(method_bytes, method_bytes.decode("ascii"))
        version = parser.get_http_version()
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
            raw_path = raw_path.partition(b"#")[0]
            query = query.partition(b"#")[0]
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root = self.root_path
        scope: dict[str, Any] = {
            "type": "http", "asgi": _ASGI, "http_version": version,
            "server": self.server, "client": self.client, "scheme": self.scheme,
            "method": method, "root_path": root,
            "path": root + path if root else path,
            "raw_path": root.encode("ascii") + raw_path if root else raw_path,
            "query_string": query, "headers": self.headers,
            "state": self.app_state.copy(), "extensions": {BODY_VIEWS: {}},
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        cycle = Exchange(self, scope, keep_alive=keep_alive,
                         expect_continue=self.expect_continue)
        self.cycle = cycle
        running = self.running
        if running is None or running.complete:
            self._start(cycle)
        else:   # pipelined: answered in order, once the one before has finished
            self.pause_reading()
            self.queued.append(cycle)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.complete:
            return
        cycle.more_body = False
        cycle.wake()

    def _start(self, cycle: Exchange) -> None:
        app = self.app
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            logger.warning("Exceeded concurrency limit.")
            app = _service_unavailable
        self.running = cycle
        cycle.task = task = self.loop.create_task(cycle.run(app))
        self.tasks.add(task)

    def response_complete(self, cycle: Exchange) -> None:
        """Called by an Exchange once its last byte is written (or pending)."""
        self.server_state.total_requests += 1
        if not cycle.keep_alive:
            self.close()
            return
        if self.transport.is_closing():
            return
        self.resume_reading()
        if self.queued:
            self._start(self.queued.popleft())
            return
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_later(self.keep_alive_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.idle_since is None:
            return   # busy again; the next response re-arms the timer
        left = self.idle_since + self.keep_alive_timeout - self.loop.time()
        if left <= 0:
            self.close()
        else:
            self.idle_timer = self.loop.call_later(left, self._idle_check)

    def _bad_request(self, message: str, *, status: int = 400) -> None:
        logger.warning(message)
        running = self.running
        if running is None or running.complete:
            self.write(plain_response(status, message, close=True))
            self._linger()
        else:   # a response is on its way: end the connection after it
            self.queued.clear()
            running.keep_alive = False
            self.pause_reading()

    # -- WebSocket upgrades go to uvicorn's protocol -----------------------------------

    def _is_websocket(self) -> bool:
        if self.config.ws_protocol_class is None:
            return False
        connection: list[bytes] = []
        upgrade = None
        for name, value in self.headers:
            if name == b"connection":
                connection = [token.strip().lower() for token in value.split(b",")]
            elif name == b"upgrade":
                upgrade = value.lower()
        return b"upgrade" in connection and upgrade == b"websocket"

    def _hand_over_websocket(self, rest: bytes) -> None:
        self.flush()
        self.connections.discard(self)
        head = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        protocol = self.config.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state)
        protocol.connection_made(self.transport)
        protocol.data_received(b"".join(head) + rest)
        self.transport.set_protocol(protocol)


class Exchange:
    """One request and its response: the ASGI `receive` and `send` of one call."""

    __slots__ = ("protocol", "scope", "keep_alive", "waiting_continue", "body", "more_body",
                 "body_taken", "event", "disconnected", "started", "complete", "chunked",
                 "length_left", "head_only", "task")

    def __init__(self, protocol: HttpProtocol, scope: dict[str, Any], *, keep_alive: bool,
                 expect_continue: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.waiting_continue = expect_continue
        self.body = bytearray()
        self.more_body = True
        self.body_taken = False            # the last part of the body was handed out
        self.event: asyncio.Event | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.length_left: int | None = None
        self.head_only = scope["method"] == "HEAD"
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.started:
                await self._send_500()
            else:
                self.protocol.close()
        else:
            if not self.started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self.protocol.close()
        finally:
            self.protocol.tasks.discard(self.task)
            self.task = None

    async def _send_500(self) -> None:
        self.keep_alive = False
        await self.send({"type": "http.response.start", "status": 500,
                         "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                     (b"content-length", b"21")]})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> Message:
        protocol = self.protocol
        if self.waiting_continue and not protocol.transport.is_closing():
            self.waiting_continue = False
            protocol.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            protocol.flush()
        while not self.disconnected and not self.complete:
            if self.body or (not self.more_body and not self.body_taken):
                body = bytes(self.body)
                self.body.clear()
                if not self.more_body:
                    self.body_taken = True
                protocol.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            protocol.resume_reading()
            if self.event is None:
                self.event = asyncio.Event()
            await self.event.wait()
            self.event.clear()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        protocol = self.protocol
        paused = protocol.write_paused
        if paused is not None and not paused.is_set() and not self.disconnected:
            await paused.wait()
        if self.disconnected:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', "
                                   f"but got '{message['type']}'.")
            headers = message.get("headers", ())
            default = protocol.server_state.default_headers
            try:
                head, self.keep_alive, self.chunked, self.length_left = response_head(
                    message["status"], [*default, *headers] if default else headers,
                    self.keep_alive, self.head_only, self.scope["http_version"])
            except ValueError as exc:
                raise RuntimeError(str(exc)) from None
            self.started = True
            self.waiting_continue = False
            protocol.write(head)
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, "
                               "after response already completed.")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', "
                               f"but got '{message['type']}'.")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.head_only:
            pass
        elif self.chunked:
            if body:
                protocol.write(b"%x\r\n" % len(body))
                protocol.write(body)
                protocol.write(b"\r\n")
            if not more:
                protocol.write(b"0\r\n\r\n")
        else:
            if self.length_left is not None:
                self.length_left -= len(body)
                if self.length_left < 0:
                    raise RuntimeError("Response content longer than Content-Length")
            protocol.write(body)
        if not more:
            if self.length_left and not self.head_only:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            protocol.response_complete(self)


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


async def _service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", b"19"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"Service Unavailable"})
