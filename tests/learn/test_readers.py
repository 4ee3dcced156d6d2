"""Readers bring each published table to every worker, and keep the last good one.

Against a real SQLite file and a real redis-server."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import httpx
import pytest

from edge_personalizer.learn.affinity import AffinityModel
from edge_personalizer.learn.bandit import TABLE_NAME, WeightsTable
from edge_personalizer.learn.catalog import GoalCatalog
from edge_personalizer.learn.readers import (
    TableReader,
    catalog_reader,
    model_reader,
    weights_reader,
)
from edge_personalizer.learn.store import Store, open_store, sqlite_url
from edge_personalizer.learn.trainer import Trainer
from edge_personalizer.learn.troubles import Troubles

from ..conftest import ADMIN_TOKEN, PROFILE_KEY
from ..servers import ROOT, RedisServer, Server, start_proxy
from .test_trainer import BROWSER, SPEC, Clock

pytestmark = pytest.mark.anyio


async def test_an_unreadable_table_keeps_the_last_good_one(store: Store) -> None:
    trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=Clock())
    await trainer.update_weights()
    reader = weights_reader(store)
    await reader.refresh()
    good = reader.current
    await store.publish(TABLE_NAME, b"not json")
    assert not await reader.refresh()
    assert reader.current is good and reader.version == 2
    model = model_reader(store)
    await store.publish("affinity-model", b"[]")
    assert not await model.refresh()
    assert model.current == AffinityModel()


async def test_a_reader_has_the_published_table_once_started(store: Store) -> None:
    # A worker served its first requests with empty tables until the first poll: a goal's
    # day recorded in the catalog was unknown to it, and its conversions counted.
    published = GoalCatalog(MappingProxyType({"hero-test": ("signup",)}), since=
                            MappingProxyType({"hero-test": {"signup": "2026-12-03"}}))
    await store.publish("experiment-goals", published.encode())
    reader = catalog_reader(store, interval=3600)
    async with anyio.create_task_group() as tasks:
        await tasks.start(reader.run)
        assert dict(reader.current.since_of("hero-test")) == {"signup": "2026-12-03"}
        tasks.cancel_scope.cancel()


async def test_readers_follow_a_store_that_was_emptied(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    store = open_store(server.url)
    try:
        trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=Clock())
        for _ in range(3):
            await store.publish(TABLE_NAME, WeightsTable().encode())
        reader = weights_reader(store)
        await reader.refresh()
        assert reader.version == 3
        server.stop()
        server.start()   # empty: versions start again from 1
        await trainer.step()   # the first command after a restart finds the old connection
        await trainer.step()
        changed = [await reader.refresh() for _ in range(30)]
        assert changed.count(True) == 1 and reader.version == 1
        assert "hero-test" in reader.current.experiments
    finally:
        await store.close()
        server.stop()



WEIGHTS = (b'{"experiments":{"hero-test":{"version":VERSION,"updated_at":1000.0,"holdout":0.05,'
           b'"starting":[["control",0.5],["bold",0.5]],"cells":{}}}}')
MODEL = b'{"version":0,"built_at":1.0,"top":TOP,"pairs":[],"singles":{},"popular":[]}'
DEEP = b"[" * 100_000 + b"]" * 100_000
GOOD = {"bandit-weights": WEIGHTS.replace(b"VERSION", b"1"),
        "affinity-model": MODEL.replace(b"TOP", b"5"),
        "experiment-goals": b'{"experiments":{"hero-test":["signup"]}}'}
READERS: dict[str, Callable[..., TableReader[Any]]] = {
    "bandit-weights": weights_reader, "affinity-model": model_reader,
    "experiment-goals": catalog_reader}


@pytest.mark.parametrize(("table", "bad", "reason"), [
    ("bandit-weights", b"not json", "JSONDecodeError"),
    ("bandit-weights", b'"\xff"', "UnicodeDecodeError"),
    ("bandit-weights", b"[]", "not a bandit weights table"),
    ("bandit-weights", WEIGHTS.replace(b"VERSION", b"1e400"), "OverflowError"),
    ("bandit-weights", b'{"experiments":' + DEEP + b"}", "RecursionError"),
    ("affinity-model", b"{}", "KeyError"),
    ("affinity-model", MODEL.replace(b"TOP", b"1e400"), "OverflowError"),
    ("affinity-model", DEEP, "RecursionError"),
    ("experiment-goals", b'{"experiments":{"x":[1]}}', "a goal name is a string"),
    ("experiment-goals", b'{"experiments":{"x":' + DEEP + b"}}", "RecursionError"),
])
async def test_a_payload_that_does_not_decode_keeps_the_last_good_table(
        tmp_path: Path, table: str, bad: bytes, reason: str) -> None:
    # A number past a float's range or JSON nested too deep raised out of the reader (only
    # ValueError was caught): the lifespan's task group ended, and with it the counting.
    store = open_store(sqlite_url(tmp_path / "ep.db"))
    troubles = Troubles(logging.getLogger("tests"))
    reader = READERS[table](store, troubles=troubles)
    await store.publish(table, GOOD[table])
    assert await reader.refresh()
    kept = reader.current
    await store.publish(table, bad)
    assert not await reader.refresh()
    assert reader.current is kept and reader.version == 2
    (trouble,) = troubles.report()
    assert trouble["what"] == f"table {table}"
    assert trouble["detail"].startswith("version 2 does not decode (")
    assert reason in trouble["detail"]
    assert trouble["detail"].endswith("); this worker keeps version 1 (stale) until a version "
                                      "that decodes is published")
    await store.publish(table, GOOD[table])
    assert await reader.refresh() and reader.version == 3 and not troubles
    await store.close()


async def test_each_version_that_does_not_decode_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(sqlite_url(tmp_path / "ep.db"))
    reader = model_reader(store)
    for payload in (MODEL.replace(b"TOP", b"1e400"), DEEP):
        await store.publish("affinity-model", payload)
        for _ in range(3):
            assert not await reader.refresh()
    told = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert told == [
        "table affinity-model: version 1 does not decode (OverflowError: cannot convert float "
        "infinity to integer); this worker has none of it yet (as if never published) until a "
        "version that decodes is published (told once while it lasts; see /__ep/health)",
        "table affinity-model: version 2 does not decode (RecursionError: maximum recursion "
        "depth exceeded while decoding a JSON array from a unicode string); this worker has "
        "none of it yet (as if never published) until a version that decodes is published "
        "(told once while it lasts; see /__ep/health)"]
    # (and a version that decodes, after one that did not, is the one kept)
    await store.publish("affinity-model", GOOD["affinity-model"])
    assert await reader.refresh() and reader.current_version == 3
    await store.publish("affinity-model", DEEP)
    assert not await reader.refresh() and reader.current_version == 3
    await store.close()


async def test_a_redis_table_without_its_payload_keeps_the_last_good_one(
        redis_server: RedisServer) -> None:
    # HDEL ep:table:bandit-weights payload; HINCRBY ... version 5: the reader raised
    # TypeError, which ended every worker's lifespan task group (no counting, no learning).
    store = open_store(redis_server.url)
    troubles = Troubles(logging.getLogger("tests"))
    reader = weights_reader(store, troubles=troubles)
    await store.publish(TABLE_NAME, GOOD["bandit-weights"])
    assert await reader.refresh()
    kept = reader.current
    cli = ["redis-cli", "-p", str(redis_server.port)]
    subprocess.run([*cli, "HDEL", "ep:table:bandit-weights", "payload"], check=True,
                   capture_output=True)
    subprocess.run([*cli, "HINCRBY", "ep:table:bandit-weights", "version", "5"], check=True,
                   capture_output=True)
    for _ in range(3):   # (the copy gives its version, 6: that version is not read again)
        assert not await reader.refresh()
    assert reader.current is kept
    (trouble,) = troubles.report()
    assert trouble["what"] == "table bandit-weights" and trouble["times"] == 1
    assert trouble["detail"].startswith("the store's copy does not read (")
    assert trouble["detail"].endswith("; this worker keeps version 1 (stale) until a version "
                                      "that decodes is published")
    await store.publish(TABLE_NAME, GOOD["bandit-weights"])   # the trainer's next
    assert await reader.refresh() and reader.version == 7 and not troubles
    await store.close()


async def test_an_sqlite_row_no_publication_writes_keeps_the_last_good_one(
        tmp_path: Path) -> None:
    # A file whose tables table came without NOT NULL (older, or made by hand): a NULL or
    # text payload raised TypeError out of the reader.
    path = tmp_path / "ep.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tables (name TEXT PRIMARY KEY, version INTEGER, payload "
                   "BLOB, published_at REAL)")
    store = open_store(sqlite_url(path))
    troubles = Troubles(logging.getLogger("tests"))
    reader = model_reader(store, troubles=troubles)
    await store.publish("affinity-model", GOOD["affinity-model"])
    assert await reader.refresh()
    kept = reader.current
    for version, payload, kind in ((2, None, "NoneType"), (3, "text", "str")):
        with sqlite3.connect(path) as db:
            db.execute("UPDATE tables SET version = version + 1, payload = ?", (payload,))
        assert not await reader.refresh()
        assert reader.current is kept
        (trouble,) = troubles.report()
        assert f"a malformed row (version {version}, payload {kind}," in trouble["detail"]
    await store.close()


async def test_a_malformed_table_planted_in_redis_stops_no_worker_s_counting(
        origin: Server, server_logs: Path, redis_server: RedisServer) -> None:
    # A table hash without its payload, at startup or while serving: the lifespan errored
    # ("ASGI Lifespan errored, continuing without Lifespan support"), exposures were never
    # written again, and health said store writes and learning were ok.
    cli = ["redis-cli", "-p", str(redis_server.port)]

    def redis(*command: str) -> None:
        subprocess.run([*cli, *command], check=True, capture_output=True)

    redis("HSET", "ep:table:affinity-model", "version", "3")   # before the server starts
    server = start_proxy(server_logs, "--origin", origin.url,
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_PROFILE_COOKIE_SECURE": "false",
                              "EP_STORE_URL": redis_server.url,
                              "EP_STORE_FLUSH_INTERVAL": "0.2",
                              "EP_STORE_POLL_INTERVAL": "0.2"})
    store = open_store(redis_server.url)
    try:
        redis("HSET", "ep:table:bandit-weights", "version", "1", "payload",
              '{"experiments":{}}', "published_at", "1")
        time.sleep(0.5)   # read by the worker
        redis("HDEL", "ep:table:bandit-weights", "payload")
        redis("HINCRBY", "ep:table:bandit-weights", "version", "5")
        learning = _wait_for(lambda: _named(server.health().json()["learning"],
                                            "table bandit-weights"))
        for _ in range(4):
            with httpx.Client(base_url=server.url, timeout=10.0,
                              headers={"user-agent": BROWSER}) as visitor:
                shown = visitor.get("/slotted/a?exp=on", headers={"accept": "text/html"})
                assert shown.status_code == 200
        deadline = time.monotonic() + 10
        while sum(t.exposures for t in (await store.totals("hero-test")).values()) < 4:
            assert time.monotonic() < deadline, server.log()
            await anyio.sleep(0.1)
        health = server.health().json()
        assert health["store"]["writes"] == "ok" and health["store"]["counts_waiting"] == 0
        assert health["background"] == {"status": "ok"}
    finally:
        server.stop()
        await store.close()
    assert learning["status"] == "failing"
    (trouble,) = [t for t in learning["troubles"] if t["what"] == "table bandit-weights"]
    assert trouble["detail"].startswith("the store's copy does not read (")
    assert trouble["detail"].endswith("; this worker keeps version 1 (stale) until a version "
                                      "that decodes is published")
    log = server.log()
    assert "Lifespan errored" not in log and "forwarding to" in log
    assert "table affinity-model: the store's copy does not read" in log


def _named(learning: dict[str, Any], what: str) -> dict[str, Any] | None:
    return learning if any(t["what"] == what for t in learning["troubles"]) else None


def _wait_for(check: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (found := check()) is None:
        assert time.monotonic() < deadline, "never seen"
        time.sleep(0.1)
    return found
