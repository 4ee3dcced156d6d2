"""What a counter store does, whichever holds the data (SQLite on one machine, Redis for many)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from ...errors import StoreError, TableUnreadable
from ..counters import Batch, Converted, CountKey, Tally

MAX_TABLE_BYTES = 1 << 20   # tables are small: weights per cell, a model's top entries
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_T = TypeVar("_T")


class BatchId(NamedTuple):
    """Which write a batch is: `writer` (one flusher, unique) and its `number`, which grows
    by one with each new batch of that writer. A store applies a writer's batch only if its
    number is above the last it applied, so a batch sent again (its write timed out, and may
    have landed) is counted once."""

    writer: str
    number: int


@dataclass(frozen=True)
class Table:
    """A small table published for every worker and instance (bandit weights, a model):
    `version` grows by one with each publication; `payload` is the publisher's encoding."""

    name: str
    version: int
    payload: bytes
    published_at: float   # POSIX seconds


class Store(Protocol):
    """Counter totals and published tables, shared by every worker that opens the same URL.

    Every method may raise StoreError (unreachable, timed out, refused) and never waits
    longer than the store's short timeouts; none is called on a page's way.
    """

    location: str   # the URL without its password, for logs and reports

    async def flush(self, batch: Batch, converted: Sequence[Converted] = (), *,
                    batch_id: BatchId | None = None) -> None:
        """Add each tally of `batch` to the totals of its key, and count each visitor's
        conversion of `converted` (and its value) unless the same experiment, variant,
        goal and visitor was counted within the conversion's window: all of it, or none;
        nothing if `batch_id` was applied already (see BatchId)."""

    async def totals(self, experiment: str | None = None) -> dict[CountKey, Tally]:
        """Every key's totals (of one experiment, when named)."""

    async def fold(self, rows: Sequence[CountKey], *, into: str) -> None:
        """Move each of `rows`' counts, as they are at that moment, into the row of cell
        `into` with the same experiment, variant, goal, day and period, and remove the
        row; a row with no counts left is left out. All of it at once: counts a flush adds
        meanwhile land before the move (and go with it) or after it (in a row of their own
        again). Totals per variant, goal, day and period stay as they were."""

    def unreadable(self) -> dict[str, list[str]]:
        """Per experiment, what the last read of its totals left out as no counts of ours
        (a field someone added by hand), said for its results' warnings."""

    async def publish(self, name: str, payload: bytes) -> int:
        """Replace table `name` by `payload`; returns the table's new version."""

    async def publish_if(self, name: str, payload: bytes, *, version: int) -> int | None:
        """Replace table `name` by `payload` only if its version is still `version` (0:
        never published); the new version, or None when another publisher came first."""

    async def table(self, name: str, *, newer_than: int = 0) -> Table | None:
        """Table `name` if its version is above `newer_than` (None otherwise, or never published),
        so a worker can poll cheaply for a new version."""

    async def ping(self) -> None:
        """Ask the store for nothing (health checks): StoreError when it does not answer."""

    async def close(self) -> None:
        """Release the connection; the store is not used afterwards."""


def check_table(name: str, payload: bytes) -> None:
    """Refuse a table name a store could not hold as one key, or a payload that is not small."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"table name {name!r}: expected 1-100 of A-Z a-z 0-9 _ . : -")
    if len(payload) > MAX_TABLE_BYTES:
        raise ValueError(f"table {name}: {len(payload)} bytes; tables hold at most "
                         f"{MAX_TABLE_BYTES} bytes")


def copy_unreadable(name: str, why: str, *, version: int | None = None) -> TableUnreadable:
    """What a store raises for its copy of table `name` that does not read (`why`: a field
    missing, a value of the wrong type), with the version it gives, if any."""
    return TableUnreadable(f"table {name}: the store's copy does not read ({why})",
                           table=name, version=version)


async def read_table(store: Store, name: str, *, newer_than: int = 0) -> Table | None:
    """`store.table(name, newer_than=...)`: a StoreError for a store that fails, whose
    TableUnreadable is a copy the store itself found malformed (only the store can tell:
    a connection dropped or a read timed out is an outage even when the next call answers,
    and taken for a bad copy it had the goals' record rebuilt from nothing and older
    weights published over newer ones), or a read that failed as no outage does."""
    try:
        return await store.table(name, newer_than=newer_than)
    except StoreError:
        raise
    except Exception as exc:   # a malformed copy, met by a store that did not expect it
        raise copy_unreadable(name, f"{type(exc).__name__}: {exc}") from exc


def decoded(published: Table, decode: Callable[[bytes, int], _T]) -> _T:
    """`decode(payload, version)`, or TableUnreadable naming the table, its version and
    why, however the payload is wrong: decoders raise ValueError for what they expect, but
    a payload nested too deep (RecursionError) or a number past a float's range
    (OverflowError) fails elsewhere, and no reader may stop on any of it."""
    try:
        return decode(published.payload, published.version)
    except Exception as exc:
        raise TableUnreadable(f"table {published.name} version {published.version} does not "
                              f"decode ({type(exc).__name__}: {exc})", table=published.name,
                              version=published.version) from exc
