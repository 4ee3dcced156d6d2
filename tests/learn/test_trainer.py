"""The trainer publishes weights and the model on their cadence; readers bring them to workers.

Against a real SQLite file and a real redis-server."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import httpx
import pytest

from edge_personalizer.learn.affinity import AFFINITY, INTEREST, record
from edge_personalizer.learn.bandit import (
    TABLE_NAME,
    BanditSpec,
    WeightsTable,
    experiment_weights,
)
from edge_personalizer.learn.catalog import GoalCatalog, read_catalog
from edge_personalizer.learn.counters import (
    EXPOSURE,
    OTHER_CELLS,
    Accumulator,
    CountKey,
    Tally,
    day_start,
    variant_totals,
)
from edge_personalizer.learn.readers import catalog_reader, model_reader, weights_reader
from edge_personalizer.learn.store import Store, open_store
from edge_personalizer.learn.store.base import copy_unreadable
from edge_personalizer.learn.trainer import Trainer, bandit_specs
from edge_personalizer.rules.book import check_rules

from ..servers import RedisServer, Server, start_origin, start_proxy

pytestmark = pytest.mark.anyio
SPEC = BanditSpec("hero-test", (("control", 1), ("a", 1), ("b", 1)), goal="purchase",
                  burn_in=100, update_every=60.0, holdout=0.05)
DAY = "2026-12-02"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def count(store: Store, cell: str, counts: dict[str, tuple[int, int]]) -> None:
    batch = {}
    for variant, (exposed, converted) in counts.items():
        batch[CountKey("hero-test", variant, EXPOSURE, cell, DAY)] = Tally(exposures=exposed)
        batch[CountKey("hero-test", variant, "purchase", cell, DAY)] = Tally(
            conversions=converted)
    await store.flush(batch)


async def test_weights_are_published_per_cell_and_read_by_every_worker(store: Store) -> None:
    clock = Clock()
    await count(store, "mobile", {"control": (2000, 60), "a": (2000, 200), "b": (2000, 40)})
    await count(store, "desktop", {"control": (50, 2), "a": (50, 2), "b": (50, 2)})
    trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=clock)
    assert await trainer.update_weights()
    readers = [weights_reader(store), weights_reader(store)]   # two workers
    for reader in readers:
        assert await reader.refresh()
        weights = reader.current.experiments["hero-test"]
        assert weights.version == 1
        assert weights.cells["mobile"].reason == "learned"
        assert weights.cells["desktop"].reason == "burn_in"
    table = readers[0].current
    assert readers[1].current == table
    points = [(n + 0.5) / 1000 for n in range(1000)]
    mobile = [table.choose("hero-test", "mobile", p) for p in points]
    assert mobile.count("a") > 800 and {"control", "b"} <= set(mobile)   # each keeps its floor
    assert table.experiments["hero-test"].holdout == 0.05   # the evaluator holds them out
    assert not await readers[0].refresh()   # nothing newer


async def test_weights_change_on_the_cadence_and_not_before(store: Store) -> None:
    clock = Clock()
    trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=clock)
    other = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=clock)
    await count(store, "all", {"control": (500, 20), "a": (500, 20), "b": (500, 20)})
    assert await trainer.update_weights()
    clock.now += 30
    assert not await trainer.update_weights()
    assert not await other.update_weights()   # another worker saw the fresh version
    await count(store, "all", {"control": (500, 5), "a": (500, 60), "b": (500, 5)})
    clock.now += 31
    assert await other.update_weights()
    reader = weights_reader(store)
    await reader.refresh()
    weights = reader.current.experiments["hero-test"]
    assert weights.version == 2 and weights.updated_at == clock.now
    assert dict(weights.cells["all"].weights)["a"] > 0.8


async def test_weights_are_not_renumbered_without_a_new_exposure(store: Store) -> None:
    # Each version starts a period of the results: an idle experiment must not make one
    # every update_every (51 in eight minutes at 10 s, as the demo showed).
    clock = Clock()
    trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=clock)
    await count(store, "all", {"control": (500, 20), "a": (500, 20), "b": (500, 20)})
    assert await trainer.update_weights()
    for _ in range(3):
        clock.now += 61
        assert not await trainer.update_weights()
    await count(store, "all", {"control": (0, 5), "a": (0, 5), "b": (0, 5)})   # alone
    clock.now += 61
    assert not await trainer.update_weights()
    await count(store, "all", {"control": (1, 0), "a": (0, 0), "b": (0, 0)})
    clock.now += 30
    assert not await trainer.update_weights()   # not yet due: an update_every since the look
    clock.now += 31
    assert await trainer.update_weights()
    reader = weights_reader(store)
    await reader.refresh()
    assert reader.current.experiments["hero-test"].version == 2
    renamed = BanditSpec(SPEC.experiment, (("control", 2), ("a", 1), ("b", 1)),
                         goal="purchase", burn_in=100, update_every=60.0, holdout=0.05)
    clock.now += 61   # the rules changed the starting weights: published, exposures or not
    assert await Trainer(store, specs=lambda: [renamed], learn_interval=None,
                         clock=clock).update_weights()


async def test_an_experiment_without_counts_gets_its_starting_weights(store: Store) -> None:
    trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=Clock())
    assert await trainer.update_weights()
    reader = weights_reader(store)
    await reader.refresh()
    assert reader.current.choose("hero-test", "anything", 0.5) == "a"
    assert not await Trainer(store, specs=lambda: [], clock=Clock()).update_weights()


async def test_the_model_is_rebuilt_every_learn_interval(store: Store) -> None:
    clock = Clock()
    counters = Accumulator()
    for _ in range(30):
        record(counters, ("running", "trail"), ("shoes",))
    record(counters, ("running", "trail"), ("socks",))
    counters.collect()
    await store.flush(counters.pending_batch(100))
    trainer = Trainer(store, specs=lambda: [], learn_interval=3600.0, clock=clock)
    reader = model_reader(store)
    await trainer.step()
    assert await reader.refresh()
    assert reader.current.predict(("trail", "running"))[0][0] == "shoes"
    await store.flush({CountKey(AFFINITY, "running\x1ftrail", INTEREST, "socks", DAY):
                       Tally(conversions=100)})
    clock.now += 1800
    await trainer.step()
    assert not await reader.refresh()
    clock.now += 1800
    await Trainer(store, specs=lambda: [], learn_interval=3600.0, clock=clock).step()
    assert await reader.refresh()
    assert reader.current.predict(("trail", "running"))[0][0] == "socks"
    assert reader.version == 2


async def test_the_published_model_names_what_covers_the_most_next_views(store: Store) -> None:
    counters = Accumulator()
    for categories, views in ((("shoes", "socks"), 40), (("yoga",), 30), (("shoes",), 10)):
        for _ in range(views):
            record(counters, ("running", "trail"), ("running", *categories))
    counters.collect()
    await store.flush(counters.pending_batch(100))
    assert await Trainer(store, specs=lambda: [], clock=Clock()).rebuild_model()
    reader = model_reader(store)
    assert await reader.refresh()
    assert [name for name, _ in reader.current.predict(("trail", "running"))][:3] == [
        "shoes", "yoga", "socks"]


async def test_the_experiments_goals_are_recorded_and_kept_once_removed(store: Store) -> None:
    running = {"hero-test": ("signup", "purchase"), "old-test": ("purchase",)}
    first = Trainer(store, specs=lambda: [], experiments=lambda: running, learn_interval=None)
    other = Trainer(store, specs=lambda: [], experiments=lambda: dict(running),
                    learn_interval=None)
    assert await first.record_goals()
    assert not await other.record_goals()   # recorded already: nothing published again
    assert not await first.record_goals()   # nothing changed: nothing published
    running = {"hero-test": ("signup",)}    # old-test removed from the rules, hero-test edited
    assert await first.record_goals()
    reader = catalog_reader(store)
    assert await reader.refresh()
    assert dict(reader.current.experiments) == {"hero-test": ("signup",),
                                                "old-test": ("purchase",)}
    assert reader.current.goals_of("old-test") == frozenset({"purchase"})


async def test_a_goal_added_to_an_experiment_with_visitors_is_recorded_from_the_next_day(
        store: Store) -> None:
    # hero-test has visitors counted, quiet-test none yet: a goal added to each joins
    # hero-test from the next UTC day, quiet-test from its start
    clock = Clock()
    clock.now = day_start(DAY) + 15 * 3600.0
    running: dict[str, tuple[str, ...]] = {"hero-test": ("purchase",),
                                           "quiet-test": ("purchase",)}
    trainer = Trainer(store, specs=lambda: [], experiments=lambda: running,
                      learn_interval=None, clock=clock)
    assert await trainer.record_goals()
    await count(store, "all", {"control": (40, 2), "a": (40, 3)})
    running = {"hero-test": ("purchase", "signup"), "quiet-test": ("purchase", "signup")}
    assert await trainer.record_goals()
    recorded = await read_catalog(store)
    assert dict(recorded.since_of("hero-test")) == {"signup": "2026-12-03"}
    assert dict(recorded.since_of("quiet-test")) == {}
    clock.now += 3 * 86_400.0   # days later, the same goals: the day stays
    assert not await trainer.record_goals()


async def test_a_goal_added_to_the_rules_once_a_rule_reached_visitors_is_recorded_from_the_next_day(
        store: Store) -> None:
    # the rules' goals are recorded; a goal added before any rule reached a visitor judges
    # them from the start (hero-test's visitors are an experiment's, not a rule's), one
    # added after a rule reached visitors from the next UTC day
    clock = Clock()
    clock.now = day_start(DAY) + 15 * 3600.0
    goals: tuple[str, ...] = ("purchase",)
    trainer = Trainer(store, specs=lambda: [], experiments=lambda: {"hero-test": ("purchase",)},
                      rule_goals=lambda: goals, learn_interval=None, clock=clock)
    assert await trainer.record_goals()
    await count(store, "all", {"control": (40, 2), "a": (40, 3)})
    await store.flush({CountKey(AFFINITY, "running\x1ftrail", INTEREST, "socks", DAY):
                       Tally(5)})   # the "visitors like you" counts are no rule's either
    goals = ("purchase", "signup")
    assert await trainer.record_goals()
    assert dict((await read_catalog(store)).rules_since) == {}
    await store.flush({CountKey("fb-hero", "fb-hero", EXPOSURE, "all", DAY): Tally(3)})
    goals = ("newsletter", "purchase", "signup")
    assert await trainer.record_goals()
    recorded = await read_catalog(store)
    assert recorded.rule_goals == goals
    assert dict(recorded.rules_since) == {"newsletter": "2026-12-03"}
    clock.now += 3 * 86_400.0   # days later, the same goals: the day stays
    assert not await trainer.record_goals()


async def test_the_experiments_variants_are_recorded_and_a_rename_publishes_again(
        store: Store) -> None:
    variants = {"hero-test": ("control", "free-ship")}
    trainer = Trainer(store, specs=lambda: [], experiments=lambda: {"hero-test": ("buy",)},
                      variants=lambda: variants, learn_interval=None)
    assert await trainer.record_goals()
    variants = {"hero-test": ("control", "free-delivery")}   # renamed, goals as they were
    assert await trainer.record_goals()
    reader = catalog_reader(store)
    assert await reader.refresh()
    assert reader.current.variants_of("hero-test") == ("control", "free-delivery")


async def test_goals_lost_from_the_store_are_recorded_again_within_30_ticks(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    asked = 0

    def running() -> dict[str, tuple[str, ...]]:
        nonlocal asked
        asked += 1
        return {"hero-test": ("purchase",)}

    trainer = Trainer(store, specs=lambda: [], experiments=running, learn_interval=None)
    await trainer.step()
    await store.publish("experiment-goals", b"lost")   # a store reset, a table written over
    for _ in range(28):
        await trainer.step()
    assert (await store.table("experiment-goals")).payload == b"lost"   # type: ignore[union-attr]
    await trainer.step()   # the 30th tick looks at the store whatever the rules
    reader = catalog_reader(store)
    await reader.refresh()
    assert reader.current.goals_of("hero-test") == frozenset({"purchase"})
    assert asked == 30 and "recorded again from the rules" in caplog.text


@contextlib.asynccontextmanager
async def redis_store(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, Store]]:
    """A redis-server of its own and the store on it (stopped and closed after)."""
    server = RedisServer(tmp_path)
    server.start()
    store = open_store(server.url)
    try:
        yield server, store
    finally:
        await store.close()
        server.stop()


def learning_told(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the log said of learning's pauses, in order ("learning paused", ...)."""
    return [r.getMessage().split(":")[0] for r in caplog.records
            if r.getMessage().startswith("learning")]


async def test_a_store_that_is_down_pauses_learning_and_workers_keep_their_tables(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with redis_store(tmp_path) as (server, store):
        trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=60.0, clock=Clock(),
                          tick=0.01)
        reader = weights_reader(store, interval=0.01)
        await trainer.step()
        await reader.refresh()
        table = reader.current
        server.stop()
        async with anyio.create_task_group() as group:   # the lifespan's shape
            await group.start(trainer.run)
            await group.start(reader.run)
            await anyio.sleep(0.2)
            group.cancel_scope.cancel()
        assert trainer.failures > 0
        assert reader.current is table
        assert isinstance(table, WeightsTable) and "hero-test" in table.experiments
        # The outage's end is told, and a second outage as the first (only the first
        # was: "paused" once since the start, and never "resumed")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="edge_personalizer.learn.trainer"):
            for _ in range(2):
                server.start()
                await trainer.step()
                server.stop()
                await trainer.step()
                await trainer.step()
        assert learning_told(caplog) == ["learning resumed", "learning paused"] * 2


async def test_an_outage_is_told_ended_only_once_the_store_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Without a bandit, most steps ask the store nothing: such a step was taken for the
    # store's answer, and one outage was told as "paused", "resumed", "paused"...
    async with redis_store(tmp_path) as (server, store):
        trainer = Trainer(store, specs=lambda: [], experiments=lambda: {"e": ("buy",)},
                          learn_interval=3600.0, clock=Clock(), tick=0.01)
        await trainer.step()
        server.stop()
        with caplog.at_level(logging.INFO, logger="edge_personalizer.learn.trainer"):
            for _ in range(64):
                await trainer.step()
            server.start()
            await trainer.step()
        assert learning_told(caplog) == ["learning paused", "learning resumed"]


async def test_the_rule_files_bandit_experiments_become_specs(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {selector: '#hero'}, cta: {selector: '#cta'}}\n"
        "goals: {purchase: {when: {request.path: /thanks}}, signup: {}}\n"
        "experiments:\n"
        "  - name: hero-test\n    slot: hero\n    goals: [signup, purchase]\n"
        "    allocation: bandit\n    holdout: 10\n"
        "    bandit: {burn_in: 20, floor: 5, update_every: 2m, metric: value}\n"
        "    variants: {original: {weight: 1}, a: {weight: 1, html: A}}\n"
        "  - name: cta-test\n    slot: cta\n"
        "    variants: {control: {weight: 1}, a: {weight: 1, html: A}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    assert bandit_specs(ruleset) == [BanditSpec(
        "hero-test", (("original", 1.0), ("a", 1.0)), goal="signup", control="original",
        metric="value", burn_in=20, floor=0.05, update_every=120.0, holdout=0.1)]
    # its first goal joined it under way: the bandit learns from the day it joined
    recorded = GoalCatalog(MappingProxyType({"hero-test": ("signup", "purchase")}), since=
                           MappingProxyType({"hero-test": {"signup": "2026-12-03"}}))
    assert [spec.since for spec in bandit_specs(ruleset, recorded)] == ["2026-12-03"]


BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")
TOKEN = "bandit-test-admin-token-0123456789"


def bandit_rules(name: str, per: str, settings: str) -> str:
    """A rule file of one bandit experiment `name` on slot hero, learning per `per`."""
    return f"""\
slots: {{hero: {{}}}}
goals:
  purchase: {{when: {{request.path: /page/thanks}}}}
experiments:
  - name: {name}
    slot: hero
    goals: [purchase]
    allocation: bandit
    per: [{per}]
    bandit: {settings}
    variants: {{control: {{weight: 1}}, a: {{weight: 1, html: A}}, b: {{weight: 1, html: B}}}}
"""


SERVER_RULES = bandit_rules("hero-test", "request.header.x-segment",
                            "{burn_in: 20, floor: 1, update_every: 1s}")


def _visit(client: httpx.Client, segment: str, cookie: str = "") -> tuple[str, str]:
    """A page view: the variant shown (X-EP-Variant; none for the control) and the cookie."""
    headers = {"accept": "text/html", "user-agent": BROWSER, "x-segment": segment}
    if cookie:
        headers["cookie"] = cookie
    client.cookies.clear()
    page = client.get("/slotted/home", headers=headers)
    variant = page.headers.get("x-ep-variant", "").partition("=")[2] or "control"
    return variant, page.headers.get("set-cookie", cookie).split(";", 1)[0]


def _serving(tmp_path: Path, rules_text: str, **env: str) -> tuple[Server, Server]:
    """The test origin and a server in front of it with `rules_text`, writing counts every
    0.2 s, its results behind TOKEN."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(rules_text)
    origin = start_origin(tmp_path)
    return origin, start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules), env={
        "EP_STORE_FLUSH_INTERVAL": "0.2", "EP_ADMIN_TOKEN": TOKEN, **env})


def test_a_bandit_learns_each_segments_best_variant_in_the_running_server(
        tmp_path: Path) -> None:
    origin, proxy = _serving(tmp_path, SERVER_RULES, EP_VARIANT_HEADER="true",
                             EP_PROFILE_COOKIE_SECURE="false")
    try:
        with httpx.Client(base_url=proxy.url, timeout=10.0) as client:
            first = [_visit(client, "s1") for _ in range(120)]
            for variant, cookie in first:   # in s1 only b converts
                if variant == "b":
                    client.get("/page/thanks", headers={"user-agent": BROWSER,
                                                        "x-segment": "s1", "cookie": cookie})
            time.sleep(3.0)   # a flush, a weights update, a worker's read
            learned = [_visit(client, "s1")[0] for _ in range(100)]
            elsewhere = [_visit(client, "s2")[0] for _ in range(90)]
            kept = [(variant, _visit(client, "s1", cookie)[0]) for variant, cookie in first[:30]]
            report = client.get("/__ep/results",
                                headers={"authorization": f"Bearer {TOKEN}"}).json()
            client.cookies.clear()
            traced = client.get("/slotted/home", headers={
                "accept": "text/html", "user-agent": BROWSER, "x-segment": "s1",
                "x-ep-debug": TOKEN}).headers["x-ep-trace"]
    finally:
        proxy.stop()
        origin.stop()
    assert {v for v, _ in first} == {"control", "a", "b"}
    assert learned.count("b") >= 80, learned
    assert min(elsewhere.count(v) for v in ("control", "a", "b")) >= 15, elsewhere
    assert all(before == after for before, after in kept), kept
    (trace,) = json.loads(traced)["experiments"]
    assert trace["cell"] == "s1" and trace["why"].startswith("learned weights version")
    (experiment,) = report["experiments"]
    cells = experiment["bandit"]["cells"]
    assert experiment["bandit"]["version"] >= 1 and cells["s1"]["reason"] == "learned"
    assert max(cells["s1"]["weights"], key=cells["s1"]["weights"].get) == "b"


async def test_weights_are_worked_out_off_the_event_loop(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # numpy's draws (and its import, the first time) take a worker's event loop for tenths
    # of a second: pages wait on nothing of it.
    from edge_personalizer.learn import bandit

    threads: list[threading.Thread] = []
    work = bandit.experiment_weights

    def watched(*args: Any, **kwargs: Any) -> bandit.ExperimentWeights:
        threads.append(threading.current_thread())
        return work(*args, **kwargs)

    monkeypatch.setattr(bandit, "experiment_weights", watched)
    await count(store, "mobile", {"control": (200, 10), "a": (200, 30), "b": (200, 5)})
    assert await Trainer(store, specs=lambda: [SPEC], learn_interval=None,
                         clock=Clock()).update_weights()
    assert threads and threading.main_thread() not in threads


async def test_two_trainers_deciding_at_once_publish_one_table(store: Store) -> None:
    clock = Clock()
    await count(store, "all", {"control": (500, 20), "a": (500, 60), "b": (500, 5)})
    trainers = [Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=clock)
                for _ in range(2)]
    published: list[bool] = []

    async def update(trainer: Trainer) -> None:
        published.append(await trainer.update_weights())

    async with anyio.create_task_group() as tasks:   # both read version 0, both draw
        for trainer in trainers:
            tasks.start_soon(update, trainer)
    assert sorted(published) == [False, True]
    table = await store.table(TABLE_NAME)
    assert table is not None and table.version == 1
    clock.now += SPEC.update_every   # the one that lost took version 1: it publishes over it
    await count(store, "all", {"control": (1, 0), "a": (0, 0), "b": (0, 0)})   # a new exposure
    loser = trainers[published.index(False)]
    assert await loser.update_weights()
    assert (await store.table(TABLE_NAME) or table).version == 2


async def test_a_table_is_published_only_over_the_version_read(store: Store) -> None:
    assert await store.publish_if("weights", b"first", version=1) is None   # none yet
    assert await store.publish_if("weights", b"first", version=0) == 1
    assert await store.publish_if("weights", b"late", version=0) is None
    assert await store.publish_if("weights", b"second", version=1) == 2
    table = await store.table("weights")
    assert table is not None and (table.version, table.payload) == (2, b"second")


def test_a_variant_the_published_weights_do_not_know_gets_its_share(tmp_path: Path) -> None:
    # Two servers on one store, the second's rules with a variant more (a canary, a rolling
    # deploy): its workers shared out by the other's weights as they were, and the new
    # variant reached no visitor. Weights for other variants are not taken: the rules'
    # starting weights share out, said in the log and the trace.
    redis = RedisServer(tmp_path)
    redis.start()
    origin = start_origin(tmp_path)
    servers = []
    try:
        for name, more in (("old", ""), ("new", ", c: {weight: 1, html: C}")):
            rules = tmp_path / name
            rules.mkdir()
            (rules / "experiment.yaml").write_text(SERVER_RULES.replace(
                "update_every: 1s", "update_every: 1h").replace("html: B}", "html: B}" + more))
            servers.append(start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                                       env={"EP_VARIANT_HEADER": "true", "EP_STORE_URL": redis.url,
                                            "EP_PROFILE_COOKIE_SECURE": "false",
                                            "EP_ADMIN_TOKEN": TOKEN}))
            if name == "old":
                deadline = time.monotonic() + 10
                while "bandit weights version 1 published" not in servers[0].log():
                    assert time.monotonic() < deadline, servers[0].log()
                    time.sleep(0.1)
        new = servers[1]
        deadline = time.monotonic() + 10
        while "are for variants a, b, control; these rules have a, b, c, control" \
                not in new.log():
            assert time.monotonic() < deadline, new.log()
            time.sleep(0.1)
        time.sleep(1.5)   # the workers' read of the table
        with httpx.Client(base_url=new.url, timeout=10.0) as client:
            shown = [_visit(client, "s1")[0] for _ in range(120)]
            client.cookies.clear()
            traced = client.get("/slotted/home", headers={
                "accept": "text/html", "user-agent": BROWSER, "x-segment": "s1",
                "x-ep-debug": TOKEN}).headers["x-ep-trace"]
    finally:
        for server in servers:
            server.stop()
        origin.stop()
        redis.stop()
    assert shown.count("c") >= 15, shown
    (trace,) = json.loads(traced)["experiments"]
    assert trace["why"] == ("the fixed weights: the weights published (version 1) are for "
                            "other variants (a, b, control)")


PROMO = BanditSpec("promo-test", (("control", 1), ("b", 1)), goal="purchase", burn_in=10,
                   update_every=60.0)


async def count_promo(store: Store, exposed: int) -> None:
    await store.flush({CountKey("promo-test", variant, EXPOSURE, "all", DAY):
                       Tally(exposures=exposed) for variant in ("control", "b")})


def told(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_weights_that_do_not_fit_keep_their_last_and_the_others_are_published(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # One experiment's weights grew past what the table all bandits share holds: every
    # tick raised, logged a traceback, and no bandit (promo-test included) learned again.
    from edge_personalizer.learn import trainer as module

    monkeypatch.setattr(module, "MAX_TABLE_BYTES", 4000)   # 1 MiB, as a test can reach it
    clock = Clock()
    wide = BanditSpec(SPEC.experiment, SPEC.variants, goal="purchase", burn_in=100,
                      update_every=60.0, max_cells=2000)
    specs = [wide, PROMO]
    trainer = Trainer(store, specs=lambda: specs, learn_interval=None, clock=clock)
    await count(store, "google", {"control": (500, 20), "a": (500, 20), "b": (500, 20)})
    await count_promo(store, 20)
    assert await trainer.update_weights()
    for n in range(60):
        await count(store, f"made-up-{n:02d}-" + "x" * 30, {"control": (1, 0)})
    with caplog.at_level(logging.INFO, logger="edge_personalizer.learn.trainer"):
        for _ in range(4):
            await count_promo(store, 1)
            clock.now += 61
            await trainer.step()
    reader = weights_reader(store)
    await reader.refresh()
    assert reader.current.version_of("hero-test") == 1   # its last weights
    assert reader.current.version_of("promo-test") == 5  # learned on every update
    (logged,) = told(caplog, "bandit hero-test: its new weights take")
    assert logged.levelno == logging.WARNING and logged.exc_info is None
    assert "(61 cells)" in logged.getMessage() and "keeps its weights version 1" \
        in logged.getMessage()
    assert not told(caplog, "learning step failed")
    health = trainer.health()
    assert health["status"] == "failing" and health["failures"] == 4
    (trouble,) = health["troubles"]
    assert trouble["what"] == "bandit hero-test" and trouble["times"] == 4
    assert "lower its bandit max_cells" in trouble["detail"]
    # The rules lower its max_cells: the made-up cells share one row, and it learns again
    specs[0] = BanditSpec(SPEC.experiment, SPEC.variants, goal="purchase", burn_in=100,
                          update_every=60.0, max_cells=5)
    clock.now += 61
    with caplog.at_level(logging.INFO, logger="edge_personalizer.learn.trainer"):
        await trainer.step()
    await reader.refresh()
    held = reader.current.experiments["hero-test"]
    assert held.version == 2 and held.shared == 56 and "google" in held.cells
    assert told(caplog, "bandit hero-test: works again (it failed 4 times)")
    assert trainer.health() == {"status": "ok", "failures": 4, "troubles": []}


async def test_a_bug_in_one_experiments_weights_is_told_once_and_stops_no_other(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from edge_personalizer.learn import bandit

    work = bandit.experiment_weights

    def broken(spec: BanditSpec, rows: Any, **kwargs: Any) -> bandit.ExperimentWeights:
        if spec.experiment == "hero-test":
            raise ZeroDivisionError(f"a bug, at {time.monotonic()}")   # a new text each time
        return work(spec, rows, **kwargs)

    monkeypatch.setattr(bandit, "experiment_weights", broken)
    clock = Clock()
    specs = [SPEC, PROMO]
    trainer = Trainer(store, specs=lambda: specs, learn_interval=None, clock=clock)
    with caplog.at_level(logging.INFO, logger="edge_personalizer.learn.trainer"):
        for _ in range(5):
            await count_promo(store, 1)
            await trainer.step()
            clock.now += 61
    reader = weights_reader(store)
    await reader.refresh()
    assert reader.current.version_of("hero-test") is None
    assert reader.current.version_of("promo-test") == 5
    (logged,) = told(caplog, "bandit hero-test: its weights could not be worked out")
    assert logged.levelno == logging.ERROR and logged.exc_info is not None   # one traceback
    assert "ZeroDivisionError" in logged.getMessage()
    assert "new visitors are shared out by its starting weights" in logged.getMessage()
    assert trainer.health()["troubles"][0]["times"] == 5
    # removed from the rules (or paused, or ended): its trouble ends with it, and health
    # and the alert on ep_learning_troubles clear without a restart
    specs[:] = [PROMO]
    await trainer.step()
    assert trainer.health()["status"] == "ok" and trainer.health()["troubles"] == []


async def test_a_learning_step_that_keeps_failing_is_told_once_per_cause(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # "learning step failed unexpectedly" and a traceback were logged every second, for good
    from edge_personalizer.learn import affinity

    causes = iter([ValueError, ValueError, ValueError, KeyError, KeyError])

    def failing(*args: Any) -> Any:
        raise next(causes)(f"at {time.monotonic()}")

    monkeypatch.setattr(affinity, "affinity_counts", failing)
    trainer = Trainer(store, specs=lambda: [], learn_interval=60.0, clock=Clock())
    with caplog.at_level(logging.INFO, logger="edge_personalizer.learn.trainer"):
        for _ in range(5):
            await trainer.step()
        monkeypatch.undo()
        await trainer.step()
    logged = told(caplog, "rebuilding the affinity model")
    assert [r.levelname for r in logged] == ["ERROR", "ERROR", "INFO"]   # two causes, an end
    assert "ValueError" in logged[0].getMessage() and "KeyError" in logged[1].getMessage()
    assert all(r.exc_info is not None for r in logged[:2])
    assert "works again (it failed 5 times)" in logged[2].getMessage()
    assert trainer.failures == 5 and trainer.health()["status"] == "ok"


# Variant names as long as a marketer may write them: each cell's row names them all, so
# a made-up cell takes ~530 bytes of the table and ~2,000 of them filled its 1 MiB.
LONG = [f"{word}-banner-for-every-order-over-fifty-dollars-shown-above-the-fold-in-the-hero"
        for word in ("free-shipping", "percent-off", "bundle-deal", "gift-wrap", "loyalty")]
FLOOD_RULES = f"""\
slots: {{hero: {{}}, banner: {{}}}}
goals:
  purchase: {{when: {{request.path: /page/thanks}}}}
experiments:
  - name: hero-bandit
    slot: hero
    goals: [purchase]
    allocation: bandit
    per: [referral.source]
    bandit: {{burn_in: 5, update_every: 1s}}
    variants:
      control: {{weight: 1}}
{"".join(f"      {name}: {{weight: 1, html: X}}{chr(10)}" for name in LONG)}\
  - name: promo-bandit
    slot: banner
    goals: [purchase]
    allocation: bandit
    bandit: {{burn_in: 5, update_every: 1s}}
    variants: {{control: {{weight: 1}}, b: {{weight: 1, html: B}}}}
"""


async def _flood(port: int, paths: list[str], connections: int = 16) -> None:
    """New visitors' page views, on a few keep-alive connections."""
    async def one(share: list[str]) -> None:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            buffered = b""
            for path in share:
                await stream.send(f"GET {path} HTTP/1.1\r\nHost: shop\r\nUser-Agent: {BROWSER}"
                                  "\r\nAccept: text/html\r\n\r\n".encode())
                while True:   # the page, chunked or with a length
                    head, _, rest = buffered.partition(b"\r\n\r\n")
                    if _ and (b"0\r\n\r\n" in rest or _complete(head, rest)):
                        buffered = b""
                        break
                    buffered += await stream.receive()

    async with anyio.create_task_group() as group:
        for n in range(connections):
            group.start_soon(one, paths[n::connections])


def _complete(head: bytes, rest: bytes) -> bool:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return False


def _bandits(client: httpx.Client) -> dict[str, Any]:
    report = client.get("/__ep/results", headers={"authorization": f"Bearer {TOKEN}"}).json()
    return {e["name"]: e["bandit"] or {} for e in report["experiments"]}


def test_a_flood_of_made_up_cells_leaves_every_bandit_learning_in_the_running_server(
        tmp_path: Path) -> None:
    # 2,400 new visitors with ?utm_source=<40 random letters> filled hero-bandit's cells
    # (per: referral.source): its weights outgrew the table every bandit shares, and from
    # then on no bandit's weights changed (promo-bandit's too), with a traceback a second.
    import random
    import string

    origin, proxy = _serving(tmp_path, FLOOD_RULES)
    letters = random.Random(7)
    made_up = ["/slotted/home?utm_source=" + "".join(letters.choices(string.ascii_lowercase,
                                                                    k=40))
               for _ in range(2400)]
    try:
        anyio.run(_flood, proxy.port, ["/slotted/home?utm_source=google"] * 40)
        anyio.run(_flood, proxy.port, made_up)
        with httpx.Client(base_url=proxy.url, timeout=30.0) as client:
            deadline = time.monotonic() + 20
            while (_bandits(client)["hero-bandit"].get("other_cells") or {}).get(
                    "cells", 0) < 2300:   # the flood counted and learned from
                assert time.monotonic() < deadline, proxy.log()[-3000:]
                time.sleep(0.5)
            before = _bandits(client)["promo-bandit"]["version"]
            anyio.run(_flood, proxy.port, ["/slotted/home"] * 20)
            while (promo := _bandits(client)["promo-bandit"])["version"] == before:
                assert time.monotonic() < deadline, (
                    f"promo-bandit stuck at version {before}: {proxy.log()[-3000:]}")
                time.sleep(0.5)
            hero = _bandits(client)["hero-bandit"]
            client.cookies.clear()
            traced = client.get("/slotted/home?utm_source=never-seen-before", headers={
                "accept": "text/html", "user-agent": BROWSER,
                "x-ep-debug": TOKEN}).headers["x-ep-trace"]
            health = client.get("/__ep/health",
                                headers={"authorization": f"Bearer {TOKEN}"}).json()
            metrics = client.get("/__ep/metrics",
                                 headers={"authorization": f"Bearer {TOKEN}"}).text
    finally:
        proxy.stop()
        origin.stop()
    assert promo["version"] > before
    assert len(hero["cells"]) == 100 and "google" in hero["cells"]   # the real cell's own
    assert hero["cells"]["google"]["exposures"] == 40
    assert hero["other_cells"]["exposures"] == hero["other_cells"]["cells"] >= 2300
    assert health["learning"] == {"status": "ok", "failures": 0, "troubles": []}
    why = {e["name"]: e["why"] for e in json.loads(traced)["experiments"]}
    assert why["hero-bandit"].endswith("cell 'never-seen-before' shares them"), why
    assert "ep_learning_troubles 0.0" in metrics
    assert "learning step failed" not in proxy.log()
    assert "learns per: referral.source, which any client fills as it likes" in proxy.log()


async def test_made_up_cells_of_past_days_are_folded_and_the_weights_stay(
        store: Store) -> None:
    # 30,000 page views with random ?utm_source= left 30,228 fields in a bandit's count
    # hash, every one read and tallied again on each update (0.7 s of a worker's time),
    # growing for ever.
    spec = BanditSpec("hero-test", SPEC.variants, goal="purchase", burn_in=100,
                      update_every=60.0, max_cells=5)
    clock = Clock()
    clock.now = day_start(DAY) + 86_400 * 1.5   # the day after DAY
    for n, cell in enumerate(("google", "bing", "newsletter", "facebook", "tiktok", "ads")):
        await count(store, cell, {"control": (300 + n, 9), "a": (300, 24 + n), "b": (300, 6)})
    made_up: dict[CountKey, Tally] = {}
    for n in range(3000):
        variant = ("control", "a", "b")[n % 3]
        made_up[CountKey("hero-test", variant, EXPOSURE, f"made-up-{n:04d}", DAY)] = Tally(1)
        if n % 7 == 0:
            made_up[CountKey("hero-test", variant, "purchase", f"made-up-{n:04d}", DAY)] = \
                Tally(0, 1)
    today = {CountKey("hero-test", "a", EXPOSURE, f"new-{n}", "2026-12-03"): Tally(1)
             for n in range(20)}
    await store.flush(made_up | today)
    before = await store.totals("hero-test")
    trainer = Trainer(store, specs=lambda: [spec], learn_interval=None, clock=clock)
    assert await trainer.update_weights()
    after = await store.totals("hero-test")
    past_cells = {key.cell for key in after if key.day == DAY}
    assert len(past_cells) == 50 + 1   # the 50 cells the results show, and the folded one
    assert OTHER_CELLS in past_cells and {key for key in after if key.day != DAY} == set(today)
    for goal in (EXPOSURE, "purchase"):
        assert variant_totals(after, "hero-test", goal) == variant_totals(before, "hero-test",
                                                                         goal)
    worked_out = [experiment_weights(spec, rows, version=1, now=clock.now)
                  for rows in (before, after)]
    assert worked_out[0].cells == worked_out[1].cells and len(worked_out[0].cells) == 5
    assert worked_out[0].others == worked_out[1].others is not None
    clock.now += 61   # nothing new since: the fold alone publishes no version
    assert not await trainer.update_weights()


FOLD_RULES = bandit_rules("hero-bandit", "referral.source",
                          "{burn_in: 5, update_every: 1s, max_cells: 5}")


def _exposed(report: dict[str, Any]) -> dict[str, Any]:
    (hero,) = report["experiments"]
    purchase = hero["goals"]["purchase"]
    return {"exposed": hero["exposed"], **{
        variant: (counts["exposed"], counts["converted"])
        for variant, counts in purchase["variants"].items()}}


def test_made_up_cells_of_past_days_are_folded_in_redis_by_the_running_server(
        tmp_path: Path, redis_server: RedisServer) -> None:
    import random
    import string

    from redis import Redis

    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86_400))
    letters = random.Random(11)
    planted: dict[CountKey, Tally] = {}
    for n in range(400):   # yesterday's cookieless made-up ?utm_source= views
        cell = "".join(letters.choices(string.ascii_lowercase, k=20))
        variant = ("control", "a", "b")[n % 3]
        planted[CountKey("hero-bandit", variant, EXPOSURE, cell, yesterday)] = Tally(1)
        if n % 5 == 0:
            planted[CountKey("hero-bandit", variant, "purchase", cell, yesterday)] = \
                Tally(0, 1)

    async def plant() -> None:
        store = open_store(redis_server.url)
        await store.flush(planted)
        await store.close()

    anyio.run(plant)
    redis = Redis.from_url(redis_server.url)
    fields_before = redis.hlen("ep:counts:hero-bandit")
    origin, proxy = _serving(tmp_path, FOLD_RULES, EP_STORE_URL=redis_server.url)
    made_up = ["/slotted/home?utm_source=" + "".join(letters.choices(string.ascii_lowercase,
                                                                    k=20))
               for _ in range(300)]
    try:
        anyio.run(_flood, proxy.port, ["/slotted/home?utm_source=google"] * 30 + made_up)
        with httpx.Client(base_url=proxy.url, timeout=10.0) as client:
            deadline = time.monotonic() + 60   # (a loaded machine: the whole suite beside it)
            while "folded into '(other cells)'" not in proxy.log():
                assert time.monotonic() < deadline, proxy.log()[-3000:]
                time.sleep(0.3)
            while _exposed(report := client.get("/__ep/results", headers={
                    "authorization": f"Bearer {TOKEN}"}).json())["exposed"] < 730:
                assert time.monotonic() < deadline, report   # today's views flushed
                time.sleep(0.3)
        fields = {tuple(json.loads(field)): int(value) for field, value
                  in redis.hgetall("ep:counts:hero-bandit").items()}
    finally:
        proxy.stop()
        origin.stop()
        redis.close()
    past = {tuple(field[:5]) for field in fields if field[3] == yesterday}
    # 400 cells' rows are at most 51 cells' now, for good: the 50 with the most visitors
    # of the last days (today's made-up values among them, as many as the fold counted)
    # and the folded row
    cells = {f[2] for f in past}
    assert fields_before == len(planted) and OTHER_CELLS in cells and len(cells) <= 50 + 1
    assert len(past) <= (50 + 1) * 2
    assert "learning step failed" not in proxy.log()
    today: dict[tuple[str, str], int] = {}
    for field, value in fields.items():
        if field[3] != yesterday:
            today[(field[0], field[-1])] = today.get((field[0], field[-1]), 0) + value
    expected = {variant: (sum(t.exposures for k, t in planted.items() if k.variant == variant)
                          + today.get((variant, "e"), 0),
                          sum(t.conversions for k, t in planted.items() if k.variant == variant))
                for variant in ("control", "a", "b")}
    assert _exposed(report) == {"exposed": 730, **expected}   # every visitor, as counted


BAD_WEIGHTS = (b'{"experiments":{"hero-test":{"version":1e400,"updated_at":0,"holdout":0,'
               b'"starting":[["control",1]],"cells":{}}}}')


async def test_weights_that_do_not_decode_are_replaced_by_the_last_known_at_once(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Only ValueError was caught: a number past a float's range failed every tick with an
    # OverflowError, and no bandit's weights were published again.
    clock = Clock()
    trainer = Trainer(store, specs=lambda: [SPEC], learn_interval=None, clock=clock)
    await count(store, "all", {"control": (500, 20), "a": (500, 20), "b": (500, 20)})
    assert await trainer.update_weights()
    reader = weights_reader(store)
    assert await reader.refresh()
    learned = reader.current.experiments
    await store.publish(TABLE_NAME, BAD_WEIGHTS)
    clock.now += 1   # hero-test is not due: the table is replaced all the same
    await trainer.step()
    assert not trainer.troubles and not trainer.failures
    assert await reader.refresh() and reader.version == 3
    assert reader.current.experiments == learned
    assert told(caplog, "table bandit-weights version 2 does not decode (OverflowError: "
                "cannot convert float infinity to integer); the trainer publishes the weights "
                "it last knew (version 1) over it")
    clock.now += 1
    assert not await trainer.update_weights()   # then on its cadence again


class MalformedTable:
    """A store whose copy of table `name` does not read (StoreError, as the Redis store
    says of a table hash without its payload) until it is published again."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.location = store.location
        self.broken = True

    async def table(self, name: str, *, newer_than: int = 0) -> Any:
        if name == self.name and self.broken:
            # (as a store says of a copy that gives no version: a version that is no number)
            raise copy_unreadable(name, f"{self.location}: its version is no number")
        return await self.store.table(name, newer_than=newer_than)

    async def publish(self, name: str, payload: bytes) -> int:
        self.broken &= name != self.name
        return await self.store.publish(name, payload)

    async def publish_if(self, name: str, payload: bytes, *, version: int) -> int | None:
        return await self.store.publish_if(name, payload, version=version)

    async def flush(self, *args: Any, **kwargs: Any) -> None:
        await self.store.flush(*args, **kwargs)

    async def totals(self, experiment: str | None = None) -> dict[CountKey, Tally]:
        return await self.store.totals(experiment)

    async def fold(self, rows: Sequence[CountKey], *, into: str) -> None:
        await self.store.fold(rows, into=into)

    def unreadable(self) -> dict[str, list[str]]:
        return self.store.unreadable()

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        await self.store.close()


@pytest.mark.parametrize("table", ["experiment-goals", TABLE_NAME, "affinity-model"])
async def test_a_table_whose_copy_does_not_read_is_published_over(
        store: Store, table: str) -> None:
    # A table the store answered for with an error (a Redis hash without its payload) was
    # taken for an outage: learning stayed "paused" for good, nothing was learned again.
    clock = Clock()
    broken = MalformedTable(store, table)
    trainer = Trainer(broken, specs=lambda: [SPEC], learn_interval=3600, clock=clock,
                      experiments=lambda: {"hero-test": ("purchase",)})
    await count(store, "all", {"control": (500, 20), "a": (500, 20), "b": (500, 20)})
    await trainer.step()
    assert not trainer.paused and not trainer.troubles and not trainer.failures
    assert not broken.broken
    assert (await read_catalog(store)).experiments == {"hero-test": ("purchase",)}
    assert "hero-test" in WeightsTable.decode(
        *_payload_and_version(await store.table(TABLE_NAME))).experiments
    assert await store.table("affinity-model") is not None


def _payload_and_version(table: Any) -> tuple[bytes, int]:
    return table.payload, table.version
