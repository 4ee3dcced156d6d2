from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from edge_personalizer.errors import StoreError
from edge_personalizer.learn.counters import (
    UNKNOWN_PERIOD,
    Accumulator,
    Converted,
    CountKey,
    Tally,
)
from edge_personalizer.learn.store import BatchId
from edge_personalizer.learn.store.redis import RedisStore

from ...servers import RedisServer
from .test_base import (
    a_flush_during_folds_is_counted_once,
    applies_a_batch_once,
    counts_a_visitor_s_conversion_once,
    folds_rows_into_the_other_cell,
)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]
BOLD = CountKey("hero", "bold", "", "mobile|search", "2026-12-02")
BOLD_BUY = CountKey("hero", "bold", "buy", "mobile|search", "2026-12-02")
OTHER = CountKey("footer", "a", "", "all", "2026-12-02")


async def test_flushes_add_to_the_totals(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    await store.flush({BOLD: Tally(3), BOLD_BUY: Tally(0, 1, 9.5, 90.25)})
    await store.flush({BOLD: Tally(2), BOLD_BUY: Tally(0, 2, 0.5, 0.25), OTHER: Tally(1)})
    await store.flush({})
    assert await store.totals() == {
        BOLD: Tally(5), BOLD_BUY: Tally(0, 3, 10.0, 90.5), OTHER: Tally(1)}
    assert await store.totals("footer") == {OTHER: Tally(1)}
    await store.close()


async def test_fields_from_before_periods_are_read_in_the_unknown_period(
        redis_server: RedisServer) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.hset("ep:counts:hero", mapping={   # as written before periods were kept
        '["bold","","all","2026-12-02","e"]': 7, '["bold","buy","all","2026-12-02","c"]': 2})
    await client.sadd("ep:experiments", "hero")
    await client.aclose()
    store = RedisStore(redis_server.url)
    old = CountKey("hero", "bold", "", "all", "2026-12-02", UNKNOWN_PERIOD)
    old_buy = old._replace(goal="buy")
    later = old._replace(period=2)
    await store.flush({old_buy: Tally(0, 1), later: Tally(4)})
    assert await store.totals() == {old: Tally(7), old_buy: Tally(0, 3), later: Tally(4)}
    await store.close()


async def test_two_instances_counting_into_one_redis_sum(redis_server: RedisServer) -> None:
    stores = [RedisStore(redis_server.url), RedisStore(redis_server.url)]
    for store, times in zip(stores, (300, 200), strict=True):
        counters = Accumulator()
        for _ in range(times):
            counters.expose("hero", "bold", day="2026-12-02")
            counters.convert("hero", "bold", "buy", value=2.0, day="2026-12-02")
        counters.collect()
        await store.flush(counters.pending_batch(100))
    key = CountKey("hero", "bold", "", "all", "2026-12-02")
    assert await stores[0].totals() == {key: Tally(500), key._replace(goal="buy"):
                                        Tally(0, 500, 1000.0, 2000.0)}
    for store in stores:
        await store.close()


def test_two_worker_processes_flushing_into_one_redis_sum(redis_server: RedisServer) -> None:
    workers = [subprocess.Popen([sys.executable, "-m", "tests.learn.count_worker",
                                 redis_server.url, str(seed), "20000"],
                                cwd=ROOT, stdout=subprocess.PIPE) for seed in (1, 2)]
    expected: dict[CountKey, Tally] = {}
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        for key, tally in json.loads(out).items():
            count_key, counted = CountKey(*json.loads(key)), Tally(*tally)
            held = expected.get(count_key)
            expected[count_key] = counted if held is None else held.plus(counted)
    totals = anyio.run(_totals, redis_server.url)
    assert totals.keys() == expected.keys()
    for key, tally in expected.items():
        assert totals[key][:2] == tally[:2]
        assert totals[key].value_sum == pytest.approx(tally.value_sum)
        assert totals[key].value_sq_sum == pytest.approx(tally.value_sq_sum)


async def _totals(url: str) -> dict[CountKey, Tally]:
    store = RedisStore(url)
    try:
        return await store.totals()
    finally:
        await store.close()


async def test_a_stopped_server_fails_the_flush_at_once(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    await store.flush({BOLD: Tally(1)})
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(StoreError, match="127.0.0.1"):
        await store.flush({BOLD: Tally(1)})
    assert time.monotonic() - started < 0.5
    redis_server.start()   # empty: nothing is persisted
    await store.flush({BOLD: Tally(2)})
    assert await store.totals() == {BOLD: Tally(2)}
    await store.close()


async def test_a_ping_answers_while_the_server_does(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    await store.ping()
    redis_server.stop()
    with pytest.raises(StoreError, match="127.0.0.1"):
        await store.ping()
    redis_server.start()
    await store.ping()
    await store.close()


async def test_a_hung_server_fails_the_flush_within_the_timeout(
        redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, timeout=0.3)
    redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="Timeout"):
            await store.flush({BOLD: Tally(1)})
        assert time.monotonic() - started < 1.0
    finally:
        redis_server.resume()
    await store.flush({BOLD: Tally(1)})
    assert (await store.totals())[BOLD].exposures in (1, 2)   # the timed-out write may land
    await store.close()


async def test_tables_are_published_with_growing_versions(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix="site1")
    assert await store.table("weights") is None
    assert await store.publish("weights", b"\x00binary\xff") == 1
    assert await store.publish("weights", b'{"a": 2}') == 2
    table = await store.table("weights", newer_than=1)
    assert table is not None and (table.version, table.payload) == (2, b'{"a": 2}')
    assert abs(table.published_at - time.time()) < 5
    assert await store.table("weights", newer_than=2) is None
    other_site = RedisStore(redis_server.url, prefix="site2")
    assert await other_site.table("weights") is None
    await other_site.close()
    await store.close()


def test_the_password_never_shows() -> None:
    store = RedisStore("redis://user:s3cret@127.0.0.1:1/0")
    assert store.location == "redis://user:***@127.0.0.1:1/0"
    # redis-py also reads it from the query, where a unix socket's URL has to give it
    assert RedisStore("redis://10.0.0.5:6379/0?password=s3cret&db=1").location == \
        "redis://10.0.0.5:6379/0?password=***&db=1"
    assert RedisStore("unix:///run/redis.sock?password=s3cret").location == \
        "unix:///run/redis.sock?password=***"


async def test_errors_never_show_the_password() -> None:
    store = RedisStore("redis://:s3cret@127.0.0.1:1/0")   # nothing listens on port 1
    with pytest.raises(StoreError) as caught:
        await store.flush({BOLD: Tally(1)})
    assert "s3cret" not in str(caught.value)
    await store.close()


async def test_a_visitor_s_conversion_counts_once_within_its_window(
        redis_server: RedisServer) -> None:
    await counts_a_visitor_s_conversion_once(RedisStore(redis_server.url), BOLD, window=1.0)


async def test_a_batch_sent_again_is_applied_once(redis_server: RedisServer) -> None:
    await applies_a_batch_once(RedisStore(redis_server.url), BOLD)


async def test_a_fold_moves_rows_into_the_other_cell_in_one_go(redis_server: RedisServer) -> None:
    await folds_rows_into_the_other_cell(RedisStore(redis_server.url), BOLD)


async def test_a_flush_while_a_row_is_folded_counts_once(redis_server: RedisServer) -> None:
    # two connections, as a worker's flusher and another worker's trainer have
    await a_flush_during_folds_is_counted_once(RedisStore(redis_server.url),
                                               RedisStore(redis_server.url), BOLD)


HEALTHY_FIELD = '["bold","","mobile|search","2026-12-02",0,"e"]'   # BOLD's exposures


@pytest.mark.parametrize(("key", "field", "named"), [
    ("ep:counts:footer", None, "ep:counts:footer holds a string, not a hash"),
    ("ep:experiments", None, "ep:experiments holds a string, not a set"),
    ("ep:flushed:worker-1", HEALTHY_FIELD, "ep:flushed:worker-1 holds a hash, not a string"),
])
async def test_a_key_in_the_way_refuses_the_whole_batch_until_it_is_removed(
        redis_server: RedisServer, key: str, field: str | None, named: str) -> None:
    # Redis keeps what a script wrote before its failing command: the batch's number was
    # recorded first, so the batch sent again was taken as applied and every count of it,
    # the healthy experiment's too, was lost (and its visitors marked converted).
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    await (client.set(key, "x") if field is None else client.hset(key, field, "x"))
    store = RedisStore(redis_server.url)
    batch, bought = {BOLD: Tally(2), OTHER: Tally(1)}, [Converted(BOLD_BUY, "v1", 2.0, 60.0)]
    for _ in range(2):   # the flusher sends a failed batch again, with its id
        with pytest.raises(StoreError, match="nothing of the batch was written: "
                           + re.escape(named)):
            await store.flush(batch, bought, batch_id=BatchId("worker-1", 1))
    assert await client.dbsize() == 1   # but for the key in the way, nothing written
    await client.delete(key)
    for _ in range(2):
        await store.flush(batch, bought, batch_id=BatchId("worker-1", 1))
    assert await store.totals() == {BOLD: Tally(2), OTHER: Tally(1),
                                    BOLD_BUY: Tally(0, 1, 2.0, 4.0)}
    await client.aclose()
    await store.close()


@pytest.mark.parametrize("value", ["x", "007", " 5", "9223372036854775807"])
async def test_a_field_no_addition_can_take_loses_its_own_counts_alone_once(
        redis_server: RedisServer, value: str, caplog: pytest.LogCaptureFixture) -> None:
    # A check in the script passed "007", " 5" and int64's top, which Redis's additions
    # refuse: what the script wrote before the failing addition stayed, the batch's number
    # was not recorded, and every flush wrote that part again.
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.hset("ep:counts:hero", HEALTHY_FIELD, value)
    store = RedisStore(redis_server.url)
    batch, bought = {OTHER: Tally(1), BOLD: Tally(2)}, [Converted(BOLD_BUY, "v1", 2.0, 60.0)]
    for _ in range(3):   # the flusher sends a batch again when it cannot tell it landed
        await store.flush(batch, bought, batch_id=BatchId("worker-1", 1))
    assert await client.hget("ep:counts:hero", HEALTHY_FIELD) == value.encode()
    await client.hdel("ep:counts:hero", HEALTHY_FIELD)
    assert await store.totals() == {OTHER: Tally(1), BOLD_BUY: Tally(0, 1, 2.0, 4.0)}
    told = [r.getMessage() for r in caplog.records if "an addition failed" in r.getMessage()]
    assert len(told) == 1 and f"ep:counts:hero {HEALTHY_FIELD}" in told[0]
    await client.aclose()
    await store.close()


@pytest.mark.parametrize(("fields", "named"), [
    ({"version": "2", "published_at": "1.5"}, "has no payload field"),
    ({"version": "two", "payload": "x", "published_at": "1.5"},
     "version b'two' is no whole number"),
    ({"version": "2", "payload": "x"}, "published_at None is no number"),
    ({"version": "2", "payload": "x", "published_at": "noon"},
     "published_at b'noon' is no number"),
])
async def test_a_table_missing_a_field_or_with_one_no_number_is_named(
        redis_server: RedisServer, fields: dict[str, str], named: str) -> None:
    # It raised TypeError or ValueError from int(), float() or bytes(), naming nothing.
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.hset("ep:table:weights", mapping=fields)   # type: ignore[arg-type]
    await client.aclose()
    store = RedisStore(redis_server.url)
    with pytest.raises(StoreError, match=re.escape(f"table ep:table:weights {named}")) as caught:
        await store.table("weights")
    assert not caught.value.passes
    await store.close()


async def test_a_field_that_is_no_count_is_left_out_and_said_once(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # One HSET of a foreign field made every read of the totals raise JSONDecodeError:
    # /__ep/results and the dashboard answered 500 for every experiment.
    import redis.asyncio

    store = RedisStore(redis_server.url)
    await store.flush({BOLD: Tally(3), OTHER: Tally(1)})
    client = redis.asyncio.Redis.from_url(redis_server.url)
    no_number = '["bold","","all","2026-12-02",0,"e"]'
    await client.hset("ep:counts:hero", mapping={"notjson": 1, '["a","b"]': 2,
                                                 no_number: "many"})
    caplog.set_level(logging.WARNING, "edge_personalizer.learn.store.redis")
    for _ in range(2):
        assert await store.totals() == {BOLD: Tally(3), OTHER: Tally(1)}
    assert await store.totals("hero") == {BOLD: Tally(3)}
    assert sorted(r.message.split(" field ")[1].split(" is ")[0] for r in caplog.records) == \
        sorted(repr(field) for field in ("notjson", '["a","b"]', no_number))   # once each
    (said,) = {name: warnings[:1] for name, warnings in store.unreadable().items()}.values()
    assert "ep:counts:hero field " in said[0] and "left out of the results" in said[0]
    await client.hdel("ep:counts:hero", "notjson", '["a","b"]', no_number)
    await store.totals()
    assert store.unreadable() == {}
    await client.aclose()
    await store.close()


async def test_a_key_of_another_kind_read_for_results_is_named(
        redis_server: RedisServer) -> None:
    import redis.asyncio

    store = RedisStore(redis_server.url)
    await store.flush({BOLD: Tally(3)})
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.delete("ep:counts:hero")
    await client.set("ep:counts:hero", "garbage")
    await client.aclose()
    with pytest.raises(StoreError, match="ep:counts:hero"):
        await store.totals()
    await store.close()
