"""Visitors like you: which interest a visitor is likely to show next, from visitors with the
same strongest two interests.

Counting (request path): a page view whose categories reach beyond the visitor's strongest
two is counted once against that pair (or single category), as one more count in the
worker's accumulator under the experiment name `AFFINITY` (variant: the pair, goal:
`INTEREST` or `CONVERSION`, cell: the page's categories beyond the pair, joined by `_SEP`).
A visitor with no interests yet counts under the empty key: what new visitors look at first.
The flusher takes them to the store with the other counts.

Model (background): `build_model` turns the store's totals into, per pair, the chance that
its visitors' next view shows each category, smoothed towards the two single categories in
equal parts (a rare, telling interest weighs as much as a common one beside it) and those
towards overall popularity (each level's own counts count only from `min_support` views
on); visitors with no interests get what new visitors show first, smoothed towards
overall popularity. Each key keeps its `top` categories in the order that covers the most
next views together: the first `together` chosen as the set that covers the most (the
likeliest of them first), then each time the one most often shown by the views those
before it miss (a page with several categories makes the likeliest ones overlap).
Prediction (request path): `AffinityModel.predict` is two dict gets.
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
    """Counts the view of `categories` beyond `top` as shown next by visitors with `top`
    (no interests yet: the empty key): one count, whose cell names all of them (so the
    model knows which go together)."""
    shown = sorted({category for category in categories if category not in top})
    if shown:
        counters.convert(AFFINITY, key_of(top), goal, _SEP.join(shown))


def affinity_counts(rows: Mapping[CountKey, Tally], *, conversion_weight: float = 1.0
                    ) -> dict[tuple[str, ...], dict[str, float]]:
    """Key (one or two categories) -> what was shown next (a category, or several joined by
    `_SEP`) -> count, from the store's totals."""
    counts: dict[tuple[str, ...], dict[str, float]] = {}
    for key, tally in rows.items():
        if key.experiment != AFFINITY or key.goal not in (INTEREST, CONVERSION):
            continue
        weight = 1.0 if key.goal == INTEREST else conversion_weight
        top = tuple(key.variant.split(_SEP)) if key.variant else ()
        per = counts.setdefault(top, {})
        per[key.cell] = per.get(key.cell, 0.0) + weight * tally.conversions
    return counts


@dataclass(frozen=True)
class AffinityModel:
    """Predicted next interests, best first, per pair key, per single category, and for
    visitors with no interests (`popular`, also what unknown ones fall back to).
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


Shown = dict[tuple[str, ...], float]   # what was shown next (categories, sorted) -> count


def build_model(counts: Mapping[tuple[str, ...], Mapping[str, float]], *,
                min_support: int = 20, top: int = 5, pair_prior: float = 100.0,
                single_prior: float = 20.0, together: int = 3, even_backoff: bool = True,
                version: int = 0, built_at: float = 0.0) -> AffinityModel:
    """The model from `counts` (`affinity_counts`). A pair's estimate is its own counts
    plus `pair_prior` views' worth of its two single categories' estimates, in equal parts
    (`even_backoff`; else in proportion to each one's views); a single's, its counts plus
    `single_prior` of popularity, as are the first views of visitors with no interests yet
    (the empty key). A key with fewer than `min_support` views uses only what it backs off
    to. Each key's first `together` predictions are the set that covers the most of its
    next views."""
    own: dict[tuple[str, ...], Shown] = {}
    popular: Shown = {}
    first: Shown = {}   # what visitors with no interests yet showed
    single_shown: dict[str, Shown] = {}
    for key, per in counts.items():
        for cell, n in per.items():
            shown = tuple(sorted({c for c in cell.split(_SEP) if c and c not in key}))
            if not shown or n <= 0:
                continue
            if not key:
                first[shown] = first.get(shown, 0.0) + n
                continue
            for held in (own.setdefault(key, {}), popular,
                         *(single_shown.setdefault(name, {}) for name in key)):
                held[shown] = held.get(shown, 0.0) + n
    if not popular and not first:
        return AffinityModel(version, built_at, top=top)
    popular_chances = _Chances.of(popular or first)
    single_support = {name: sum(shown.values()) for name, shown in single_shown.items()}
    singles_full = {name: popular_chances.mixed(shown, single_prior, min_support)
                    for name, shown in single_shown.items()}

    def pair_chances(pair: tuple[str, ...]) -> _Chances:
        a, b = pair
        wa, wb = single_support.get(a, 0.0), single_support.get(b, 0.0)
        if even_backoff:   # a category never counted has no estimate to lend
            wa, wb = float(wa > 0), float(wb > 0)
        backoff = popular_chances if not wa + wb else _Chances.blend(
            (singles_full.get(a, popular_chances), wa / (wa + wb)),
            (singles_full.get(b, popular_chances), wb / (wa + wb)))
        return backoff.mixed(own.get(pair, {}), pair_prior, min_support)

    keys = {k for k in counts if len(k) == 2}
    supported = sorted(n for n, s in single_support.items() if s >= min_support)
    if len(supported) * (len(supported) - 1) // 2 <= _MAX_BACKOFF_PAIRS:
        keys.update(itertools.combinations(supported, 2))
    pairs = {key_of(k): pair_chances(k).best(k, top, together) for k in keys}
    singles = {name: chances.best((name,), top + 1, together)
               for name, chances in singles_full.items()
               if single_support[name] >= min_support}
    newcomers = popular_chances.mixed(first, single_prior, min_support)
    return AffinityModel(version, built_at, MappingProxyType(pairs), MappingProxyType(singles),
                         newcomers.best((), top + 2, together), top)


class _Counted:
    """One key's own counted views, as shares of its total, and each category's share."""

    def __init__(self, shown: Shown) -> None:
        total = sum(shown.values())
        self.shares = [(categories, n / total) for categories, n in shown.items()]
        self.chances: dict[str, float] = {}
        for categories, share in self.shares:
            for category in categories:
                self.chances[category] = self.chances.get(category, 0.0) + share


class _Chances:
    """What visitors of one key show next: a mixture of counted views (each view a set of
    categories shown together), as weights of `_Counted` parts summing to 1."""

    def __init__(self, parts: Mapping[_Counted, float]) -> None:
        self.parts = parts

    @classmethod
    def of(cls, shown: Shown) -> _Chances:
        return cls({_Counted(shown): 1.0})

    @classmethod
    def blend(cls, *mixed: tuple[_Chances, float]) -> _Chances:
        parts: dict[_Counted, float] = {}
        for chances, share in mixed:
            for part, weight in chances.parts.items():
                parts[part] = parts.get(part, 0.0) + weight * share
        return cls(parts)

    def mixed(self, shown: Shown, strength: float, min_support: int) -> _Chances:
        """`shown`'s own views plus `strength` views' worth of these chances (only these
        when `shown` has fewer than `min_support` views)."""
        n = sum(shown.values())
        if n < min_support or n <= 0:
            return self
        return _Chances.blend((_Chances.of(shown), n / (n + strength)),
                              (self, strength / (n + strength)))

    def best(self, leave_out: tuple[str, ...], count: int, together: int) -> Predictions:
        """Up to `count` categories (none of `leave_out`) with their chances of being shown
        next: first the `together` that cover the most views between them, then each time
        the one shown most often by the views those chosen miss; each set chosen is in the
        order that covers the most early (the likeliest first, then the one shown most by
        the views it misses, ...)."""
        chances: dict[str, float] = {}
        for part, weight in self.parts.items():
            for category, share in part.chances.items():
                if category not in leave_out:
                    chances[category] = chances.get(category, 0.0) + weight * share
        ranked = sorted((c for c, p in chances.items() if p > 0),
                        key=lambda c: (-chances[c], c))
        candidates = ranked[:2 * count + 2]   # few deeper ones could cover more than these
        index = {c: i for i, c in enumerate(candidates)}
        views: dict[tuple[int, ...], float] = {}   # the candidates a view shows -> its share
        for part, weight in self.parts.items():
            for categories, share in part.shares:
                shown = tuple(sorted(index[c] for c in categories if c in index))
                if shown:
                    views[shown] = views.get(shown, 0.0) + weight * share
        chosen: list[int] = []
        if 1 < together <= count and together < len(candidates):
            chosen = _greedy(views, _covering(views, len(candidates), together), together)
            views = {v: share for v, share in views.items() if not set(v) & set(chosen)}
        chosen += _greedy(views, [i for i in range(len(candidates)) if i not in chosen],
                          min(count, len(candidates)) - len(chosen))
        return tuple((candidates[i], round(min(chances[candidates[i]], 1.0), 5))
                     for i in chosen)


def _covering(views: Mapping[tuple[int, ...], float], candidates: int, size: int
              ) -> list[int]:
    """The `size` candidates whose views together weigh the most (on a tie, the likelier:
    candidates are numbered likeliest first). What a set covers is added up from the
    shares of views showing each of its subsets (inclusion-exclusion), so each set costs
    a few look-ups whatever the number of views."""
    shown_with: dict[tuple[int, ...], float] = {}   # candidates shown together -> share
    for shown, share in views.items():
        for k in range(1, min(size, len(shown)) + 1):
            for subset in itertools.combinations(shown, k):
                shown_with[subset] = shown_with.get(subset, 0.0) + share
    best: tuple[int, ...] = tuple(range(size))
    most = -1.0
    for chosen in itertools.combinations(range(candidates), size):
        covered = 0.0
        for k in range(1, size + 1):
            sign = 1.0 if k % 2 else -1.0
            for subset in itertools.combinations(chosen, k):
                covered += sign * shown_with.get(subset, 0.0)
        if covered > most + 1e-9:
            best, most = chosen, covered
    return list(best)


def _greedy(views: Mapping[tuple[int, ...], float], among: list[int], count: int
            ) -> list[int]:
    """`count` of `among`, each time the one shown by the most views the ones before it
    miss (on a tie, the likelier)."""
    chosen: list[int] = []
    left = dict(views)
    while len(chosen) < min(count, len(among)):
        gains = dict.fromkeys(among, 0.0)
        for shown, share in left.items():
            for i in shown:
                if i in gains:
                    gains[i] += share
        for i in chosen:
            del gains[i]
        pick = max(gains, key=lambda i: (gains[i], -i))
        chosen.append(pick)
        left = {v: share for v, share in left.items() if pick not in v}
    return chosen


class Predictor:
    """A profile's predicted interests from the newest model `model()` gives (the worker's
    copy of the published one): what `profile.predicted.*` reads."""

    def __init__(self, model: Callable[[], AffinityModel]) -> None:
        self.model = model

    def __call__(self, profile: Profile) -> Predictions:
        return self.model().predict(strongest(profile.scores, profile.half_life_days))
