"""The background task that learns from the store's totals, and the readers that bring what
it learned to every worker.

`Trainer.run` (started by the app's lifespan task group, like the flusher) wakes every
`tick` seconds: each bandit experiment whose `update_every` has passed since its weights
were last published gets new weights from its totals, and every `learn_interval` the
affinity model is rebuilt; each goes out with `store.publish`. The goals of the rules'
experiments go into the catalog (learn/catalog.py) whenever they change. Several workers
and instances may run a trainer: each looks at the published table first and leaves alone
what another published within the cadence. Two that decide at once both draw new weights,
but weights are published only over the version the trainer read (`Store.publish_if`):
one wins, and the other takes the table it published.

`TableReader.run` polls `store.table(name, newer_than=version)` in each worker and swaps in
the new immutable table; the request path only reads `reader.current`. A store that is down
or a table that does not decode keeps the last good one.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from ..errors import StoreError
from ..rules.model import RuleSet
from . import affinity, bandit, catalog
from .affinity import AffinityModel
from .bandit import BanditSpec, WeightsTable
from .catalog import GoalCatalog, GoalRecorder
from .store import Store

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
LEARN_INTERVAL = 3600.0   # seconds between rebuilds of the affinity model, by default
_RECHECK = 30             # polls (ticks) between looks at a table whatever its version


def bandit_specs(ruleset: RuleSet, recorded: GoalCatalog | None = None) -> list[BanditSpec]:
    """What the trainer needs of each `allocation: bandit` experiment of a rule set: it
    learns from the experiment's first goal (from the day it joined, if `recorded` says
    it joined the experiment under way)."""
    specs = []
    for experiment in ruleset.experiments:
        settings = experiment.bandit
        if experiment.allocation != "bandit" or settings is None or not experiment.goals:
            continue
        names = [name for name, _ in experiment.weights]
        specs.append(BanditSpec(
            experiment.name, experiment.weights, goal=experiment.goals[0],
            control="control" if "control" in names else names[0], metric=settings.metric,
            burn_in=settings.burn_in, floor=settings.floor / 100,
            update_every=settings.update_every, holdout=experiment.holdout / 100,
            since=recorded.since_of(experiment.name).get(experiment.goals[0])
            if recorded is not None else None))
    return specs


class Trainer:
    """Recomputes and publishes bandit weights and the affinity model.

    `specs` gives the current rule set's bandit experiments, `experiments` each
    experiment's goals and `variants` its variants (called on each tick, so a reload takes
    effect).
    `learn_interval`: seconds between affinity rebuilds; None for none (no rule reads
    predictions).
    """

    def __init__(self, store: Store, *, specs: Callable[[], Sequence[BanditSpec]],
                 experiments: Callable[[], Mapping[str, tuple[str, ...]]] = dict,
                 variants: Callable[[], Mapping[str, tuple[str, ...]]] = dict,
                 rule_goals: Callable[[], tuple[str, ...]] = tuple,
                 learn_interval: float | None = LEARN_INTERVAL, tick: float = 1.0,
                 clock: Callable[[], float] = time.time, min_support: int = 20,
                 top: int = 5) -> None:
        if tick <= 0 or (learn_interval is not None and learn_interval <= 0):
            raise ValueError("tick and learn_interval must be positive")
        self.store = store
        self.specs = specs
        self.recorder = GoalRecorder(store, experiments=experiments, variants=variants,
                                     rule_goals=rule_goals, clock=clock)
        self.learn_interval = learn_interval
        self.tick = tick
        self.clock = clock
        self.min_support = min_support
        self.top = top
        self.failures = 0   # steps that failed, since the start
        self.paused = False   # the last step met a store that failed
        self._weights = WeightsTable()
        # When an experiment due for new weights last had nothing new (no exposures since
        # its version): looked at again one update_every later, not every tick.
        self._unchanged_at: dict[str, float] = {}
        self._model_built_at: float | None = None
        self._ticks = 0
        self._told_other: set[tuple[str, int]] = set()   # (experiment, weights version)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Step every `tick` seconds until cancelled."""
        task_status.started()
        while True:
            await self.step()
            await anyio.sleep(self.tick)

    async def step(self) -> None:
        """Does whatever is due; never raises for a store that fails or a bug (logged; a
        bug in one task leaves the others to run)."""
        self._ticks += 1
        # While paused, the store is asked first: a step may need nothing of it otherwise
        reach = (self._reach_store,) if self.paused else ()
        for task in (*reach, self.record_goals, self.update_weights, self.rebuild_model):
            try:
                await task()
            except StoreError as exc:
                self._failed(f"store unavailable: {exc}")
                return
            except Exception:   # a bug must not end the server through the lifespan's tasks
                logger.error("learning step failed unexpectedly", exc_info=True)
                self.failures += 1
        if self.paused:
            self.paused = False
            logger.info("learning resumed: the store answers again")

    async def _reach_store(self) -> None:
        await self.store.table(catalog.TABLE_NAME)

    def _failed(self, reason: str) -> None:
        """Each outage told once, when it begins (and its end by step)."""
        if not self.paused:
            logger.warning("learning paused: %s", reason)
        self.paused = True
        self.failures += 1

    async def record_goals(self) -> bool:
        """Records the goals of the rules' experiments and of the rules in the published
        catalog (learn/catalog.py); True if it published. The store is asked when the
        rules change, and every `_RECHECK` ticks (a store emptied since)."""
        return await self.recorder.record(recheck=not self._ticks % _RECHECK)

    async def update_weights(self) -> bool:
        """Publishes new weights for every bandit experiment that is due; True if it did."""
        specs = self.specs()
        if not specs:
            return False
        now = self.clock()
        table = await self._published_weights()
        for told in _other_variants(table, specs, self._told_other):
            logger.warning("%s", told)
        due = [s for s in specs
               if _due(table, s, now, self._unchanged_at.get(s.experiment, -math.inf))]
        changed = []
        for spec in due:
            rows = await self.store.totals(spec.experiment)
            held = table.experiments.get(spec.experiment)
            # numpy's draws (and its import, the first time) off the event loop
            weights = await anyio.to_thread.run_sync(functools.partial(
                bandit.experiment_weights, spec, rows, now=now,
                version=1 if held is None else held.version + 1))
            if held is not None and _nothing_new(held, weights):
                self._unchanged_at[spec.experiment] = now
                continue
            table = table.with_experiment(spec.experiment, weights)
            changed.append(spec)
        due = changed
        if not due:
            return False
        version = await self.store.publish_if(bandit.TABLE_NAME, table.encode(),
                                              version=self._weights.version)
        if version is None:
            await self._adopt_published_weights()
            logger.info("bandit weights version %d published by another trainer first; "
                        "taken as they are", self._weights.version)
            return False
        self._weights = WeightsTable(version, table.experiments)
        logger.info("bandit weights version %d published for %s", version,
                    ", ".join(s.experiment for s in due))
        return True

    async def _published_weights(self) -> WeightsTable:
        published = await self.store.table(bandit.TABLE_NAME, newer_than=self._weights.version)
        if published is not None:
            try:
                self._weights = WeightsTable.decode(published.payload, published.version)
            except ValueError:
                logger.warning("bandit weights version %d unreadable; replacing it",
                               published.version)
        return self._weights

    async def _adopt_published_weights(self) -> None:
        """Takes the published table whatever its version (a store emptied since counts
        from 1 again), so the next publication is over the version that is there."""
        published = await self.store.table(bandit.TABLE_NAME)
        if published is None:
            self._weights = WeightsTable()
            return
        try:
            self._weights = WeightsTable.decode(published.payload, published.version)
        except ValueError:   # unreadable: replaced by the next publication
            self._weights = WeightsTable(published.version)

    async def rebuild_model(self) -> bool:
        """Rebuilds and publishes the affinity model if `learn_interval` has passed since
        it was last published (by any trainer); True if it did."""
        if self.learn_interval is None:
            return False
        now = self.clock()
        if self._model_built_at is not None and now - self._model_built_at < self.learn_interval:
            return False
        built_at = await self._published_model_time()
        if built_at is not None and now - built_at < self.learn_interval:
            self._model_built_at = built_at
            return False
        counts = affinity.affinity_counts(await self.store.totals(affinity.AFFINITY))
        # Seconds of work for a site with many categories: in a thread, so the worker's
        # requests keep being served meanwhile.
        model = await anyio.to_thread.run_sync(functools.partial(
            affinity.build_model, counts, min_support=self.min_support, top=self.top,
            built_at=now))
        version = await self.store.publish(affinity.TABLE_NAME, model.encode())
        self._model_built_at = now
        logger.info("affinity model version %d published (%d pairs, %d categories)",
                    version, len(model.pairs), len(model.singles))
        return True


    async def _published_model_time(self) -> float | None:
        """When the published model was built, by its builder's clock (None: none yet)."""
        published = await self.store.table(affinity.TABLE_NAME)
        if published is None:
            return None
        try:
            return AffinityModel.decode(published.payload, published.version).built_at
        except ValueError:
            return None


def _other_variants(table: WeightsTable, specs: Sequence[BanditSpec],
                    told: set[tuple[str, int]]) -> list[str]:
    """What to warn of weights published (by another server's trainer, serving other
    rules) for other variants than these rules', once per experiment and version: this
    server's workers share those experiments out by their starting weights meanwhile."""
    lines = []
    for spec in specs:
        published = table.names_of(spec.experiment)
        ours = tuple(sorted(name for name, _ in spec.variants))
        if published is None or published == ours or (spec.experiment, table.version) in told:
            continue
        told.add((spec.experiment, table.version))
        lines.append(f"bandit weights version {table.version} for {spec.experiment} are for "
                     f"variants {', '.join(published)}; these rules have {', '.join(ours)} "
                     "(another server serving other rules?): new visitors are shared out by "
                     "the rules' starting weights until weights for them are published")
    return lines


def _due(table: WeightsTable, spec: BanditSpec, now: float, unchanged_at: float) -> bool:
    held = table.experiments.get(spec.experiment)
    return held is None or now - max(held.updated_at, unchanged_at) >= spec.update_every


def _nothing_new(held: bandit.ExperimentWeights, weights: bandit.ExperimentWeights) -> bool:
    """Whether new weights would only renumber the held ones: no cell has an exposure more,
    and the rules' starting weights and holdout are as they were. (Conversions that came
    alone wait for the next exposure: without one, no visitor is being assigned.) Each
    version starts a period of the results: none for nothing."""
    return (held.starting == weights.starting and held.holdout == weights.holdout
            and {cell: c.exposures for cell, c in held.cells.items()}
            == {cell: c.exposures for cell, c in weights.cells.items()})


class TableReader(Generic[_T]):
    """A worker's current copy of a published table, refreshed every `interval` seconds.

    `decode(payload, version)` builds the immutable table (raising ValueError for a bad
    payload); `current` starts as `empty` and is swapped whole, never changed in place.
    """

    def __init__(self, store: Store, name: str, decode: Callable[[bytes, int], _T], *,
                 empty: _T, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.name = name
        self.decode = decode
        self.interval = interval
        self.current = empty
        self.version = 0
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
        `_RECHECK`th poll takes whatever version is published, so a store that was emptied
        (versions counting from 1 again) is followed too."""
        self._polls += 1
        newer_than = 0 if self._polls % _RECHECK == 0 else self.version
        try:
            published = await self.store.table(self.name, newer_than=newer_than)
        except StoreError:
            return False   # the last good table keeps serving; the flusher logs outages
        if published is None or published.version == self.version:
            return False
        changed = True
        try:
            self.current = self.decode(published.payload, published.version)
        except ValueError:
            logger.warning("table %s version %d unreadable; keeping version %d",
                           self.name, published.version, self.version)
            changed = False
        self.version = published.version   # a bad version is not read again
        return changed


def weights_reader(store: Store, *, interval: float = 1.0) -> TableReader[WeightsTable]:
    return TableReader(store, bandit.TABLE_NAME, WeightsTable.decode, empty=WeightsTable(),
                       interval=interval)


def model_reader(store: Store, *, interval: float = 1.0) -> TableReader[AffinityModel]:
    return TableReader(store, affinity.TABLE_NAME, AffinityModel.decode, empty=AffinityModel(),
                       interval=interval)


def catalog_reader(store: Store, *, interval: float = 1.0) -> TableReader[GoalCatalog]:
    return TableReader(store, catalog.TABLE_NAME, GoalCatalog.decode, empty=GoalCatalog(),
                       interval=interval)
