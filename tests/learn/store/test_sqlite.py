from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from edge_personalizer.errors import StoreError
from edge_personalizer.learn.counters import UNKNOWN_PERIOD, CountKey, Tally
from edge_personalizer.learn.store.sqlite import SqliteStore, sqlite_url

from .test_base import (
    a_flush_during_folds_is_counted_once,
    applies_a_batch_once,
    counts_a_visitor_s_conversion_once,
    folds_rows_into_the_other_cell,
)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]
BOLD = CountKey("hero", "bold", "", "all", "2026-12-02")
BOLD_BUY = CountKey("hero", "bold", "buy", "all", "2026-12-02")
OTHER = CountKey("footer", "a", "", "all", "2026-12-02")


async def test_flushes_add_to_the_totals(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "ep.db")   # the directory is created
    await store.flush({BOLD: Tally(3), BOLD_BUY: Tally(0, 1, 9.5, 90.25)})
    await store.flush({BOLD: Tally(2), BOLD_BUY: Tally(0, 2, 0.5, 0.25), OTHER: Tally(1)})
    await store.flush({})
    assert await store.totals() == {
        BOLD: Tally(5), BOLD_BUY: Tally(0, 3, 10.0, 90.5), OTHER: Tally(1)}
    assert await store.totals("footer") == {OTHER: Tally(1)}
    await store.close()


async def test_a_file_deleted_while_counting_is_an_error_every_call_says(
        tmp_path: Path) -> None:
    # SQLite writes on into a deleted file: every count after an operator's `rm ep.db`
    # was lost, while health said the writes were fine. Opening a new file instead breaks
    # other workers still holding the old one (they share its -wal and -shm files).
    path = tmp_path / "ep.db"
    store = SqliteStore(path)
    await store.flush({BOLD: Tally(3)})
    path.unlink()
    for call in (store.flush({BOLD: Tally(2)}), store.ping(), store.totals()):
        with pytest.raises(StoreError, match="deleted or replaced while the server ran"):
            await call
    assert not path.exists()
    await store.close()


async def test_a_ping_reads_the_file_and_fails_once_it_is_unusable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "counts.db")
    await store.ping()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.ping()


async def test_a_ping_never_waits_on_a_call_holding_the_file(tmp_path: Path) -> None:
    # A flush waiting out the busy timeout (another process writing) holds this worker's
    # connection for seconds; a health check's ping answers all the same.
    store = SqliteStore(tmp_path / "counts.db")
    with store._lock:
        started = time.monotonic()
        await store.ping()
        assert time.monotonic() - started < 0.5
    await store.close()


async def test_each_period_of_a_key_counts_apart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ep.db")
    later = BOLD._replace(period=3)
    await store.flush({BOLD: Tally(2), later: Tally(5)})
    await store.flush({later: Tally(1)})
    assert await store.totals() == {BOLD: Tally(2), later: Tally(6)}
    await store.close()


_BEFORE_PERIODS = """
CREATE TABLE counts (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, goal TEXT NOT NULL,
    cell TEXT NOT NULL, day TEXT NOT NULL,
    exposures INTEGER NOT NULL, conversions INTEGER NOT NULL,
    value_sum REAL NOT NULL, value_sq_sum REAL NOT NULL,
    PRIMARY KEY (experiment, variant, goal, cell, day)
) WITHOUT ROWID;
INSERT INTO counts VALUES ('hero', 'bold', '', 'all', '2026-12-02', 7, 0, 0.0, 0.0);
INSERT INTO counts VALUES ('hero', 'bold', 'buy', 'all', '2026-12-02', 0, 2, 9.0, 41.0);
"""


async def test_a_file_from_before_periods_keeps_its_counts_in_the_unknown_period(
        tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "ep.db")) as db:
        db.executescript(_BEFORE_PERIODS)
    one, two = SqliteStore(tmp_path / "ep.db"), SqliteStore(tmp_path / "ep.db")   # twice
    old, old_buy = BOLD._replace(period=UNKNOWN_PERIOD), BOLD_BUY._replace(period=UNKNOWN_PERIOD)
    assert await one.totals() == {old: Tally(7), old_buy: Tally(0, 2, 9.0, 41.0)}
    # a conversion of a visitor counted before periods adds to the old row
    await two.flush({old_buy: Tally(0, 1, 1.0, 1.0), BOLD: Tally(1)})
    assert await one.totals() == {old: Tally(7), old_buy: Tally(0, 3, 10.0, 42.0),
                                  BOLD: Tally(1)}
    await one.close()
    await two.close()


def test_opening_waits_for_another_worker_bringing_the_file_up_to_date(
        tmp_path: Path) -> None:
    # Another worker holds the write lock past the busy timeout (as its copy of a big
    # file's rows does): this one waits for it, and starts.
    with closing(sqlite3.connect(tmp_path / "ep.db")) as db:
        db.execute("PRAGMA journal_mode = WAL")   # (as every store file is)
        db.executescript(_BEFORE_PERIODS)
    holder = sqlite3.connect(tmp_path / "ep.db", isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.5, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    store = SqliteStore(tmp_path / "ep.db", timeout=0.2)
    assert time.monotonic() - started >= 1.0
    release.join()
    holder.close()
    with closing(sqlite3.connect(tmp_path / "ep.db")) as db:
        assert {row[0] for row in db.execute("SELECT period FROM counts")} == {UNKNOWN_PERIOD}
        assert db.execute("PRAGMA busy_timeout").fetchone() == (5000,)   # (its own)
    assert store._db.execute("PRAGMA busy_timeout").fetchone() == (200,)
    anyio.run(store.close)


async def test_two_stores_on_one_file_see_each_others_counts(tmp_path: Path) -> None:
    one, two = SqliteStore(tmp_path / "ep.db"), SqliteStore(tmp_path / "ep.db")
    await one.flush({BOLD: Tally(1)})
    await two.flush({BOLD: Tally(1)})
    assert await one.totals() == await two.totals() == {BOLD: Tally(2)}
    with closing(sqlite3.connect(tmp_path / "ep.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    await one.close()
    await two.close()


def test_four_worker_processes_flushing_into_one_file_sum(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "ep.db")
    workers = [subprocess.Popen([sys.executable, "-m", "tests.learn.count_worker", url,
                                 str(seed), "10000"], cwd=ROOT, stdout=subprocess.PIPE)
               for seed in (1, 2, 3, 4)]
    expected: dict[CountKey, Tally] = {}
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        for key, tally in json.loads(out).items():
            count_key, counted = CountKey(*json.loads(key)), Tally(*tally)
            held = expected.get(count_key)
            expected[count_key] = counted if held is None else held.plus(counted)
    totals = _totals(tmp_path / "ep.db")
    assert totals.keys() == expected.keys()
    for key, tally in expected.items():
        assert totals[key][:2] == tally[:2]
        assert totals[key].value_sum == pytest.approx(tally.value_sum)
        assert totals[key].value_sq_sum == pytest.approx(tally.value_sq_sum)
    assert sum(t.exposures + t.conversions for t in totals.values()) == 40_000


def _totals(path: Path) -> dict[CountKey, Tally]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT experiment, variant, goal, cell, day, period, exposures, "
                          "conversions, value_sum, value_sq_sum FROM counts").fetchall()
    return {CountKey(*row[:6]): Tally(*row[6:]) for row in rows}


async def test_a_locked_file_fails_the_flush_within_the_timeout_and_adds_nothing(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ep.db", timeout=0.2)
    holder = sqlite3.connect(tmp_path / "ep.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another process holds the write lock
    started = time.monotonic()
    with pytest.raises(StoreError, match="locked"):
        await store.flush({BOLD: Tally(1)})
    assert time.monotonic() - started < 1.5
    holder.execute("ROLLBACK")
    await store.flush({BOLD: Tally(1)})
    assert await store.totals() == {BOLD: Tally(1)}
    holder.close()
    await store.close()


async def test_tables_are_published_with_growing_versions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ep.db")
    assert await store.table("weights") is None
    assert await store.publish("weights", b'{"a": 1}') == 1
    assert await store.publish("weights", b'{"a": 2}') == 2
    table = await store.table("weights")
    assert table is not None and (table.version, table.payload) == (2, b'{"a": 2}')
    assert abs(table.published_at - time.time()) < 5
    assert await store.table("weights", newer_than=2) is None
    with pytest.raises(ValueError, match="table name"):
        await store.publish("no spaces", b"")
    await store.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ep.db").write_bytes(b"this is not an SQLite file, it is much longer" * 40)
    with pytest.raises(StoreError, match="not a usable counter store"):
        SqliteStore(tmp_path / "ep.db")


def test_a_directory_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    # It said "[Errno 17] File exists" of a data_dir given as a file's path.
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=f"cannot open the counter store: {tmp_path}/file "
                                         "is a file, not a folder"):
        SqliteStore(tmp_path / "file" / "ep.db")
    with pytest.raises(StoreError, match="file is a file, not a folder"):
        SqliteStore(tmp_path / "file" / "deeper" / "ep.db")
    server = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", "http://127.0.0.1:9",
         "--data-dir", str(tmp_path / "file")], capture_output=True, text=True, timeout=60)
    assert server.returncode == 2
    assert f"{tmp_path}/file is a file, not a folder" in server.stderr


def test_sqlite_url_is_absolute(tmp_path: Path) -> None:
    assert sqlite_url(Path("ep.db")) == f"sqlite://{Path.cwd() / 'ep.db'}"


async def test_a_visitor_s_conversion_counts_once_within_its_window(
        tmp_path: Path) -> None:
    await counts_a_visitor_s_conversion_once(SqliteStore(tmp_path / "ep.db"), BOLD, window=0.3)


async def test_a_batch_sent_again_is_applied_once(tmp_path: Path) -> None:
    await applies_a_batch_once(SqliteStore(tmp_path / "ep.db"), BOLD)


async def test_a_fold_moves_rows_into_the_other_cell_in_one_go(tmp_path: Path) -> None:
    await folds_rows_into_the_other_cell(SqliteStore(tmp_path / "ep.db"), BOLD)


async def test_a_flush_while_a_row_is_folded_counts_once(tmp_path: Path) -> None:
    # two connections, as a worker's flusher and another worker's trainer have
    await a_flush_during_folds_is_counted_once(SqliteStore(tmp_path / "ep.db"),
                                               SqliteStore(tmp_path / "ep.db"), BOLD)


@pytest.mark.parametrize(("row", "said"), [
    ((1, None, 1.0), "version 1, payload NoneType, published_at 1.0"),
    ((1, "text", 1.0), "version 1, payload str, published_at 1.0"),
    (("one", b"{}", 1.0), "version 'one', payload bytes, published_at 1.0"),
    ((1, b"{}", None), "version 1, payload bytes, published_at None"),
])
async def test_a_table_row_no_publication_writes_is_a_store_error_naming_it(
        tmp_path: Path, row: tuple[object, object, object], said: str) -> None:
    # A file whose tables table came without NOT NULL (made by hand, or by another
    # program): a NULL payload raised TypeError out of every reader of the table.
    path = tmp_path / "ep.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE tables (name TEXT PRIMARY KEY, version, payload, "
                   "published_at)")
        db.execute("INSERT INTO tables VALUES ('affinity-model', ?, ?, ?)", row)
    store = SqliteStore(path)
    with pytest.raises(StoreError, match=f"table affinity-model: a malformed row \\({said}\\)"):
        await store.table("affinity-model")
    await store.publish("affinity-model", b"{}")   # the trainer's next, over it
    published = await store.table("affinity-model")
    assert published is not None and published.payload == b"{}"
    await store.close()
