"""The background loop that moves a worker's counts to the store, about once a second.

The app's lifespan starts `Flusher.run` in its task group; cancelling the group makes a
last flush (bounded by `final_timeout`). A store that is down costs a page nothing: the
loop runs beside the request path, each write is bounded by the store's short timeouts,
and counts that could not be written stay in the accumulator (bounded) for the next try.
An outage is logged once when it starts, once whenever its cause changes (a server back
with another password) and once when it ends.

Each write carries a `BatchId` (this flusher's id and a number that grows), and a write
that failed is sent again as it was, with the same id, before anything counted since: a
write that timed out may have landed all the same, and the store applies an id once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Sequence
from typing import NamedTuple

import anyio
from anyio.abc import TaskStatus

from ..errors import StoreError
from .counters import Accumulator, Batch, Converted
from .store import BatchId, Store

logger = logging.getLogger(__name__)


class _Write(NamedTuple):
    batch: Batch
    converted: Sequence[Converted]
    id: BatchId


class Flusher:
    """Writes `counters` to `store` every `interval` seconds, `batch_keys` keys a write.

    A write's commands are built on the event loop (~20 µs a key for Redis on a busy
    2-core machine), so a backlog after an outage goes out in small writes: ~4 ms each,
    with the network wait between them free for pages.
    """

    def __init__(self, counters: Accumulator, store: Store, *, interval: float = 1.0,
                 batch_keys: int = 200, final_timeout: float = 5.0) -> None:
        if interval <= 0 or batch_keys < 1 or final_timeout < 0:
            raise ValueError("interval and final_timeout must be positive, batch_keys >= 1")
        self.counters = counters
        self.store = store
        self.interval = interval
        self.batch_keys = batch_keys
        self.final_timeout = final_timeout
        self.failed_flushes = 0   # in a row: 0 while the store answers
        self.outages = 0
        self.last_error: str | None = None   # why the last flush failed; None while healthy
        self._told: set[str] = set()   # the causes this outage logged
        self._dropped_before = 0  # counters.dropped at the last successful flush
        self._lock = anyio.Lock()
        self._writer = uuid.uuid4().hex
        self._written = 0          # the number of the last batch taken
        self._unsent: _Write | None = None   # a write that failed: sent again as it was

    @property
    def healthy(self) -> bool:
        return self.failed_flushes == 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush every `interval` until cancelled, then once more."""
        task_status.started()
        try:
            while True:
                await anyio.sleep(self.interval)
                await self.flush()
        finally:
            written = False
            with anyio.move_on_after(self.final_timeout, shield=True):
                written = await self.flush(ask=False)
            if not written and self.counters.held_keys:
                logger.error(
                    "counter store %s did not answer at shutdown: %d keys of counts waiting "
                    "in memory were not written (their exposures and conversions are lost)",
                    self.store.location, self.counters.held_keys)

    async def flush(self, *, ask: bool = True) -> bool:
        """Write everything counted so far. False when the store failed (the counts are kept).
        With nothing to write, `ask` whether the store is there, so an idle worker notices
        an outage (and its end) as a writing one does."""
        async with self._lock:
            self.counters.collect()
            asked = self._unsent is not None or bool(self.counters.held_keys)
            if ask and not asked:
                if not await self._answers(self.store.ping(), "asking the counter store"):
                    return False
                asked = True
            while write := self._unsent or self._next_write():
                self._unsent = write
                # Shielded: a write cancelled after Redis applied it would be written twice.
                with anyio.CancelScope(shield=True):
                    written = await self._answers(
                        self.store.flush(write.batch, write.converted, batch_id=write.id),
                        "writing counts")
                if not written:
                    return False
                self._unsent = None
                self.counters.acknowledge(write.batch, write.converted)
            if asked:   # (nothing written nor asked says nothing of the store)
                self._answered()
            return True

    async def _answers(self, call: Awaitable[None], doing: str) -> bool:
        """Whether the store did what `call` asks; if not, the outage is noted (and logged
        when it starts)."""
        try:
            await call
        except StoreError as exc:
            # (a key in the way is a cause of its own: another key in the way is another)
            self._failed(str(exc), type(exc.__cause__ or exc).__name__ if exc.passes
                         else str(exc), passes=exc.passes)
            return False
        except Exception as exc:
            # A bug must neither stop the counting nor end the server through the
            # lifespan's task group: log it like an outage and keep the counts.
            if self.healthy:
                logger.error("%s failed unexpectedly", doing, exc_info=True)
            self._failed(f"{type(exc).__name__}: {exc}", type(exc).__name__)
            return False
        return True

    def _next_write(self) -> _Write | None:
        batch = self.counters.pending_batch(self.batch_keys)
        converted = self.counters.pending_converted(self.batch_keys)
        if not batch and not converted:
            return None
        self._written += 1
        return _Write(batch, converted, BatchId(self._writer, self._written))

    def _failed(self, reason: str, kind: str, *, passes: bool = True) -> None:
        """`kind`: the cause's class (or what a refusal names); each is logged once an
        outage, a new wording of one (a connection closed, then refused, as a server stops)
        is not, nor one the outage went back to (a lossy link's timeouts and resets)."""
        if self.failed_flushes == 0:
            self.outages += 1
            self._told = {kind}
            logger.warning(
                "counter store %s failed (%s); counts wait in memory (at most %d keys) "
                "and are written when it %s", self.store.location, reason,
                self.counters.max_keys, "answers" if passes else "takes them again")
        elif kind not in self._told:   # once per cause: what an operator must fix
            self._told.add(kind)
            logger.warning("counter store %s still fails, now for another cause (%s); counts "
                           "wait in memory", self.store.location, reason)
        self.failed_flushes += 1
        self.last_error = reason

    def _answered(self) -> None:
        if self.failed_flushes:
            logger.warning(
                "counter store %s answers again after %d failed flushes; %d events dropped "
                "meanwhile", self.store.location, self.failed_flushes,
                self.counters.dropped - self._dropped_before)
        self.failed_flushes = 0
        self.last_error = None
        self._dropped_before = self.counters.dropped
