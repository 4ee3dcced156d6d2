"""The connection pool: how many exchanges may be open to the origin, and the idle connections.

A slot is taken for the whole exchange (request sent, response read or given up) and
given back with the connection. Two caps, both bounded waits (issue 20): `max_connections`
in all and `max_connections_per_origin` for one scheme/host/port. A request that finds
no slot within `wait_timeout` gets UpstreamBusy (the proxy answers 503 with Retry-After)
instead of queueing behind long responses for ever. Idle connections are kept LIFO (the
warmest first) and dropped after `keepalive_timeout`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque

from ..errors import UpstreamBusy, UpstreamError, UpstreamTimeout
from .connection import Connection, describe_error

Key = tuple[str, str, int]   # scheme, host, port


class _Slots:
    """A counted cap with a FIFO of waiters (asyncio.Semaphore's job, at a fraction of its
    cost on the path taken every request: a free slot is one comparison)."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (the caller bounds the wait; a cancelled wait takes none)."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give()   # handed over just as the wait ended: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)   # the slot goes straight to the first waiter
                return
        self.free += 1


class Pool:
    """Slots and idle connections per origin; opens connections as they are needed."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 max_connections: int, max_connections_per_origin: int | None,
                 wait_timeout: float, keepalive_timeout: float) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if max_connections_per_origin is not None and max_connections_per_origin < 1:
            raise ValueError("max_connections_per_origin must be >= 1, "
                             f"got {max_connections_per_origin}")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.wait_timeout = wait_timeout
        self.keepalive_timeout = keepalive_timeout
        self._max_connections = max_connections
        self._max_per_origin = max_connections_per_origin or max_connections
        self._slots = _Slots(max_connections)
        self._origin_slots: dict[Key, _Slots] = {}
        self._idle: dict[Key, list[Connection]] = {}
        self._open: set[Connection] = set()
        self._ssl: ssl.SSLContext | None = None

    # Slots

    async def take_slot(self, key: Key) -> None:
        """Wait for room under both caps, at most `wait_timeout`; UpstreamBusy after."""
        per_origin = self._origin_slots.get(key)
        if per_origin is None:
            per_origin = self._origin_slots[key] = _Slots(self._max_per_origin)
        if per_origin.try_take():
            if self._slots.try_take():   # the path of every request while there is room
                return
            per_origin.give()
        try:
            async with asyncio.timeout(self.wait_timeout):
                await per_origin.take()
                try:
                    await self._slots.take()
                except BaseException:
                    per_origin.give()
                    raise
        except TimeoutError:
            limit = self._max_per_origin if per_origin.free == 0 else self._max_connections
            raise UpstreamBusy(f"no connection to the origin became free within "
                               f"{self.wait_timeout:g} s (all {limit} are busy)") from None

    def give_slot(self, key: Key) -> None:
        self._slots.give()
        self._origin_slots[key].give()

    # Connections

    async def connection(self, key: Key, *, max_idle: float | None = None) -> Connection:
        """An idle connection to `key` that is still fresh (idle less than `max_idle`
        seconds when given, else the keep-alive timeout), else a new one."""
        idle = self._idle.get(key)
        if idle and max_idle is not None:
            # One turn of the event loop first: an origin's close that has arrived is seen
            # (the connection marks itself closed) before a request that cannot be sent
            # again is written to it.
            await asyncio.sleep(0)
        if idle:
            now = time.monotonic()
            limit = self.keepalive_timeout if max_idle is None else min(
                max_idle, self.keepalive_timeout)
            while idle:
                conn = idle.pop()
                if conn.closed or now - conn.idle_since >= self.keepalive_timeout:
                    self.forget(conn)
                elif now - conn.idle_since < limit:
                    conn.reused = True
                    return conn
                else:   # the warmest is too old for this request: so are the others
                    idle.append(conn)
                    break
        return await self._connect(key)

    async def _connect(self, key: Key) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Connection(loop, self.read_timeout),
                                       host, port, ssl=context,
                                       server_hostname=host if context else None),
                self.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"origin gave no answer in time (connecting to {host}:{port} "
                                  f"took over {self.connect_timeout:g} s)") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"origin unreachable: cannot connect to {host}:{port}: "
                                f"{describe_error(exc)}") from exc
        self._open.add(conn)
        return conn

    def give_back(self, key: Key, conn: Connection, *, reusable: bool) -> None:
        """To the idle list if `conn` can carry another exchange, else closed."""
        if reusable and conn.reusable:
            conn.idle = True
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        else:
            self.forget(conn)

    def forget(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)

    def drop_idle(self, key: Key) -> None:
        for conn in self._idle.pop(key, []):
            self.forget(conn)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def close(self) -> None:
        for conn in list(self._open):
            self.forget(conn)
        self._idle.clear()
