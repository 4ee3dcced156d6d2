"""Which goals each experiment and the rules are judged on, kept in the store beside the
counts (GoalRecorder writes the record from the rules served).

The rules name an experiment's goals. Once the experiment is removed from them (stopped),
this record alone says on which goals the late conversions of its visitors count (those
exposed before, within each goal's window) and which goal its results lead with, and
which of the variants counted for it were still a choice when it stopped. Every worker's
trainer records the experiments of the rules it serves in a published table (their goals
and variants as the rules say now; removed ones as last recorded), and reads it back like
the bandit weights.

A goal that joins an experiment once visitors were counted for it (added, or renamed)
judges it from the next UTC day on: the visitors exposed before could not have reached a
goal that was not there, and judging them on it would dilute its rates. Their conversions
on it are not counted, and its results count the visitors exposed from that day on. Every
goal once recorded for an experiment keeps its day (or the start), removed and put back:
several servers on one store, one of them still serving older rules, publish the same.

Rules are judged on every goal of the rule files, so the record keeps the rule set's goals
the same way: a goal added to the rule files once a rule's visitors were counted judges
the rules from the next UTC day on (their results count the visitors reached since).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..errors import TableUnreadable
from ..rules.model import RuleSet
from .counters import INTERNAL_PREFIX, day_start, next_day_start, utc_day
from .store import Store, decoded, read_table

logger = logging.getLogger(__name__)
TABLE_NAME = "experiment-goals"


@dataclass(frozen=True)
class GoalCatalog:
    """Experiment name -> its goals, the first leading its results; `version` as published.
    `variants`: each experiment's variants as last in the rules (none for one recorded
    before variants were), so a stopped experiment's results know which were still a
    choice when it stopped."""

    experiments: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    version: int = 0
    variants: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    # experiment -> goal -> the UTC day it judges the experiment from, for the goals that
    # joined it once visitors were counted for it (the others: from the start)
    since: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: MappingProxyType({}))
    # experiment -> every goal ever recorded for it, removed ones too (a key of its own:
    # the readers of an earlier release ignore it)
    ever: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    # the rules' goals: every goal ever recorded for them (none: never recorded), and the
    # UTC day each that joined once a rule's visitors were counted judges the rules from
    rule_goals: tuple[str, ...] = ()
    rules_since: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def goals_of(self, experiment: str) -> frozenset[str] | None:
        """The goals `experiment` was judged on; None if it was never recorded."""
        goals = self.experiments.get(experiment)
        return frozenset(goals) if goals is not None else None

    def variants_of(self, experiment: str) -> tuple[str, ...] | None:
        """The variants `experiment` had when last in the rules; None if never recorded."""
        return self.variants.get(experiment)

    def since_of(self, experiment: str) -> Mapping[str, str]:
        """Goal -> the UTC day it judges `experiment` from, for goals that joined late."""
        return self.since.get(experiment, _NONE)

    def _had(self, experiment: str) -> set[str]:
        return {*self.ever.get(experiment, ()), *self.experiments.get(experiment, ())}

    def counted_from(self, experiment: str, goal: str, now: float) -> int:
        """The earliest exposure (POSIX seconds) of `experiment` whose visitor's conversion
        on `goal` counts: 0 for a goal it had from the start (or never recorded). A goal
        the experiment's record lacks joins it `now`, as the trainer is about to record."""
        had = self._had(experiment) if experiment in self.experiments else None
        return _counted_from(self.since_of(experiment), had, goal, now)

    def rule_counted_from(self, goal: str, now: float) -> int:
        """The earliest exposure (POSIX seconds) of a rule whose visitor's conversion on
        `goal` counts: 0 for a goal the rules had when first recorded (or never recorded);
        a goal the record lacks joins them `now`, as the trainer is about to record."""
        return _counted_from(self.rules_since, self.rule_goals or None, goal, now)

    def rules_joining(self, goals: Collection[str]) -> bool:
        """Whether `goals` (the rule files') add one never recorded for the rules, once
        recorded (the trainer then asks the store whether a rule's visitors were
        counted)."""
        return bool(self.rule_goals) and not set(goals) <= set(self.rule_goals)

    def with_rules(self, goals: Collection[str], *, begun: bool = False,
                   now: float = 0.0) -> GoalCatalog:
        """The catalog with the rules' `goals` recorded: those new to a record whose rules'
        visitors were counted (`begun`) judge them from the UTC day after `now`; a goal
        once recorded keeps its day, or the start."""
        days = (_joined(self.rules_since, self.rule_goals, goals, now)
                if self.rule_goals and begun else self.rules_since)
        return replace(self, rule_goals=tuple(sorted({*self.rule_goals, *goals})),
                       rules_since=days)

    def with_running(self, running: Mapping[str, tuple[str, ...]],
                     variants: Mapping[str, tuple[str, ...]] | None = None, *,
                     begun: Collection[str] = (), now: float = 0.0) -> GoalCatalog:
        """The catalog with the experiments `running` now (and their `variants`), as they
        are (same version). A goal new to an experiment recorded and `begun` (visitors
        counted) judges it from the UTC day after `now`; a goal once recorded keeps its
        day, or the start, removed and put back (a server still serving older rules does
        that)."""
        since, ever = dict(self.since), dict(self.ever)
        for name, goals in running.items():
            had = self._had(name)
            days = (_joined(self.since_of(name), had, goals, now)
                    if name in self.experiments and name in begun else self.since_of(name))
            ever[name] = tuple(sorted(had | set(goals)))
            if days:
                since[name] = days
        return replace(self, experiments=MappingProxyType({**self.experiments, **running}),
                       variants=MappingProxyType({**self.variants, **(variants or {})}),
                       since=MappingProxyType(since), ever=MappingProxyType(ever))

    def joining(self, running: Mapping[str, tuple[str, ...]]) -> list[str]:
        """The experiments recorded to which `running` adds a goal never recorded for them
        (the trainer asks the store whether visitors were counted for them)."""
        return sorted(name for name, goals in running.items()
                      if name in self.experiments and set(goals) - self._had(name))

    def encode(self) -> bytes:
        data: dict[str, object] = {
            "experiments": {name: list(goals)
                            for name, goals in sorted(self.experiments.items())}}
        if self.variants:
            data["variants"] = {name: list(names)
                                for name, names in sorted(self.variants.items())}
        if self.since:
            data["since"] = {name: dict(sorted(days.items()))
                             for name, days in sorted(self.since.items())}
        if self.ever:
            data["ever"] = {name: list(goals) for name, goals in sorted(self.ever.items())}
        if self.rule_goals:
            data["rules"] = {"goals": list(self.rule_goals),
                             "since": dict(sorted(self.rules_since.items()))}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes, version: int) -> GoalCatalog:
        """The catalog from `encode`'s bytes (one without variants too: written before
        they were recorded); raises ValueError on anything else."""
        try:
            document = json.loads(payload)
            experiments = {str(name): tuple(_goal(goal) for goal in goals)
                           for name, goals in document["experiments"].items()}
            variants = {str(name): tuple(_goal(variant) for variant in names)
                        for name, names in document.get("variants", {}).items()}
            ever_had: dict[str, set[str]] = {
                str(name): {_goal(goal) for goal in goals}
                for name, goals in document.get("ever", {}).items()}
            since = {}
            for name, days in document.get("since", {}).items():
                # ("" for a goal from the start: a record written between ad4e133 and
                # 89f340e, read as one with `ever`)
                since[str(name)] = MappingProxyType({_goal(goal): _day(day)
                                                     for goal, day in days.items() if day})
                ever_had.setdefault(str(name), set()).update(map(_goal, days))
            since = {name: days for name, days in since.items() if days}
            ever = {name: tuple(sorted(goals)) for name, goals in ever_had.items()}
            rules = document.get("rules", {})
            rule_goals = tuple(sorted(_goal(goal) for goal in rules.get("goals", ())))
            rules_since = {_goal(goal): _day(day)
                           for goal, day in rules.get("since", {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an experiment goals table: {exc!r}") from exc
        return cls(MappingProxyType(experiments), version, MappingProxyType(variants),
                   MappingProxyType(since), MappingProxyType(ever), rule_goals,
                   MappingProxyType(rules_since))


_NONE: Mapping[str, str] = MappingProxyType({})


def _counted_from(days: Mapping[str, str], had: Collection[str] | None, goal: str,
                  now: float) -> int:
    """The earliest exposure whose visitor's conversion on `goal` counts, for an
    experiment or the rules whose goals that joined late judge from `days` and who `had`
    these goals recorded (None: never recorded): 0 from the start; a goal the record
    lacks joins `now`, as the trainer is about to record."""
    day = days.get(goal)
    if day is not None:
        return day_start(day)
    return 0 if had is None or goal in had else next_day_start(now)


def _joined(days: Mapping[str, str], had: Collection[str], goals: Collection[str],
            now: float) -> Mapping[str, str]:
    """`days` with each of `goals` not `had` judging from the UTC day after `now`."""
    day = utc_day(next_day_start(now))
    return MappingProxyType({**days, **{goal: day for goal in goals if goal not in had}})


def _goal(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a goal name is a string, not {value!r}")
    return value


def _day(value: object) -> str:
    """A recorded day; ValueError unless one as utc_day writes it."""
    day = _goal(value)
    if datetime.date.fromisoformat(day).isoformat() != day:
        raise ValueError(f"not a day: {day!r}")
    return day



class GoalRecorder:
    """Records the rules' experiments (their goals and variants) and the rules' goals in
    the published catalog, from what the callables say of the rules served now; a goal
    that joins once visitors were counted gets its day (the store is asked then)."""

    def __init__(self, store: Store, *,
                 experiments: Callable[[], Mapping[str, tuple[str, ...]]],
                 variants: Callable[[], Mapping[str, tuple[str, ...]]],
                 rule_goals: Callable[[], tuple[str, ...]],
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.experiments = experiments
        self.variants = variants
        self.rule_goals = rule_goals
        self.clock = clock
        self._recorded: tuple[Mapping[str, tuple[str, ...]], Mapping[str, tuple[str, ...]],
                              tuple[str, ...]] | None = None   # as last recorded

    async def record(self, *, recheck: bool = False) -> bool:
        """Publishes the record if the rules changed it (or, when `recheck`, if the store
        lost it); True if it published."""
        running = (self.experiments(), self.variants(), self.rule_goals())
        if running == self._recorded and not recheck:
            return False
        held, unread = await _published_catalog(self.store)
        if unread is not None:
            logger.warning("%s: recorded again from the rules over it", unread)
        elif held.version and not (held.experiments or held.rule_goals) and (
                running[0] or running[2]):
            logger.warning("the experiment goals table (version %d) is empty or unreadable: "
                           "recorded again from the rules", held.version)
        begun = [name for name in held.joining(running[0])
                 if any(t.exposures for t in (await self.store.totals(name)).values())]
        now = self.clock()
        recorded = held.with_running(running[0], running[1], begun=begun, now=now)
        if running[2]:
            recorded = recorded.with_rules(running[2], now=now, begun=held.rules_joining(
                running[2]) and await self._rules_counted(held))
        self._recorded = None   # until recorded: looked at again next time
        if unread is not None:   # the store's copy gives no version to publish over
            await self.store.publish(TABLE_NAME, recorded.encode())
        elif recorded != held and await self.store.publish_if(
                TABLE_NAME, recorded.encode(), version=held.version) is None:
            return False   # another worker recorded first
        self._recorded = running
        return unread is not None or recorded != held

    async def _rules_counted(self, held: GoalCatalog) -> bool:
        """Whether a rule's visitors were counted: exposures under a name no experiment,
        running or recorded, has (asked only when a goal joins the rules)."""
        experiments = {*held.experiments, *self.experiments()}
        return any(tally.exposures for key, tally in (await self.store.totals()).items()
                   if key.experiment not in experiments
                   and not key.experiment.startswith(INTERNAL_PREFIX))


async def read_catalog(store: Store) -> GoalCatalog:
    """The catalog as published (empty when never published or unreadable); raises
    StoreError."""
    return (await _published_catalog(store))[0]


async def _published_catalog(store: Store) -> tuple[GoalCatalog, TableUnreadable | None]:
    """The catalog as published (empty, of the version that does not decode, when it does
    not), and why when the store's copy does not even give a version; raises StoreError."""
    try:
        published = await read_table(store, TABLE_NAME)
        return (GoalCatalog() if published is None
                else decoded(published, GoalCatalog.decode)), None
    except TableUnreadable as exc:
        if exc.version is None:
            return GoalCatalog(), exc
        return GoalCatalog(version=exc.version), None


def running_goals(ruleset: RuleSet) -> dict[str, tuple[str, ...]]:
    """Each experiment of a rule set with the goals it is judged on."""
    return {experiment.name: tuple(experiment.goals) for experiment in ruleset.experiments}


def rule_goals(ruleset: RuleSet) -> tuple[str, ...]:
    """The goals a rule set's rules are judged on: every goal of its files."""
    return tuple(sorted(ruleset.goals))


def running_variants(ruleset: RuleSet) -> dict[str, tuple[str, ...]]:
    """Each experiment of a rule set with its variants."""
    return {experiment.name: tuple(name for name, _ in experiment.weights)
            for experiment in ruleset.experiments}
