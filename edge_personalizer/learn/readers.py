"""The readers that bring what the trainer published to every worker.

`TableReader.run` polls `store.table(name, newer_than=version)` in each worker and swaps in
the new immutable table; the request path only reads `reader.current`. A store that is down
or a table that does not decode keeps the last good one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ..errors import StoreError
from . import affinity, bandit, catalog
from .affinity import AffinityModel
from .bandit import WeightsTable
from .catalog import GoalCatalog
from .store import Store

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
RECHECK = 30   # polls (ticks) between looks at a table whatever its version


class TableReader(Generic[_T]):
    """A worker's current copy of a published table, refreshed every `interval` seconds.

    `decode(payload, version)` builds the immutable table (raising ValueError for a bad
    payload); `current` starts as `empty` and is swapped whole, never changed in place.
    """

    def __init__(self, store: Store, name: str, decode: Callable[[bytes, int], _T], *,
                 empty: _T, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.name = name
        self.decode = decode
        self.interval = interval
        self.current = empty
        self.version = 0
        self._polls = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll every `interval` seconds until cancelled; started once the first poll is
        done (bounded by the store's timeouts), so a worker serves with what was published."""
        await self.refresh()
        task_status.started()
        while True:
            await anyio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> bool:
        """Takes a newer version if one was published; True if the table changed. Every
        `RECHECK`th poll takes whatever version is published, so a store that was emptied
        (versions counting from 1 again) is followed too."""
        self._polls += 1
        newer_than = 0 if self._polls % RECHECK == 0 else self.version
        try:
            published = await self.store.table(self.name, newer_than=newer_than)
        except StoreError:
            return False   # the last good table keeps serving; the flusher logs outages
        if published is None or published.version == self.version:
            return False
        changed = True
        try:
            self.current = self.decode(published.payload, published.version)
        except ValueError:
            logger.warning("table %s version %d unreadable; keeping version %d",
                           self.name, published.version, self.version)
            changed = False
        self.version = published.version   # a bad version is not read again
        return changed


def weights_reader(store: Store, *, interval: float = 1.0) -> TableReader[WeightsTable]:
    return TableReader(store, bandit.TABLE_NAME, WeightsTable.decode, empty=WeightsTable(),
                       interval=interval)


def model_reader(store: Store, *, interval: float = 1.0) -> TableReader[AffinityModel]:
    return TableReader(store, affinity.TABLE_NAME, AffinityModel.decode, empty=AffinityModel(),
                       interval=interval)


def catalog_reader(store: Store, *, interval: float = 1.0) -> TableReader[GoalCatalog]:
    return TableReader(store, catalog.TABLE_NAME, GoalCatalog.decode, empty=GoalCatalog(),
                       interval=interval)
