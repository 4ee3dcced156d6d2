"""Per-segment bandits: each cell of an experiment gets the variant weights its counts earn.

In: the store's totals of an experiment (exposures and conversions per variant, cell, day
and period) and its `BanditSpec`. Out: a `WeightsTable`, small and immutable, that the trainer
publishes through the store and every worker reads. The request path only calls
`WeightsTable.choose` (a dict get and a bisect); everything else runs in the background.

Weights come from top-two Thompson sampling over each variant's posterior (Beta for a
conversion rate; normal for the mean value per visitor): the leader by posterior draws
gets `leader_share` of the chance to be shown, and the rest goes to the challengers, each
by its chance to be the best when the leader is left out. Every variant keeps at least
`floor`; a cell keeps the starting weights until every variant has `burn_in` exposures;
a fixed `holdout` always sees the page as it is (the evaluator holds those visitors out,
from a hash of their id of its own, before it asks for a variant; their counts are no
arm's). The draws are seeded by the
experiment, cell and weights version, so the same counts give the same weights in every
worker.

An experiment keeps weights of their own for its `max_cells` cells with the most exposed
visitors (100 by default); the other cells share one row, learned from their counts
together (`others`), and so does a cell not counted yet once there is such a row. Cells
come from visitor fields a client may fill as it likes (`?utm_source=` anything): a
flood of made-up values does not grow the published table, and the cells with real
visitors keep their own weights. The store's rows of such cells do grow the work (each
is read and tallied on every update) until the trainer folds them, once their day is
over, into the OTHER_CELLS row the shared row learns from anyway (learn/folding.py):
what an update reads stays bounded by the days counted, not by what clients make up.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from ..rules.model import HOLDOUT
from .counters import OTHER_CELLS as OTHER_CELLS
from .counters import CountKey, Tally, most_exposed, on_goal
from .judging import from_day

if TYPE_CHECKING:
    # numpy is imported where weights are worked out, in the background: a worker that
    # only reads published weights (or has no bandit) never loads it (~17 MB, ~0.2 s).
    import numpy as np

TABLE_NAME = "bandit-weights"  # the store table all bandit experiments share
MAX_CELLS = 100   # cells of one experiment with weights of their own, by default
Metric = Literal["conversion", "value"]
Reason = Literal["burn_in", "learned"]
SHARED = "shared"   # reason_of a cell that shares out by the experiment's `others` row
Weights = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class BanditSpec:
    """What the trainer needs of one `allocation: bandit` experiment.

    `variants`: the starting weights (control included), used until a cell is past its
    burn-in. `floor` and `holdout` are shares (0.01 = 1%), `update_every` seconds.
    """

    experiment: str
    variants: Weights
    goal: str
    control: str = "control"
    metric: Metric = "conversion"
    burn_in: int = 200
    floor: float = 0.01
    update_every: float = 3600.0
    holdout: float = 0.0
    leader_share: float = 0.9
    draws: int = 4000
    since: str | None = None   # the UTC day `goal` judges from, when it joined under way
    max_cells: int = MAX_CELLS   # cells with weights of their own; the rest share one row

    def __post_init__(self) -> None:
        names = [name for name, _ in self.variants]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"{self.experiment}: a bandit needs two or more distinct variants")
        if self.control not in names:
            raise ValueError(f"{self.experiment}: control {self.control!r} is not a variant")
        if not 0 <= self.floor * len(names) <= 1:
            raise ValueError(f"{self.experiment}: floor {self.floor} x {len(names)} variants "
                             "must be between 0 and 1")
        if not 0 <= self.holdout < 1 or not 0 < self.leader_share <= 1:
            raise ValueError(f"{self.experiment}: holdout in [0, 1), leader_share in (0, 1]")
        if self.burn_in < 0 or self.update_every <= 0 or self.draws < 100 \
                or self.max_cells < 1:
            raise ValueError(f"{self.experiment}: burn_in >= 0, update_every > 0, "
                             "draws >= 100, max_cells >= 1")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.variants)

    @property
    def starting(self) -> Weights:
        total = sum(weight for _, weight in self.variants)
        return tuple((name, weight / total) for name, weight in self.variants)


def cell_tallies(rows: Mapping[CountKey, Tally], experiment: str, goal: str
                 ) -> dict[str, dict[str, Tally]]:
    """cell -> variant -> its exposures and its conversions on `goal`, summed over days
    and periods (those held out are no arm)."""
    cells: dict[str, dict[str, Tally]] = {}
    for key, tally in rows.items():
        if key.experiment != experiment or key.variant == HOLDOUT:
            continue
        part = on_goal(key, tally, goal)
        if part is None:
            continue
        variants = cells.setdefault(key.cell, {})
        held = variants.get(key.variant)
        variants[key.variant] = part if held is None else held.plus(part)
    return cells


def posterior_draws(tally: Tally, metric: Metric, draws: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Draws of a variant's rate (Beta(1 + converted, 1 + not converted)) or of its mean
    value per exposed visitor (normal, from the value sum and sum of squares)."""
    exposed = max(tally.exposures, 0)
    converted = min(max(tally.conversions, 0), exposed)
    if metric == "conversion":
        return rng.beta(1 + converted, 1 + exposed - converted, size=draws)
    if exposed < 2:   # nothing known: a wide normal around zero
        return rng.normal(0.0, 1e6, size=draws)
    mean = tally.value_sum / exposed
    variance = max(tally.value_sq_sum / exposed - mean * mean, 0.0) * exposed / (exposed - 1)
    return rng.normal(mean, max(variance / exposed, 1e-18) ** 0.5, size=draws)


def top_two_shares(samples: np.ndarray, leader_share: float) -> np.ndarray:
    """Top-two Thompson sampling's chance to show each arm, from draws (arms x draws):
    the leader drawn with `leader_share`, else the best of the others in a fresh draw."""
    import numpy as np

    arms = samples.shape[0]
    best = np.bincount(samples.argmax(axis=0), minlength=arms) / samples.shape[1]
    shares = leader_share * best
    for leader in range(arms):
        if best[leader] == 0:
            continue
        others = samples.copy()
        others[leader] = -np.inf
        challenger = np.bincount(others.argmax(axis=0), minlength=arms) / samples.shape[1]
        shares += (1 - leader_share) * best[leader] * challenger
    return np.asarray(shares / shares.sum())


def with_floor(shares: np.ndarray, floor: float) -> np.ndarray:
    """Shares lifted so that each is at least `floor` (the sum stays 1)."""
    import numpy as np

    return np.asarray(floor + (1 - floor * len(shares)) * shares)


def cell_weights(spec: BanditSpec, tallies: Mapping[str, Tally], *, version: int,
                 cell: str) -> tuple[Weights, Reason]:
    """The weights of one cell: the starting ones during burn-in, else learned."""
    names = spec.names
    counted = [tallies.get(name, Tally()) for name in names]
    if min(t.exposures for t in counted) < spec.burn_in:
        return spec.starting, "burn_in"
    import numpy as np

    rng = np.random.default_rng(_seed(spec.experiment, cell, version))
    samples = np.stack([posterior_draws(t, spec.metric, spec.draws, rng) for t in counted])
    shares = with_floor(top_two_shares(samples, spec.leader_share), spec.floor)
    return tuple(zip(names, (round(float(s), 6) for s in shares), strict=True)), "learned"


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class CellWeights:
    """One cell's allocation and why: still in burn-in, or learned from its counts."""

    weights: Weights
    reason: Reason
    exposures: int = 0


@dataclass(frozen=True)
class ExperimentWeights:
    """One experiment's allocation: per cell, plus the starting weights for a cell not yet
    counted. `version` grows with each update of this experiment. `others`: the row the
    `shared` cells counted beyond its `max_cells` share (their counts together), which a
    cell not counted yet shares too; None while every counted cell has its own."""

    version: int
    updated_at: float
    holdout: float
    starting: Weights
    cells: Mapping[str, CellWeights] = field(default_factory=lambda: MappingProxyType({}))
    others: CellWeights | None = None
    shared: int = 0

    def weights_of(self, cell: str) -> Weights:
        held = self.cells.get(cell) or self.others
        return self.starting if held is None else held.weights


def experiment_weights(spec: BanditSpec, rows: Mapping[CountKey, Tally], *,
                       version: int, now: float) -> ExperimentWeights:
    """Every counted cell's weights for `spec`, numbered `version`: from the visitors
    exposed since its goal joined the experiment when it joined under way; beyond its
    `max_cells` cells with the most visitors, one row for the rest together."""
    cells = {}
    rows = from_day(rows, spec.since)
    tallied = cell_tallies(rows, spec.experiment, spec.goal)
    # the folded cells' row (learn/folding.py) is the shared row's, never a cell's own
    kept = set(most_exposed({cell: sum(t.exposures for t in tallies.values())
                             for cell, tallies in tallied.items() if cell != OTHER_CELLS},
                            spec.max_cells))
    pooled: dict[str, Tally] = {}
    for cell, tallies in sorted(tallied.items()):
        if cell not in kept:
            for name, tally in tallies.items():
                held = pooled.get(name)
                pooled[name] = tally if held is None else held.plus(tally)
            continue
        weights, reason = cell_weights(spec, tallies, version=version, cell=cell)
        cells[cell] = CellWeights(weights, reason, sum(t.exposures for t in tallies.values()))
    others = None
    if len(tallied) > len(kept):
        weights, reason = cell_weights(spec, pooled, version=version, cell=OTHER_CELLS)
        others = CellWeights(weights, reason, sum(t.exposures for t in pooled.values()))
    return ExperimentWeights(version, now, spec.holdout, spec.starting,
                             MappingProxyType(cells), others, len(tallied) - len(kept))


# A cell's weights prepared for a bisect: the cumulative upper bound of each variant's
# share of [0, 1), then the variants' names (the last one repeated, so a point at the very
# top rounds into it).
_Pick = tuple[tuple[float, ...], tuple[str, ...]]


def _pick(weights: Weights) -> _Pick:
    total = sum(w for _, w in weights) or 1.0
    bounds = tuple(itertools.accumulate(w / total for _, w in weights))
    names = tuple(name for name, _ in weights)
    return bounds, names + names[-1:]


@dataclass(frozen=True)
class WeightsTable:
    """Every bandit experiment's weights, as published (`version` is the store's)."""

    version: int = 0
    experiments: Mapping[str, ExperimentWeights] = field(
        default_factory=lambda: MappingProxyType({}))
    _picks: Mapping[tuple[str, str], _Pick] = field(init=False, repr=False, compare=False)
    # a cell without a row of its own: the experiment's `others` row, else its starting
    _fallback: Mapping[str, _Pick] = field(init=False, repr=False, compare=False)
    _names: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        picks = {(name, cell): _pick(held.weights)
                 for name, e in self.experiments.items() for cell, held in e.cells.items()}
        fallback = {name: _pick(e.starting if e.others is None else e.others.weights)
                    for name, e in self.experiments.items()}
        object.__setattr__(self, "_picks", picks)
        object.__setattr__(self, "_fallback", fallback)
        object.__setattr__(self, "_names", {
            name: tuple(sorted(variant for variant, _ in e.starting))
            for name, e in self.experiments.items()})

    def names_of(self, experiment: str) -> tuple[str, ...] | None:
        """The variants, sorted, `experiment`'s weights were published for."""
        return self._names.get(experiment)

    def version_for(self, experiment: str, variants: tuple[str, ...]) -> int | None:
        """`experiment`'s version where its weights were published for `variants`
        (sorted): another server's rules may have others (a canary, a rolling deploy)."""
        held = self.experiments.get(experiment)
        return held.version if held is not None and self._names[experiment] == variants \
            else None

    def choose(self, experiment: str, cell: str, point: float) -> str | None:
        """The variant for a new visitor, not held out, at `point` (their stable variant
        point in [0, 1)) in `cell`; None when the experiment has no weights published yet
        (the caller uses its fixed weights). The holdout is the caller's to apply first,
        from a point of its own: this one only shares out among the variants."""
        pick = self._picks.get((experiment, cell)) or self._fallback.get(experiment)
        if pick is None:
            return None
        bounds, names = pick
        return names[bisect.bisect_right(bounds, point)]

    def version_of(self, experiment: str) -> int | None:
        """The version of `experiment`'s weights (None: none published)."""
        held = self.experiments.get(experiment)
        return None if held is None else held.version

    def reason_of(self, experiment: str, cell: str) -> str | None:
        """Why `cell` of `experiment` has its weights (None: not counted yet; SHARED: it
        shares the row of the cells beyond the experiment's own)."""
        held = self.experiments.get(experiment)
        weights = held.cells.get(cell) if held is not None else None
        if weights is None:
            return SHARED if held is not None and held.others is not None else None
        return weights.reason

    def weights_of(self, experiment: str, cell: str) -> Weights | None:
        """The weights `cell` of `experiment` shares out new visitors by (None: none
        published for the experiment)."""
        held = self.experiments.get(experiment)
        return None if held is None else held.weights_of(cell)

    def with_experiment(self, name: str, weights: ExperimentWeights) -> WeightsTable:
        return WeightsTable(self.version, MappingProxyType({**self.experiments, name: weights}))

    def encode(self) -> bytes:
        data = {name: _encoded(e) for name, e in sorted(self.experiments.items())}
        return json.dumps({"experiments": data}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes, version: int) -> WeightsTable:
        """The table from `encode`'s bytes; raises ValueError on anything else."""
        try:
            data = json.loads(payload)
            experiments = {
                str(name): ExperimentWeights(
                    int(e["version"]), float(e["updated_at"]), float(e["holdout"]),
                    _weights(e["starting"]),
                    MappingProxyType({str(cell): _cell(c) for cell, c in e["cells"].items()}),
                    _cell(e["others"]) if "others" in e else None, int(e.get("shared", 0)))
                for name, e in data["experiments"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a bandit weights table: {exc!r}") from exc
        return cls(version, MappingProxyType(experiments))

    def as_json(self) -> dict[str, object]:
        """For /__ep/results: per experiment, its version and each cell's weights."""
        return {name: {"version": e.version, "updated_at": e.updated_at,
                       "starting": dict(e.starting),
                       "cells": {cell: {"weights": dict(c.weights), "reason": c.reason,
                                        "exposures": c.exposures}
                                 for cell, c in e.cells.items()},
                       "other_cells": None if e.others is None else {
                           "cells": e.shared, "weights": dict(e.others.weights),
                           "reason": e.others.reason, "exposures": e.others.exposures}}
                for name, e in self.experiments.items()}


def _encoded(e: ExperimentWeights) -> dict[str, object]:
    """One experiment's part of the published table (`others` only when there is one:
    a server from before it was kept reads the rest as before)."""
    data: dict[str, object] = {
        "version": e.version, "updated_at": e.updated_at, "holdout": e.holdout,
        "starting": e.starting, "cells": {cell: _cell_data(c) for cell, c in e.cells.items()}}
    if e.others is not None:
        data.update(others=_cell_data(e.others), shared=e.shared)
    return data


def encoded_size(name: str, weights: ExperimentWeights) -> int:
    """The bytes one experiment's weights take in the published table."""
    return len(json.dumps({name: _encoded(weights)}, separators=(",", ":")))


def _cell_data(c: CellWeights) -> dict[str, object]:
    return {"weights": c.weights, "reason": c.reason, "exposures": c.exposures}


def _cell(data: Mapping[str, object]) -> CellWeights:
    exposures = data["exposures"]
    if not isinstance(exposures, (int, float, str)):
        raise TypeError("exposures must be a number")
    return CellWeights(_weights(data["weights"]), _reason(data["reason"]), int(exposures))


def _weights(data: object) -> Weights:
    if not isinstance(data, list):
        raise TypeError("weights must be a list")
    return tuple((str(name), float(weight)) for name, weight in data)


def _reason(data: object) -> Reason:
    if data == "burn_in":
        return "burn_in"
    if data == "learned":
        return "learned"
    raise TypeError(f"unknown reason {data!r}")
