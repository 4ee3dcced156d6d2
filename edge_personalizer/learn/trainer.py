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

After working out a bandit's weights, the trainer folds its rows of cells too small to keep
apart, of past days, into one row (learn/folding.py): what clients make up stays out of
the work of every later update.

Each worker reads what was published with a `TableReader` (learn/readers.py).

One experiment's trouble stops no other's learning: an experiment whose weights cannot be
worked out, or would not fit in the table all bandits share (`MAX_TABLE_BYTES`), keeps
its last weights while the others' are published. What keeps failing is logged once per
cause and shown by /__ep/health (`learning`) and the metric ep_learning_troubles. A
published table that does not read or decode (a bad row, a hand edit) stops nothing
either: the trainer publishes over it, the weights it last knew at once.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from ..errors import StoreError, TableUnreadable
from ..rules.model import RuleSet
from . import affinity, bandit
from .affinity import AffinityModel
from .bandit import BanditSpec, WeightsTable
from .catalog import GoalCatalog, GoalRecorder
from .folding import fold, weights_and_folds
from .readers import RECHECK
from .store import Store, Table, decoded, read_table
from .store.base import MAX_TABLE_BYTES
from .troubles import Troubles, cause_of

logger = logging.getLogger(__name__)
LEARN_INTERVAL = 3600.0   # seconds between rebuilds of the affinity model, by default
_TASKS = MappingProxyType({"record_goals": "recording the experiments' goals",
                           "update_weights": "updating bandit weights",
                           "rebuild_model": "rebuilding the affinity model"})


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
            max_cells=settings.max_cells,
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
                 top: int = 5, troubles: Troubles | None = None) -> None:
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
        self._weights = _HeldWeights(store)
        # When an experiment due for new weights last had nothing new (no exposures since
        # its version): looked at again one update_every later, not every tick.
        self._unchanged_at: dict[str, float] = {}
        self._model_built_at: float | None = None
        self._ticks = 0
        self._told_other: set[tuple[str, int]] = set()   # (experiment, weights version)
        # what keeps failing, told once a cause (shared with the workers' table readers)
        self.troubles = Troubles(logger, clock) if troubles is None else troubles

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
            what = _TASKS.get(task.__name__, task.__name__)
            try:
                await task()
            except StoreError as exc:
                self._failed(f"store unavailable: {exc}")
                return
            except Exception as exc:   # a bug must not end the server through the lifespan
                self.failures += 1
                self.troubles.failed(what, cause_of(exc), "learning step failed "
                                     f"unexpectedly: {type(exc).__name__}: {exc}", exc=exc,
                                     level=logging.ERROR)
            else:
                self.troubles.cleared(what)
        if self.paused:
            self.paused = False
            logger.info("learning resumed: the store answers again")

    def health(self) -> dict[str, Any]:
        """For /__ep/health: whether this worker's learning does its work, and what fails."""
        return _health("paused" if self.paused else "failing" if self.troubles else "ok",
                       self.failures, self.troubles.report())

    async def _reach_store(self) -> None:
        await self.store.ping()

    def _failed(self, reason: str) -> None:
        """Each outage told once, when it begins (and its end by step)."""
        if not self.paused:
            logger.warning("learning paused: %s", reason)
        self.paused = True
        self.failures += 1

    async def record_goals(self) -> bool:
        """Records the goals of the rules' experiments and of the rules in the published
        catalog (learn/catalog.py); True if it published. The store is asked when the
        rules change, and every `RECHECK` ticks (a store emptied since)."""
        return await self.recorder.record(recheck=not self._ticks % RECHECK)

    async def update_weights(self) -> bool:
        """Publishes new weights for every bandit experiment that is due; True if it did."""
        specs = self.specs()
        self.troubles.clear_others("bandit ", {f"bandit {s.experiment}" for s in specs})
        if not specs:
            return False
        now = self.clock()
        table = await self._weights.published()
        for told in _other_variants(table, specs, self._told_other):
            logger.warning("%s", told)
        due = [s for s in specs
               if _due(table, s, now, self._unchanged_at.get(s.experiment, -math.inf))]
        changed, read = [], table
        for spec in due:
            held = table.experiments.get(spec.experiment)
            weights = await self._experiment_weights(spec, held, now)
            if weights is not None and held is not None and _nothing_new(held, weights):
                self.troubles.cleared(f"bandit {spec.experiment}")   # worked out again
            if weights is None or held is not None and _nothing_new(held, weights):
                self._unchanged_at[spec.experiment] = now   # looked at again on its cadence
                continue
            table = table.with_experiment(spec.experiment, weights)
            changed.append(spec)
        table, left = fitting(table, read, [s.experiment for s in changed])
        for name, why in left.items():   # looked at again on its cadence
            self.failures += 1
            self.troubles.failed(f"bandit {name}", "too big", why)
            self._unchanged_at[name] = now
        due = [s for s in changed if s.experiment not in left]
        if not due and self._weights.replace is None:
            return False
        version = await self._weights.publish(table)
        if version is None:
            await self._weights.adopt()
            logger.info("bandit weights version %d published by another trainer first; "
                        "taken as they are", self._weights.table.version)
            return False
        logger.info("bandit weights version %d published for %s", version,
                    ", ".join(s.experiment for s in due) if due else
                    "none due: it replaces a table that did not decode")
        for spec in due:
            self.troubles.cleared(f"bandit {spec.experiment}")
        return True

    async def _experiment_weights(self, spec: BanditSpec, held: bandit.ExperimentWeights |
                                  None, now: float) -> bandit.ExperimentWeights | None:
        """New weights for `spec`, or None when they cannot be worked out (a bug in one
        experiment's: it keeps its last weights, and the others learn on)."""
        rows = await self.store.totals(spec.experiment)
        try:
            weights, folded = await anyio.to_thread.run_sync(weights_and_folds, spec, rows,
                                                             held, now)
        except Exception as exc:
            self.failures += 1
            self.troubles.failed(
                f"bandit {spec.experiment}", cause_of(exc),
                f"its weights could not be worked out ({type(exc).__name__}: {exc}); "
                f"{_keeps(held)}, and the other experiments learn on", exc=exc,
                level=logging.ERROR)
            return None
        await fold(self.store, spec.experiment, folded)
        return weights

    async def rebuild_model(self) -> bool:
        """Rebuilds and publishes the affinity model if `learn_interval` has passed since
        it was last published (by any trainer); True if it did."""
        if self.learn_interval is None:
            return False
        now = self.clock()
        if self._model_built_at is not None and now - self._model_built_at < self.learn_interval:
            return False
        built_at = await _published_model_time(self.store)
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


class _HeldWeights:
    """The bandit weights a trainer last knew (`table`), as published. One published that
    does not read or decode is to be replaced by them at the next update (`replace`: why),
    over its version, or over whatever is there when the store's copy gives none."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = WeightsTable()
        self.replace: TableUnreadable | None = None

    async def published(self) -> WeightsTable:
        """The weights published since the ones held (the held ones if none were)."""
        await self._take(newer_than=self.table.version)
        return self.table

    async def adopt(self) -> None:
        """Takes the published table whatever its version (a store emptied since counts
        from 1 again), so the next publication is over the version that is there."""
        if not await self._take(newer_than=0):
            self.table = WeightsTable()

    async def publish(self, table: WeightsTable) -> int | None:
        """Publishes `table` over the version held; its version, or None when another
        trainer published first."""
        replaced, self.replace = self.replace, None
        if replaced is not None and replaced.version is None:   # no version to publish over
            version: int | None = await self.store.publish(bandit.TABLE_NAME, table.encode())
        else:
            version = await self.store.publish_if(bandit.TABLE_NAME, table.encode(),
                                                  version=self.table.version)
        if version is not None:
            self.table = WeightsTable(version, table.experiments)
        return version

    async def _take(self, *, newer_than: int) -> bool:
        """Takes the weights published newer than `newer_than`; False when none are."""
        try:
            published: Table | None = await read_table(self.store, bandit.TABLE_NAME,
                                                       newer_than=newer_than)
            if published is not None:
                self.table = decoded(published, WeightsTable.decode)
        except TableUnreadable as exc:
            if str(self.replace) != str(exc):
                logger.warning("%s; the trainer publishes the weights it last knew (version "
                               "%d) over it", exc, self.table.version)
            self.replace = exc
            if exc.version is not None:   # published over that version
                self.table = WeightsTable(exc.version, self.table.experiments)
            return True
        return published is not None


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


async def _published_model_time(store: Store) -> float | None:
    """When the published model was built, by its builder's clock (None: none yet, or
    one that does not read or decode: rebuilt and published over)."""
    try:
        published = await read_table(store, affinity.TABLE_NAME)
        return None if published is None else decoded(published, AffinityModel.decode).built_at
    except TableUnreadable as exc:
        logger.warning("%s; the trainer rebuilds the model and publishes it over", exc)
        return None


def fitting(table: WeightsTable, read: WeightsTable, changed: Sequence[str]
            ) -> tuple[WeightsTable, dict[str, str]]:
    """`table` with the largest of the `changed` experiments' new weights left out (as
    they were in `read`) until it fits in a published table; and why each was left out."""
    size = len(table.encode())
    left: dict[str, str] = {}
    by_size = sorted(((bandit.encoded_size(name, table.experiments[name]), name)
                      for name in changed), reverse=True)
    for own, name in by_size:
        if size <= MAX_TABLE_BYTES:
            break
        held, cells = read.experiments.get(name), len(table.experiments[name].cells)
        kept = {n: e for n, e in table.experiments.items() if n != name}
        if held is not None:
            kept[name] = held
        table = WeightsTable(table.version, MappingProxyType(kept))
        left[name] = (
            f"its new weights take {own:,} bytes ({cells} cells) and the weights of every "
            f"bandit experiment together must fit in {MAX_TABLE_BYTES:,} bytes ({size:,} "
            f"with them); {_keeps(held)}, and the other experiments' weights are "
            "published; lower its bandit max_cells or shorten the values of its per: fields")
        size = len(table.encode())
    return table, left


def _health(status: str, failures: int, troubles: list[dict[str, Any]]) -> dict[str, Any]:
    report: dict[str, Any] = {"status": status, "failures": failures, "troubles": troubles}
    if status != "ok":
        report["consequence"] = ("pages are served as before; what fails keeps what it last "
                                 "published (bandit weights, predictions) until it works again")
    return report


def _keeps(held: bandit.ExperimentWeights | None) -> str:
    return (f"it keeps its weights version {held.version}" if held is not None
            else "its new visitors are shared out by its starting weights")


def _due(table: WeightsTable, spec: BanditSpec, now: float, unchanged_at: float) -> bool:
    held = table.experiments.get(spec.experiment)
    return held is None or now - max(held.updated_at, unchanged_at) >= spec.update_every


def _nothing_new(held: bandit.ExperimentWeights, weights: bandit.ExperimentWeights) -> bool:
    """Whether new weights would only renumber the held ones: no cell has an exposure more,
    and the rules' starting weights and holdout are as they were (cells folded into the
    shared row since, learn/folding.py, change nothing it learns). (Conversions that came
    alone wait for the next exposure: without one, no visitor is being assigned.) Each
    version starts a period of the results: none for nothing."""
    return (held.starting == weights.starting and held.holdout == weights.holdout
            and {cell: c.exposures for cell, c in held.cells.items()}
            == {cell: c.exposures for cell, c in weights.cells.items()}
            and (held.others and held.others.exposures) == (weights.others
                                                            and weights.others.exposures))
