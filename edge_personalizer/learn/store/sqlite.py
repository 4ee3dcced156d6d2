"""The embedded store: one SQLite file (WAL) that every worker process of a machine shares.

Nothing to install. Each process holds one connection; calls run in a worker thread
(`anyio.to_thread`), never on the event loop. A flush is one transaction of upserts that
add, so concurrent flushes from several processes sum; a writer waits for another at most
`timeout` seconds (SQLite's busy timeout), then the flush fails and is retried later.
A visitor's conversion is counted in the same transaction only if its (experiment, variant,
goal, visitor) is not in the `converted` table yet, where it stays for the goal's attribution
window (expired rows are pruned on each flush). A batch with an id is applied at most
once (the `flushed` table keeps each writer's last batch number for a week), as for Redis:
a flush that fails after its commit (an error past COMMIT, however unlikely) and is sent
again counts once. A fold (`Store.fold`) is one transaction too: each row taken out
(DELETE ... RETURNING) and added to the other cell's.

A file written before counts kept their period is brought up to date when opened: its
rows are kept, in UNKNOWN_PERIOD.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from ...errors import StoreError
from ..counters import UNKNOWN_PERIOD, Batch, Converted, CountKey, Tally
from .base import BatchId, Table, check_table, copy_unreadable

_T = TypeVar("_T")
_COUNTS = """
CREATE TABLE IF NOT EXISTS {name} (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, goal TEXT NOT NULL,
    cell TEXT NOT NULL, day TEXT NOT NULL, period INTEGER NOT NULL,
    exposures INTEGER NOT NULL, conversions INTEGER NOT NULL,
    value_sum REAL NOT NULL, value_sq_sum REAL NOT NULL,
    PRIMARY KEY (experiment, variant, goal, cell, day, period)
) WITHOUT ROWID;
"""
_SCHEMA = _COUNTS.format(name="counts") + """
CREATE TABLE IF NOT EXISTS converted (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, goal TEXT NOT NULL,
    visitor TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (experiment, variant, goal, visitor)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS converted_expires ON converted (expires);
CREATE TABLE IF NOT EXISTS flushed (
    writer TEXT PRIMARY KEY, number INTEGER NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tables (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, payload BLOB NOT NULL,
    published_at REAL NOT NULL
);
"""
_COLUMNS = ("experiment, variant, goal, cell, day, period, "
            "exposures, conversions, value_sum, value_sq_sum")
_ADD = f"""
INSERT INTO counts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (experiment, variant, goal, cell, day, period) DO UPDATE SET
    exposures = exposures + excluded.exposures,
    conversions = conversions + excluded.conversions,
    value_sum = value_sum + excluded.value_sum,
    value_sq_sum = value_sq_sum + excluded.value_sq_sum
"""
# A row only if the visitor's conversion is new, or the one remembered has expired.
_CONVERTED = """
INSERT INTO converted VALUES (?, ?, ?, ?, ?)
ON CONFLICT (experiment, variant, goal, visitor) DO UPDATE SET expires = excluded.expires
WHERE converted.expires <= ?
"""
# A publication at a version read before: nothing (no row) when another came first.
_PUBLISH_FIRST = """
INSERT INTO tables VALUES (?, 1, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING version
"""
_PUBLISH_NEXT = """
UPDATE tables SET version = version + 1, payload = ?, published_at = ?
WHERE name = ? AND version = ? RETURNING version
"""
# A row taken out whole (a fold), its counts then added to another cell's with _ADD.
_TAKE = """
DELETE FROM counts WHERE experiment = ? AND variant = ? AND goal = ? AND cell = ? AND day = ?
    AND period = ? RETURNING exposures, conversions, value_sum, value_sq_sum
"""
_FLUSHED_FOR = 7 * 86_400.0   # seconds a writer's last batch number is kept
_PUBLISH = """
INSERT INTO tables VALUES (?, 1, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    version = version + 1, payload = excluded.payload, published_at = excluded.published_at
RETURNING version
"""
# Seconds opening a store may wait for the write lock (see SqliteStore._open).
_SETUP_WAIT = 300.0
# Seconds a ping waits for the connection another call of this worker holds.
_PING_WAIT = 0.2
_Row = tuple[str, str, str, str, str, int, int, int, float, float]


def sqlite_url(path: Path) -> str:
    """The store_url of an SQLite file (absolute, as `open_store` reads it)."""
    return f"sqlite://{path.resolve()}"


class SqliteStore:
    """Counts in an SQLite file; see the module docstring. Opening creates file and tables."""

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        self.location = f"sqlite://{path}"
        self._path = path
        self._lock = threading.Lock()   # one connection, used by one thread at a time
        self._db = self._open(path, timeout)
        self._file = _identity(path)   # the file the connection has open

    def _open(self, path: Path, timeout: float) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                 check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.location}: cannot open the counter store: "
                             f"{_unwritable(path.parent) or exc}") from exc
        try:
            # Setting up may wait for another worker bringing a big file up to date (its
            # copy of every row holds the write lock for seconds): a worker that gave up
            # after the busy timeout would not start.
            db.execute(f"PRAGMA busy_timeout = {round(_SETUP_WAIT * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")   # WAL: durable at checkpoints, never corrupt
            db.executescript(_SCHEMA)
            _add_periods(db)
            db.execute(f"PRAGMA busy_timeout = {round(timeout * 1000)}")
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"{self.location}: not a usable counter store: "
                             f"{_unwritable(path.parent) or exc}") from exc
        return db

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._locked, work)

    def _locked(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            self._same_file()
            try:
                return work(self._db)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.location}: {exc}") from exc

    def _same_file(self) -> None:
        """StoreError once the file open was deleted or replaced (an operator's clean-up, a
        restore): SQLite would go on writing into the deleted file, and every count after
        it would be lost without a word. It is not opened again: the other workers still
        write through the old one and its -wal and -shm files, which a new file beside
        them would share (SQLite then fails every write, or mixes the two)."""
        if _identity(self._path) != self._file:
            raise StoreError(f"{self.location}: the file was deleted or replaced while the "
                             "server ran; restart the server to count into a new one (the "
                             "counts held in memory until then are lost)", passes=False)

    async def flush(self, batch: Batch, converted: Sequence[Converted] = (), *,
                    batch_id: BatchId | None = None) -> None:
        if not batch and not converted:
            return
        rows: list[_Row] = [(*key, *tally) for key, tally in batch.items()]
        await self._run(lambda db: _add(db, rows, converted, batch_id, time.time()))

    async def totals(self, experiment: str | None = None) -> dict[CountKey, Tally]:
        query = f"SELECT {_COLUMNS} FROM counts"
        args: tuple[str, ...] = ()
        if experiment is not None:
            query, args = query + " WHERE experiment = ?", (experiment,)
        return await self._run(lambda db: {
            CountKey(*row[:6]): Tally(*row[6:]) for row in db.execute(query, args)})

    def unreadable(self) -> dict[str, list[str]]:
        return {}   # the table's columns are typed: every row is counts

    async def fold(self, rows: Sequence[CountKey], *, into: str) -> None:
        if rows:
            await self._run(lambda db: _fold(db, rows, into))

    async def publish(self, name: str, payload: bytes) -> int:
        check_table(name, payload)

        def write(db: sqlite3.Connection) -> int:
            # fetchall: the statement runs to its end, so the implicit transaction commits
            version: int = db.execute(_PUBLISH, (name, payload, time.time())).fetchall()[0][0]
            return version

        return await self._run(write)

    async def publish_if(self, name: str, payload: bytes, *, version: int) -> int | None:
        check_table(name, payload)

        def write(db: sqlite3.Connection) -> int | None:
            now = time.time()
            rows = (db.execute(_PUBLISH_FIRST, (name, payload, now)) if version == 0 else
                    db.execute(_PUBLISH_NEXT, (payload, now, name, version))).fetchall()
            return int(rows[0][0]) if rows else None

        return await self._run(write)

    async def table(self, name: str, *, newer_than: int = 0) -> Table | None:
        row = await self._run(lambda db: db.execute(
            "SELECT version, payload, published_at FROM tables WHERE name = ? AND version > ?",
            (name, newer_than)).fetchone())
        return None if row is None else self._table(name, *row)

    def _table(self, name: str, version: object, payload: object,
               published_at: object) -> Table:
        """The row as a Table; StoreError for one no publication writes (a NULL or text
        payload, a version that is no number: a file edited by hand, or of another kind)."""
        if (isinstance(version, int) and isinstance(payload, bytes)
                and isinstance(published_at, int | float)):
            return Table(name, version, payload, float(published_at))
        raise copy_unreadable(
            name, f"{self.location}: table {name}: a malformed row (version {version!r}, "
            f"payload {type(payload).__name__}, published_at {published_at!r}); expected an "
            "integer version, a blob payload and a time in seconds",
            version=version if isinstance(version, int) else None)

    async def ping(self) -> None:
        await anyio.to_thread.run_sync(self._ping)

    def _ping(self) -> None:
        # A flush or a read of this worker holding the file (as long as the busy timeout,
        # when another process writes) answers for it: a health check never waits on it.
        if not self._lock.acquire(timeout=_PING_WAIT):
            return
        try:
            self._same_file()
            self._db.execute("SELECT 1 FROM tables LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: {exc}") from exc
        finally:
            self._lock.release()

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._lock:
            self._db.close()


def _unwritable(folder: Path) -> str | None:
    """Why the store's folder cannot hold it, in words SQLite does not give ("unable to
    open database file", "[Errno 17] File exists"); None when it can, as far as told."""
    for place in (folder, *folder.parents):
        if place.exists():
            if not place.is_dir():
                return f"{place} is a file, not a folder"
            if not os.access(place, os.W_OK | os.X_OK):
                return (f"the folder {place} cannot be written (a read-only file system, "
                        "or its owner and permissions)")
            return None
    return None


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` is now (device and inode), None when there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _has_periods(db: sqlite3.Connection) -> bool:
    return any(column[1] == "period" for column in db.execute("PRAGMA table_info(counts)"))


def _add_periods(db: sqlite3.Connection) -> None:
    """Brings a counts table from before periods up to date (its rows in UNKNOWN_PERIOD).
    One transaction: every worker opening the file at once checks again under the lock,
    and one of them does it."""
    if _has_periods(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _has_periods(db):
            db.execute(_COUNTS.format(name="counts_periods"))
            db.execute(f"INSERT INTO counts_periods ({_COLUMNS}) "
                       "SELECT experiment, variant, goal, cell, day, ?, exposures, "
                       "conversions, value_sum, value_sq_sum FROM counts", (UNKNOWN_PERIOD,))
            db.execute("DROP TABLE counts")
            db.execute("ALTER TABLE counts_periods RENAME TO counts")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _applied_already(db: sqlite3.Connection, batch_id: BatchId, now: float) -> bool:
    """True if the writer's batch was applied; else notes it as applied (in the caller's
    transaction)."""
    row = db.execute("SELECT number FROM flushed WHERE writer = ?",
                     (batch_id.writer,)).fetchone()
    if row is not None and row[0] >= batch_id.number:
        return True
    db.execute("DELETE FROM flushed WHERE at < ?", (now - _FLUSHED_FOR,))
    db.execute("INSERT OR REPLACE INTO flushed VALUES (?, ?, ?)", (*batch_id, now))
    return False


def _add(db: sqlite3.Connection, rows: Sequence[_Row], converted: Sequence[Converted],
         batch_id: BatchId | None, now: float) -> None:
    # IMMEDIATE takes the write lock up front: a reader turning writer mid-transaction could
    # deadlock with another process and fail at once instead of waiting its busy timeout.
    db.execute("BEGIN IMMEDIATE")
    try:
        if batch_id is not None and _applied_already(db, batch_id, now):
            db.execute("COMMIT")
            return
        db.executemany(_ADD, rows)
        if converted:
            db.execute("DELETE FROM converted WHERE expires <= ?", (now,))
        for conversion in converted:
            key, value = conversion.key, conversion.value
            if db.execute(_CONVERTED, (key.experiment, key.variant, key.goal, conversion.visitor,
                                       now + conversion.window, now)).rowcount:
                db.execute(_ADD, (*key, 0, 1, value, value * value))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _fold(db: sqlite3.Connection, rows: Sequence[CountKey], into: str) -> None:
    """Each row's counts moved into cell `into`'s row, in one transaction (see _add)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for key in rows:
            if key.cell == into:
                continue
            for taken in db.execute(_TAKE, key).fetchall():
                db.execute(_ADD, (*key._replace(cell=into), *taken))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
