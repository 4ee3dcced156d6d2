from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from edge_personalizer.errors import StoreError, TableUnreadable
from edge_personalizer.learn.counters import OTHER_CELLS, Converted, CountKey, Tally
from edge_personalizer.learn.store.base import (
    MAX_TABLE_BYTES,
    BatchId,
    Store,
    check_table,
    read_table,
)
from edge_personalizer.learn.store.redis import RedisStore
from edge_personalizer.learn.store.sqlite import SqliteStore

from ...servers import RedisServer

# What every store does the same way (test_sqlite.py and test_redis.py run these on theirs).


async def counts_a_visitor_s_conversion_once(store: Store, bold: CountKey,
                                             window: float) -> None:
    """Within its window a visitor's conversion counts once, however often it comes; the
    same visitor's conversion for another variant counts for that one."""
    buy = bold._replace(goal="buy")
    bought = Converted(buy, "v1", 9.5, window)
    signed_up = Converted(buy._replace(goal="signup"), "v1", window=window)
    shared_anew = Converted(buy._replace(variant="bolder"), "v1", window=window)
    await store.flush({bold: Tally(2)}, [bought, bought])       # a beacon sent twice
    await store.flush({}, [bought, Converted(buy, "v2", 0.5, window), signed_up,
                           shared_anew])
    assert await store.totals() == {
        bold: Tally(2), buy: Tally(0, 2, 10.0, 90.5), signed_up.key: Tally(0, 1),
        shared_anew.key: Tally(0, 1)}
    await anyio.sleep(window * 1.3)   # the window has passed: remembered no longer
    await store.flush({}, [bought])
    assert (await store.totals())[buy] == Tally(0, 3, 19.5, 180.75)
    await store.close()


async def applies_a_batch_once(store: Store, bold: CountKey) -> None:
    """A batch sent again (its answer lost) or older than its writer's last is not
    applied; another writer's is."""
    first, second = BatchId("worker-1", 1), BatchId("worker-1", 2)
    await store.flush({bold: Tally(3)}, batch_id=first)
    await store.flush({bold: Tally(3)}, batch_id=first)     # its answer was lost: sent again
    await store.flush({bold: Tally(1)}, batch_id=second)
    await store.flush({bold: Tally(1)}, batch_id=first)     # older than the last applied
    await store.flush({bold: Tally(5)}, batch_id=BatchId("worker-2", 1))
    assert await store.totals() == {bold: Tally(9)}
    await store.close()


@pytest.mark.parametrize("name", ["weights", "bandit:hero-test.v2", "a" * 100])
def test_table_names_a_store_can_hold_as_one_key(name: str) -> None:
    check_table(name, b"{}")


@pytest.mark.parametrize("name", ["", "with space", "a/b", "a" * 101, "ünïcode"])
def test_other_table_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="table name"):
        check_table(name, b"{}")


def test_tables_are_small() -> None:
    check_table("model", b"x" * MAX_TABLE_BYTES)
    with pytest.raises(ValueError, match="at most 1048576 bytes"):
        check_table("model", b"x" * (MAX_TABLE_BYTES + 1))


async def folds_rows_into_the_other_cell(store: Store, bold: CountKey) -> None:
    """A fold moves each row's counts into the other cell's row of the same variant,
    goal, day and period, adding to what is there, and leaves the other rows alone."""
    buy, later = bold._replace(goal="buy"), bold._replace(period=3)
    other, kept = bold._replace(cell=OTHER_CELLS), bold._replace(cell="kept")
    await store.flush({bold: Tally(3), buy: Tally(0, 1, 9.5, 90.25), later: Tally(1),
                       other: Tally(2), kept: Tally(7)})
    await store.fold([bold, buy, later, bold._replace(cell="never-counted"), other],
                     into=OTHER_CELLS)
    assert await store.totals() == {
        other: Tally(5), other._replace(goal="buy"): Tally(0, 1, 9.5, 90.25),
        later._replace(cell=OTHER_CELLS): Tally(1), kept: Tally(7)}
    await store.fold([], into=OTHER_CELLS)
    await store.close()


async def a_flush_during_folds_is_counted_once(flushing: Store, folding: Store,
                                               bold: CountKey) -> None:
    """Another worker's flushes add to a row while a trainer folds it, again and again:
    every count ends up once, in one of the two rows."""
    done = anyio.Event()

    async def flush() -> None:
        for _ in range(200):
            await flushing.flush({bold: Tally(1, 1, 0.5, 0.25)})
        done.set()

    async def fold() -> None:
        while not done.is_set():
            await folding.fold([bold], into=OTHER_CELLS)
            await anyio.sleep(0)

    async with anyio.create_task_group() as group:
        group.start_soon(flush)
        group.start_soon(fold)
    await folding.fold([bold], into=OTHER_CELLS)
    assert await folding.totals() == {bold._replace(cell=OTHER_CELLS): Tally(200, 200, 100.0,
                                                                             50.0)}
    await flushing.close()
    await folding.close()


# Redis kept busy for half a second: a script that waits, as a slow command would.
_BUSY = """
local began = redis.call('TIME')
repeat local now = redis.call('TIME')
until (now[1] - began[1]) * 1000000 + (now[2] - began[2]) > 500000
"""


@pytest.mark.anyio
async def test_a_read_that_times_out_is_an_outage_not_a_table_that_does_not_read(
        redis_server: RedisServer) -> None:
    # The store answered the ping that followed, so a read that timed out (or met a
    # dropped connection) was taken for a malformed copy: the goals' record was rebuilt
    # from nothing and published over the one kept, and a trainer published older
    # weights over newer ones.
    import redis.asyncio

    store = RedisStore(redis_server.url, timeout=0.3)
    await store.publish("experiment-goals", b"{}")
    admin = redis.asyncio.Redis.from_url(redis_server.url)

    async def busy() -> None:
        await admin.eval(_BUSY, 0)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(busy)
        await anyio.sleep(0.05)   # Redis busy for 0.5 s: the read times out at 0.3 s
        with pytest.raises(StoreError) as caught:
            await read_table(store, "experiment-goals")
    assert not isinstance(caught.value, TableUnreadable) and caught.value.passes
    assert (await read_table(store, "experiment-goals")) is not None   # (it passed)
    await admin.hdel("ep:table:experiment-goals", "payload")
    with pytest.raises(TableUnreadable, match="table experiment-goals: the store's copy"):
        await read_table(store, "experiment-goals")
    await admin.aclose()
    await store.close()


@pytest.mark.anyio
async def test_a_store_that_will_not_answer_again_is_no_table_that_does_not_read(
        tmp_path: Path) -> None:
    # An SQLite file deleted while the server ran is a failure that does not pass (until a
    # restart); read_table took every such StoreError for a malformed copy, so health
    # named each table as one that does not read.
    store = SqliteStore(tmp_path / "ep.db")
    await store.publish("experiment-goals", b"{}")
    (tmp_path / "ep.db").unlink()
    with pytest.raises(StoreError, match="deleted or replaced") as caught:
        await read_table(store, "experiment-goals")
    assert not isinstance(caught.value, TableUnreadable)
    await store.close()
