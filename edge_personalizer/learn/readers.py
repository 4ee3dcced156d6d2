"""The readers that bring what the trainer published to every worker.

`TableReader.run` polls `store.table(name, newer_than=version)` in each worker and swaps in
the new immutable table; the request path only reads `reader.current`. A store that is down
keeps the last good table without a word (the flusher tells outages); a table that does not
read or decode, for whatever reason, keeps it too, is logged once per version (and once
per cause of a copy that does not read), and is a trouble of the learning loop that
/__ep/health shows until a version that decodes is published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ..errors import StoreError, TableUnreadable
from . import affinity, bandit, catalog
from .affinity import AffinityModel
from .bandit import WeightsTable
from .catalog import GoalCatalog
from .store import Store, decoded, read_table
from .troubles import Troubles, cause_of

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
RECHECK = 30   # polls (ticks) between looks at a table whatever its version


class TableReader(Generic[_T]):
    """A worker's current copy of a published table, refreshed every `interval` seconds.

    `decode(payload, version)` builds the immutable table; `current` starts as `empty` and
    is swapped whole, never changed in place. What does not read or decode is held in
    `troubles` (shared with the trainer's, for health) as "table <name>".
    """

    def __init__(self, store: Store, name: str, decode: Callable[[bytes, int], _T], *,
                 empty: _T, interval: float = 1.0, troubles: Troubles | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.name = name
        self.decode = decode
        self.interval = interval
        self.current = empty
        self.version = 0   # the last version looked at (one that did not decode, too)
        self.current_version = 0   # the version of `current`
        self.troubles = Troubles(logger) if troubles is None else troubles
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
            published = await read_table(self.store, self.name, newer_than=newer_than)
            if published is None or published.version == self.version:
                return False
            self.current = decoded(published, self.decode)
        except TableUnreadable as exc:
            self._unreadable(exc)
            return False
        except StoreError:
            return False   # the last good table keeps serving; the flusher logs outages
        self.version = self.current_version = published.version
        self.troubles.cleared(self.trouble)
        return True

    @property
    def trouble(self) -> str:
        """What this reader's trouble is called in the log and in health."""
        return f"table {self.name}"

    def _unreadable(self, exc: TableUnreadable) -> None:
        kept = (f"this worker keeps version {self.current_version} (stale)"
                if self.current_version else
                "this worker has none of it yet (as if never published)")
        if exc.version is not None:
            self.version = exc.version   # a bad version is not read again
        # each new version that does not decode is told; a copy that does not read, once
        # per cause
        cause = ("version", exc.version) if exc.version is not None else cause_of(exc)
        why = str(exc).removeprefix(f"{self.trouble} ").removeprefix(f"{self.trouble}: ")
        self.troubles.failed(self.trouble, cause, f"{why}; {kept} until a version that "
                             "decodes is published")


def weights_reader(store: Store, *, interval: float = 1.0,
                   troubles: Troubles | None = None) -> TableReader[WeightsTable]:
    return TableReader(store, bandit.TABLE_NAME, WeightsTable.decode, empty=WeightsTable(),
                       interval=interval, troubles=troubles)


def model_reader(store: Store, *, interval: float = 1.0,
                 troubles: Troubles | None = None) -> TableReader[AffinityModel]:
    return TableReader(store, affinity.TABLE_NAME, AffinityModel.decode, empty=AffinityModel(),
                       interval=interval, troubles=troubles)


def catalog_reader(store: Store, *, interval: float = 1.0,
                   troubles: Troubles | None = None) -> TableReader[GoalCatalog]:
    return TableReader(store, catalog.TABLE_NAME, GoalCatalog.decode, empty=GoalCatalog(),
                       interval=interval, troubles=troubles)
