"""Flow control of an origin connection, both ways: a response body nobody reads yet stops
the reading (the origin then waits on TCP, memory stays bounded), and a request body the
origin does not read stops the writing until the transport's buffer empties."""

from __future__ import annotations

import asyncio
from typing import Final

HIGH_WATER: Final = 256 * 1024   # buffered response bytes before reading pauses


class BodyBuffer:
    """The body bytes read from the origin and not yet taken. Past HIGH_WATER the
    connection stops reading until they are taken."""

    __slots__ = ("chunks", "size", "paused", "transport")

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.paused = False
        self.transport = transport

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def take(self, reading: bool) -> bytes | None:
        """The bytes so far as one (None when there are none); reading resumes if it
        had paused and `reading` (the connection is still open)."""
        chunks = self.chunks
        if not chunks:
            return None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.size = 0
        if self.paused and reading and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


class WriteFlow(asyncio.Protocol):
    """The writing half of a protocol's flow control (as asyncio.streams' FlowControlMixin):
    the transport says when its buffer is full (pause_writing) and has room again
    (resume_writing); while `write_paused`, a writer awaits `drained()`, which the
    transport's room or the connection's end sets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.write_paused = False
        self._drained: asyncio.Future[None] | None = None

    def drained(self) -> asyncio.Future[None]:
        """A future set when the transport takes writes again (or the connection ends)."""
        self._drained = self.loop.create_future()
        return self._drained

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.release_writer()

    def release_writer(self) -> None:
        """Let a writer waiting for room go on (it checks whether the connection ended)."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
