from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from edge_personalizer.learn.counters import Accumulator, Batch, Converted, CountKey, Tally
from edge_personalizer.learn.flusher import Flusher
from edge_personalizer.learn.store import BatchId, Table, open_store
from edge_personalizer.learn.store.redis import RedisStore
from edge_personalizer.learn.store.sqlite import SqliteStore

from ..servers import RedisServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-12-02"
SEEN = CountKey("hero", "bold", "", "all", DAY)


async def exposures(store: SqliteStore | RedisStore) -> int:
    return sum(tally.exposures for tally in (await store.totals()).values())


async def test_counts_reach_the_store_about_once_an_interval(tmp_path: Path) -> None:
    counters, store = Accumulator(), SqliteStore(tmp_path / "ep.db")
    async with anyio.create_task_group() as tasks:
        await tasks.start(Flusher(counters, store, interval=0.05).run)
        counters.expose("hero", "bold", day=DAY)
        with anyio.fail_after(2):
            while await exposures(store) < 1:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    await store.close()


async def test_stopping_flushes_what_is_left(tmp_path: Path) -> None:
    counters, store = Accumulator(), SqliteStore(tmp_path / "ep.db")
    async with anyio.create_task_group() as tasks:
        await tasks.start(Flusher(counters, store, interval=3600).run)
        for _ in range(7):
            counters.expose("hero", "bold", day=DAY)
        tasks.cancel_scope.cancel()
    assert await store.totals() == {SEEN: Tally(7)}
    await store.close()


async def test_many_keys_go_in_several_writes(tmp_path: Path) -> None:
    counters, store = Accumulator(), SqliteStore(tmp_path / "ep.db")
    for n in range(25):
        counters.expose("hero", f"v{n}", day=DAY)
    assert await Flusher(counters, store, batch_keys=10).flush()
    assert len(await store.totals()) == 25 and counters.held_keys == 0
    await store.close()


async def test_a_stopped_store_costs_the_counting_nothing_and_gets_the_counts_back(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    counters, store = Accumulator(), RedisStore(redis_server.url)
    flusher = Flusher(counters, store)
    counters.expose("hero", "bold", day=DAY)
    assert await flusher.flush()
    redis_server.stop()
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(1000):
            counters.expose("hero", "bold", day=DAY)
        assert time.perf_counter() - started < 0.1   # ~0.3 µs an increment; 0.1 ms is slack
        started = time.monotonic()
        assert not await flusher.flush()
        assert time.monotonic() - started < 0.5     # refused at once, not retried
    assert flusher.failed_flushes == 5 and flusher.outages == 1
    assert [r.message.split(" (")[0] for r in caplog.records] == [
        f"counter store {redis_server.url} failed"]   # once per outage
    redis_server.start()   # empty: what was written before the outage went with it
    assert await flusher.flush() and flusher.healthy
    assert await store.totals() == {SEEN: Tally(5000)}
    assert "answers again after 5 failed flushes; 0 events dropped" in caplog.records[-1].message
    await store.close()


async def test_an_idle_worker_notices_an_outage_and_its_end(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # With nothing to write, the store is asked whether it is there: ep_store_up and the
    # log tell an outage though no page came (they said 1, and nothing, until one did).
    counters, store = Accumulator(), RedisStore(redis_server.url)
    flusher = Flusher(counters, store)
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    assert await flusher.flush() and flusher.healthy
    redis_server.stop()
    assert not await flusher.flush()
    assert not flusher.healthy and flusher.outages == 1
    assert caplog.records[-1].message.startswith(f"counter store {redis_server.url} failed")
    redis_server.start()
    assert await flusher.flush() and flusher.healthy
    assert "answers again after 1 failed flushes" in caplog.records[-1].message
    await store.close()


async def test_an_outage_whose_cause_changes_says_so_once(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # Redis back with a password this worker lacks: the log still said only the
    # ConnectionError the outage began with (connection refused).
    import redis.asyncio

    counters, store = Accumulator(), RedisStore(redis_server.url)
    flusher = Flusher(counters, store)
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    redis_server.stop()
    counters.expose("hero", "bold", day=DAY)
    assert not await flusher.flush()
    redis_server.start()
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    await admin.config_set("requirepass", "s3cret")
    for _ in range(3):
        assert not await flusher.flush()
    told = [r.message for r in caplog.records]
    assert len(told) == 2 and "ConnectionError" in told[0], told
    assert told[1].startswith(f"counter store {redis_server.url} still fails, now for another "
                              "cause") and "Authentication" in told[1], told
    await admin.config_set("requirepass", "")
    await admin.aclose()
    assert await flusher.flush() and await store.totals() == {SEEN: Tally(1)}
    assert "answers again after 4 failed flushes" in caplog.records[-1].message
    await store.close()


async def test_stopping_while_the_store_is_down_tells_the_counts_lost(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # A restart during an outage dropped the counts waiting in memory without a word; with
    # nothing waiting, the last flush asks nothing and said the store "answers again".
    counters, store = Accumulator(), RedisStore(redis_server.url, timeout=0.5)
    redis_server.stop()
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    for waiting in (0, 3):
        async with anyio.create_task_group() as tasks:
            await tasks.start(Flusher(counters, store, interval=0.05, final_timeout=2).run)
            await anyio.sleep(0.2)   # the outage noticed
            for n in range(waiting):
                counters.expose("hero", f"v{n}", day=DAY)
            tasks.cancel_scope.cancel()
    told = [r.message for r in caplog.records]
    assert not any("answers again" in message for message in told), told
    assert told[-1] == (f"counter store {redis_server.url} did not answer at shutdown: 3 "
                        "keys of counts waiting in memory were not written (their exposures "
                        "and conversions are lost)")
    assert sum("did not answer at shutdown" in message for message in told) == 1
    await store.close()


async def test_a_hung_store_never_holds_up_the_event_loop(redis_server: RedisServer) -> None:
    counters, store = Accumulator(), RedisStore(redis_server.url, timeout=1.0)
    flusher = Flusher(counters, store)
    counters.expose("hero", "bold", day=DAY)
    longest_pause = 0.0

    async def tick() -> None:
        nonlocal longest_pause
        while True:
            started = time.monotonic()
            await anyio.sleep(0.005)
            longest_pause = max(longest_pause, time.monotonic() - started)

    redis_server.pause()
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            started = time.monotonic()
            assert not await flusher.flush()
            assert 0.9 < time.monotonic() - started < 2.0   # the store's timeout, once
            tasks.cancel_scope.cancel()
    finally:
        redis_server.resume()
    assert longest_pause < 0.3
    assert await flusher.flush()
    assert (await store.totals())[SEEN].exposures in (1, 2)   # the timed-out write may land
    await store.close()


async def test_past_the_bound_counts_are_dropped_counted_and_reported(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    counters, store = Accumulator(max_keys=2), RedisStore(redis_server.url)
    flusher = Flusher(counters, store)
    redis_server.stop()
    for variant in ("a", "b", "c", "d"):
        counters.expose("hero", variant, day=DAY)
    counters.expose("hero", "a", day=DAY)
    assert not await flusher.flush()
    counters.expose("hero", "e", day=DAY)
    assert counters.dropped == 3
    redis_server.start()
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    assert await flusher.flush()
    assert {key.variant: tally.exposures for key, tally in (await store.totals()).items()} == {
        "a": 2, "b": 1}
    assert "3 events dropped meanwhile" in caplog.records[-1].message
    await store.close()


async def test_a_locked_sqlite_file_never_holds_up_the_event_loop(tmp_path: Path) -> None:
    counters, store = Accumulator(), SqliteStore(tmp_path / "ep.db", timeout=1.0)
    flusher = Flusher(counters, store)
    counters.expose("hero", "bold", day=DAY)
    holder = sqlite3.connect(tmp_path / "ep.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another worker holds the write lock
    longest_pause = 0.0

    async def tick() -> None:
        nonlocal longest_pause
        while True:
            started = time.monotonic()
            await anyio.sleep(0.005)
            longest_pause = max(longest_pause, time.monotonic() - started)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        assert not await flusher.flush()   # waited out SQLite's busy timeout, in a thread
        tasks.cancel_scope.cancel()
    holder.execute("ROLLBACK")
    holder.close()
    assert longest_pause < 0.3
    assert await flusher.flush() and await store.totals() == {SEEN: Tally(1)}
    await store.close()


def test_a_killed_worker_loses_at_most_its_last_second_of_counts(
        redis_server: RedisServer) -> None:
    worker = subprocess.Popen([sys.executable, "-m", "tests.learn.count_worker",
                               redis_server.url, "0", "forever"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    first = worker.stdout.readline()   # counting has begun (starting takes long when loaded)
    time.sleep(3.5)
    worker.kill()   # SIGKILL: no final flush
    killed_at = time.time()
    with worker.stdout:
        lines = [first, *worker.stdout]
    progress = [(float(t), int(n)) for t, n in (line.split() for line in lines)]
    worker.wait()
    written = anyio.run(_exposures_in, redis_server.url)
    counted_by = progress[-1][1]
    # a flush every second; a quarter to half a second more for a loaded machine's scheduling
    a_second_before = max(n for t, n in progress if t <= killed_at - 1.5)
    assert a_second_before <= written <= counted_by, (a_second_before, written, counted_by)



async def test_a_write_that_timed_out_but_landed_is_not_counted_again(
        redis_server: RedisServer) -> None:
    counters, store = Accumulator(), RedisStore(redis_server.url, timeout=0.3)
    flusher = Flusher(counters, store)
    counters.expose("hero", "control", day=DAY)
    assert await flusher.flush()            # connected, the flush script loaded
    for _ in range(8):
        counters.expose("hero", "bold", day=DAY)
    counters.convert("hero", "bold", "buy", day=DAY, visitor="v1", window=60.0)
    counters.convert("hero", "bold", "buy", day=DAY, value=3.0)
    redis_server.pause()                    # the write reaches Redis, the answer never comes
    try:
        assert not await flusher.flush()
    finally:
        redis_server.resume()               # ...and Redis applies it now
    counters.expose("hero", "bold", day=DAY)   # counted meanwhile: sent after, once
    with anyio.fail_after(5):
        while not await flusher.flush():
            await anyio.sleep(0.1)
    totals = await store.totals()
    await store.close()
    assert totals[SEEN] == Tally(9)
    assert totals[SEEN._replace(goal="buy")] == Tally(0, 2, 3.0, 9.0)
    assert counters.held_keys == 0

async def test_a_key_in_the_way_keeps_every_count_waiting_and_says_which(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # A string where another experiment's counts belong: the batch's counts, this
    # experiment's too, were acknowledged as written and lost, while the log said they waited.
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.set("ep:counts:footer", "garbage")
    counters, store = Accumulator(), RedisStore(redis_server.url)
    flusher = Flusher(counters, store)
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    for _ in range(3):
        counters.expose("hero", "bold", day=DAY)
        counters.expose("footer", "a", day=DAY)
        assert not await flusher.flush()
    assert flusher.last_error is not None and "ep:counts:footer holds a string" in \
        flusher.last_error
    (told,) = [r.message for r in caplog.records]
    assert "failed" in told and "ep:counts:footer holds a string" in told
    assert counters.held_keys == 2 and not await client.exists("ep:counts:hero")
    await client.delete("ep:counts:footer")
    assert await flusher.flush() and flusher.healthy and flusher.last_error is None
    assert await flusher.flush()
    assert await store.totals() == {SEEN: Tally(3), CountKey("footer", "a", "", "all", DAY):
                                    Tally(3)}
    await client.aclose()
    await store.close()


async def test_each_key_in_the_way_is_told_and_a_cause_come_back_is_not_told_again(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # Both refusals were one cause (the same error class): once the first key was removed,
    # the log never named the second, and an operator took the fix for done.
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.set("ep:counts:aaa", "garbage")
    await client.set("ep:counts:bbb", "garbage")
    counters, store = Accumulator(), RedisStore(redis_server.url)
    flusher = Flusher(counters, store)
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.flusher")
    counters.expose("aaa", "x", day=DAY)
    counters.expose("bbb", "x", day=DAY)
    assert not await flusher.flush()
    await client.delete("ep:counts:aaa")
    assert not await flusher.flush()
    await client.set("ep:counts:aaa", "garbage")   # the first cause, back
    assert not await flusher.flush()
    told = [r.message for r in caplog.records]
    assert len(told) == 2 and "ep:counts:aaa holds a string" in told[0], told
    assert "takes them again" in told[0]
    assert "another cause" in told[1] and "ep:counts:bbb holds a string" in told[1], told
    await client.aclose()
    await store.close()


async def _exposures_in(url: str) -> int:
    store = RedisStore(url)
    try:
        return await exposures(store)
    finally:
        await store.close()


class BrokenStore:
    """A store with a bug: its flush raises something other than StoreError."""

    location = "broken://"

    def __init__(self) -> None:
        self.calls = 0

    async def flush(self, batch: Batch, converted: Sequence[Converted] = (), *,
                    batch_id: BatchId | None = None) -> None:
        self.calls += 1
        raise TypeError("a bug")

    async def totals(self, experiment: str | None = None) -> dict[CountKey, Tally]:
        return {}

    def unreadable(self) -> dict[str, list[str]]:
        return {}

    async def fold(self, rows: Sequence[CountKey], *, into: str) -> None:
        pass

    async def publish(self, name: str, payload: bytes) -> int:
        return 0

    async def publish_if(self, name: str, payload: bytes, *, version: int) -> int | None:
        return None

    async def table(self, name: str, *, newer_than: int = 0) -> Table | None:
        return None

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_bug_in_a_store_keeps_the_counts_and_the_loop_running() -> None:
    counters, store = Accumulator(), BrokenStore()
    async with anyio.create_task_group() as tasks:
        await tasks.start(Flusher(counters, store, interval=0.01).run)
        counters.expose("hero", "bold", day=DAY)
        with anyio.fail_after(2):
            while store.calls < 3:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    counters.collect()
    assert counters.pending_batch(10) == {SEEN: Tally(1)}


async def test_settings_are_checked(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/ep.db")
    with pytest.raises(ValueError, match="interval"):
        Flusher(Accumulator(), store, interval=0)
    await store.close()
