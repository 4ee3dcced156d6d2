"""Readers bring each published table to every worker, and keep the last good one.

Against a real SQLite file and a real redis-server."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import anyio
import pytest

from edge_personalizer.learn.affinity import AffinityModel
from edge_personalizer.learn.bandit import TABLE_NAME, WeightsTable
from edge_personalizer.learn.catalog import GoalCatalog
from edge_personalizer.learn.readers import catalog_reader, model_reader, weights_reader
from edge_personalizer.learn.store import Store, open_store
from edge_personalizer.learn.trainer import Trainer

from ..servers import RedisServer
from .test_trainer import SPEC, Clock

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
