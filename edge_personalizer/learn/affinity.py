"""Visitors like you: which interest a visitor is likely to show next, from visitors with the
same strongest two interests.

Counting (request path): on a page view, each category of the page outside the visitor's
strongest two is counted against that pair (or single category), as one more count in the
worker's accumulator under the experiment name `AFFINITY` (variant: the pair, goal:
`INTEREST` or `CONVERSION`, cell: the category). The flusher takes them to the store with
the other counts.

Model (background): `build_model` turns the store's totals into conditional probabilities
P(next category | pair), smoothed towards the two single categories and those towards
overall popularity (each level's own counts count only from `min_support` on), keeping the
`top` best per key. Prediction (request path): `AffinityModel.predict` is two dict gets.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..classify.profile import Profile
from .counters import Accumulator, CountKey, Tally

AFFINITY = "ep:affinity"   # the counters' experiment name for these counts
INTEREST = "interest"      # goal: the visitor viewed a page of the category
CONVERSION = "conversion"  # goal: the visitor converted on a page of the category
TABLE_NAME = "affinity-model"
_SEP = "\x1f"              # between the two categories of a pair key
_DAY = 86_400.0
_MAX_BACKOFF_PAIRS = 2_000  # pairs built from single categories alone, at most

Scores = Mapping[str, tuple[float, int]]   # Profile.scores: category -> (score, when)
Predictions = tuple[tuple[str, float], ...]


def strongest(scores: Scores, half_life_days: float) -> tuple[str, ...]:
    """The visitor's strongest one or two interests, strongest first, as decayed to any
    common moment (decay keeps their order, so no clock is needed)."""
    if not scores:
        return ()
    rate = 1.0 / (half_life_days * _DAY)
    first = second = ""
    first_rank = second_rank = -math.inf
    log2 = math.log2
    for name, (score, at) in scores.items():
        if score > 0:
            rank = log2(score) + at * rate   # log2 of score * 0.5 ** ((now - at) / half_life)
            if rank > second_rank:
                if rank > first_rank:
                    second, second_rank, first, first_rank = first, first_rank, name, rank
                else:
                    second, second_rank = name, rank
    if not first:
        return ()
    return (first, second) if second else (first,)


def strongest_before(scores: Scores, categories: Iterable[str], *, learning_rate: float,
                     half_life_days: float) -> tuple[str, ...]:
    """The strongest interests as they stood before the page view that taught `categories`
    (the profile learns new = old + (1 - old) * learning_rate: undone here)."""
    before = dict(scores)
    for category in categories:
        held = before.get(category)
        if held is None:
            continue
        old = (held[0] - learning_rate) / (1 - learning_rate)
        if old > 1e-3:
            before[category] = (old, held[1])   # decayed to the view's time already
        else:
            del before[category]
    return strongest(before, half_life_days)


def key_of(top: tuple[str, ...]) -> str:
    """The counting key of a visitor's strongest interests: the pair in name order."""
    return _SEP.join(sorted(top))


def record(counters: Accumulator, top: tuple[str, ...], categories: Iterable[str], *,
           goal: str = INTEREST) -> None:
    """Counts each of `categories` outside `top` as shown next by visitors with `top`."""
    if not top:
        return
    key = key_of(top)
    for category in categories:
        if category not in top:
            counters.convert(AFFINITY, key, goal, category)


def affinity_counts(rows: Mapping[CountKey, Tally], *, conversion_weight: float = 1.0
                    ) -> dict[tuple[str, ...], dict[str, float]]:
    """Key (one or two categories) -> next category -> count, from the store's totals."""
    counts: dict[tuple[str, ...], dict[str, float]] = {}
    for key, tally in rows.items():
        if key.experiment != AFFINITY or key.goal not in (INTEREST, CONVERSION):
            continue
        weight = 1.0 if key.goal == INTEREST else conversion_weight
        top = tuple(key.variant.split(_SEP))
        per = counts.setdefault(top, {})
        per[key.cell] = per.get(key.cell, 0.0) + weight * tally.conversions
    return counts


@dataclass(frozen=True)
class AffinityModel:
    """Predicted next interests, best first, per pair key, per single category, and overall.
    Scores are probabilities (0..1) that the next interest shown is that category."""

    version: int = 0
    built_at: float = 0.0
    pairs: Mapping[str, Predictions] = field(default_factory=lambda: MappingProxyType({}))
    singles: Mapping[str, Predictions] = field(default_factory=lambda: MappingProxyType({}))
    popular: Predictions = ()
    top: int = 5

    def predict(self, top: tuple[str, ...]) -> Predictions:
        """The best next interests (never one of `top`) for a visitor whose strongest
        interests are `top` (strongest first)."""
        if len(top) == 2:
            held = self.pairs.get(key_of(top))
            if held is not None:
                return held
            held = self.singles.get(top[0])
            if held is not None:
                return tuple(p for p in held if p[0] != top[1])[:self.top]
        elif top:
            held = self.singles.get(top[0])
            if held is not None:
                return held[:self.top]
        return tuple(p for p in self.popular if p[0] not in top)[:self.top]

    def score(self, top: tuple[str, ...], category: str) -> float:
        """The predicted score of `category` (0 when it is not among the best)."""
        for name, value in self.predict(top):
            if name == category:
                return value
        return 0.0

    def encode(self) -> bytes:
        data = {"version": self.version, "built_at": self.built_at, "top": self.top,
                "pairs": [[key.split(_SEP), p] for key, p in sorted(self.pairs.items())],
                "singles": dict(sorted(self.singles.items())), "popular": self.popular}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes, version: int) -> AffinityModel:
        """The model from `encode`'s bytes; raises ValueError on anything else."""
        try:
            data = json.loads(payload)
            pairs = {key_of(tuple(str(c) for c in key)): _predictions(p)
                     for key, p in data["pairs"]}
            singles = {str(k): _predictions(p) for k, p in data["singles"].items()}
            return cls(version, float(data["built_at"]), MappingProxyType(pairs),
                       MappingProxyType(singles), _predictions(data["popular"]),
                       int(data["top"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an affinity model: {exc!r}") from exc


def _predictions(data: object) -> Predictions:
    if not isinstance(data, list):
        raise TypeError("predictions must be a list")
    return tuple((str(name), float(score)) for name, score in data)


def build_model(counts: Mapping[tuple[str, ...], Mapping[str, float]], *,
                min_support: int = 20, top: int = 5, pair_prior: float = 20.0,
                single_prior: float = 20.0, version: int = 0, built_at: float = 0.0
                ) -> AffinityModel:
    """The model from `counts` (`affinity_counts`). A pair's estimate is its own counts
    plus `pair_prior` counts' worth of the single categories' estimate; a single's, its
    counts plus `single_prior` of popularity. A key with fewer than `min_support` counts
    uses only what it backs off to."""
    popularity: dict[str, float] = {}
    single_counts: dict[str, dict[str, float]] = {}
    for key, per in counts.items():
        for category, n in per.items():
            popularity[category] = popularity.get(category, 0.0) + n
            for name in key:
                held = single_counts.setdefault(name, {})
                held[category] = held.get(category, 0.0) + n
    total = sum(popularity.values())
    if not total:
        return AffinityModel(version, built_at, top=top)
    popular = {c: n / total for c, n in popularity.items()}

    def smoothed(own: Mapping[str, float], prior: Mapping[str, float], strength: float,
                 ) -> dict[str, float]:
        n = sum(own.values())
        if n < min_support:
            own, n = {}, 0.0
        if n + strength <= 0:
            return dict(prior)
        return {c: (own.get(c, 0.0) + strength * p) / (n + strength) for c, p in prior.items()}

    singles_full = {name: smoothed(per, popular, single_prior)
                    for name, per in single_counts.items()}
    single_support = {name: sum(per.values()) for name, per in single_counts.items()}

    def backoff(a: str, b: str) -> dict[str, float]:
        wa, wb = single_support.get(a, 0.0), single_support.get(b, 0.0)
        pa, pb = singles_full.get(a, popular), singles_full.get(b, popular)
        return {c: (wa * pa[c] + wb * pb[c]) / (wa + wb) if wa + wb else popular[c]
                for c in popular}

    keys = {k for k in counts if len(k) == 2}
    supported = sorted(n for n, s in single_support.items() if s >= min_support)
    if len(supported) * (len(supported) - 1) // 2 <= _MAX_BACKOFF_PAIRS:
        keys.update(itertools.combinations(supported, 2))
    pairs = {key_of(k): _best(smoothed(counts.get(k, {}), backoff(*k), pair_prior), k, top)
             for k in keys}
    singles = {name: _best(per, (name,), top + 1) for name, per in singles_full.items()
               if single_support[name] >= min_support}
    return AffinityModel(version, built_at, MappingProxyType(pairs), MappingProxyType(singles),
                         _best(popular, (), top + 2), top)


def _best(scores: Mapping[str, float], leave_out: tuple[str, ...], count: int) -> Predictions:
    kept = [(c, s) for c, s in scores.items() if c not in leave_out and s > 0]
    mass = sum(s for _, s in kept) or 1.0   # the chances among the categories left
    kept.sort(key=lambda item: (-item[1], item[0]))
    return tuple((c, round(s / mass, 5)) for c, s in kept[:count])


class Predictor:
    """A profile's predicted interests from the newest model `model()` gives (the worker's
    copy of the published one): what `profile.predicted.*` reads."""

    def __init__(self, model: Callable[[], AffinityModel]) -> None:
        self.model = model

    def __call__(self, profile: Profile) -> Predictions:
        return self.model().predict(strongest(profile.scores, profile.half_life_days))
