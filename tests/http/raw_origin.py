"""Misbehaving origins as raw-socket servers on 127.0.0.1 (asyncio), for the tests of the
origin client, the proxy and the rewriter: they write exactly the bytes a case names.

`RawOrigin` runs on the test's own event loop; `ThreadedOrigin` runs one in a thread of
its own, for tests that put the real proxy process in front of it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"


async def request_head(reader: asyncio.StreamReader) -> bytes:
    """The next request head on the connection (IncompleteReadError at its end)."""
    return await reader.readuntil(b"\r\n\r\n")


class RawOrigin:
    """A TCP server on 127.0.0.1 that answers with `handler`; counts its connections and
    those the client closed (`closed_by_client`: the handler met their end)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed_by_client = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            gone = False
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                gone = True
            except asyncio.CancelledError:
                pass   # the test is over (a cancelled stream task only logs noise)
            finally:
                writer.close()
            if gone or reader.at_eof():
                self.closed_by_client += 1

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def first_then_next(first: bytes, *, close: bool = False) -> Handler:
    """A handler that answers the first request it gets (on any connection) with `first`,
    in one write (then closes when `close`), and every later one with NEXT."""
    answered = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        while True:
            try:
                await request_head(reader)
            except asyncio.IncompleteReadError:
                return
            answered += 1
            writer.write(first if answered == 1 else NEXT)
            await writer.drain()
            if answered == 1 and close:
                return

    return handler


async def wait_for_eof(reader: asyncio.StreamReader) -> None:
    """Until the client closes the connection (its bytes, if any, dropped)."""
    while await reader.read(65536):
        pass


class ThreadedOrigin:
    """`RawOrigin` on an event loop in a thread of its own (`with ThreadedOrigin(h) as url`).

    `handler` runs on that loop; `closed_by_client` counts connections the other side
    closed while the handler was still reading or writing."""

    def __init__(self, handler: Handler) -> None:
        self.raw = RawOrigin(handler)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        self.url: str = asyncio.run_coroutine_threadsafe(self.raw.__aenter__(),
                                                         self.loop).result(5)
        return self.url

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.raw.__aexit__(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    @property
    def connections(self) -> int:
        return self.raw.connections

    @property
    def closed_by_client(self) -> int:
        return self.raw.closed_by_client


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Whether `condition()` holds within `timeout` seconds (checked every 10 ms)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
