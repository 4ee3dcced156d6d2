"""Which goals each experiment is judged on, kept in the store beside its counts.

The rules name an experiment's goals. Once the experiment is removed from them (stopped),
this record alone says on which goals the late conversions of its visitors count (those
exposed before, within each goal's window) and which goal its results lead with, and
which of the variants counted for it were still a choice when it stopped. Every worker's
trainer records the experiments of the rules it serves in a published table (their goals
and variants as the rules say now; removed ones as last recorded), and reads it back like
the bandit weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..rules.model import RuleSet
from .store import Store

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

    def goals_of(self, experiment: str) -> frozenset[str] | None:
        """The goals `experiment` was judged on; None if it was never recorded."""
        goals = self.experiments.get(experiment)
        return frozenset(goals) if goals is not None else None

    def variants_of(self, experiment: str) -> tuple[str, ...] | None:
        """The variants `experiment` had when last in the rules; None if never recorded."""
        return self.variants.get(experiment)

    def with_running(self, running: Mapping[str, tuple[str, ...]],
                     variants: Mapping[str, tuple[str, ...]] | None = None) -> GoalCatalog:
        """The catalog with the experiments `running` now (and their `variants`), as they
        are (same version)."""
        return GoalCatalog(MappingProxyType({**self.experiments, **running}), self.version,
                           MappingProxyType({**self.variants, **(variants or {})}))

    def encode(self) -> bytes:
        data: dict[str, object] = {
            "experiments": {name: list(goals)
                            for name, goals in sorted(self.experiments.items())}}
        if self.variants:
            data["variants"] = {name: list(names)
                                for name, names in sorted(self.variants.items())}
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
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an experiment goals table: {exc!r}") from exc
        return cls(MappingProxyType(experiments), version, MappingProxyType(variants))


def _goal(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a goal name is a string, not {value!r}")
    return value


async def read_catalog(store: Store) -> GoalCatalog:
    """The catalog as published (empty when never published or unreadable); raises
    StoreError."""
    published = await store.table(TABLE_NAME)
    if published is None:
        return GoalCatalog()
    try:
        return GoalCatalog.decode(published.payload, published.version)
    except ValueError:
        return GoalCatalog(version=published.version)


def running_goals(ruleset: RuleSet) -> dict[str, tuple[str, ...]]:
    """Each experiment of a rule set with the goals it is judged on."""
    return {experiment.name: tuple(experiment.goals) for experiment in ruleset.experiments}


def running_variants(ruleset: RuleSet) -> dict[str, tuple[str, ...]]:
    """Each experiment of a rule set with its variants."""
    return {experiment.name: tuple(name for name, _ in experiment.weights)
            for experiment in ruleset.experiments}
