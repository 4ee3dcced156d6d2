"""What the dashboard's pages show: a snapshot of the store's totals and the rule set,
worked into per-experiment, per-segment and prediction views (plain data, no HTML)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
from markupsafe import Markup

from ..errors import StoreError, TableUnreadable
from ..learn.affinity import TABLE_NAME as MODEL_TABLE
from ..learn.affinity import AffinityModel, affinity_counts, key_of
from ..learn.bandit import TABLE_NAME as WEIGHTS_TABLE
from ..learn.bandit import WeightsTable
from ..learn.catalog import GoalCatalog, read_catalog
from ..learn.counters import ALL_VISITORS, EXPOSURE, INTERNAL_PREFIX, CountKey, Tally
from ..learn.judging import from_day, judged_on
from ..learn.results import plan_of, results
from ..learn.store import Store, Table, decoded, open_store, read_table
from ..rules.model import HOLDOUT, Experiment, RuleSet
from ..rules.notices import Notice
from .charts import line_chart, uplift_bar
from .learning import add_bandit_weights
from .verdicts import leader_of, segment_leaders, why_no_leader


@dataclass(frozen=True)
class Snapshot:
    """Everything one rendering shows, read at one moment."""

    ruleset: RuleSet
    totals: Mapping[CountKey, Tally]
    results: dict[str, Any]      # exactly what GET /__ep/results answers
    taken_at: float
    store: str                   # the store's location (no password)
    last_error: str | None = None
    predictions: Table | None = None   # the published affinity model
    bandits: Table | None = None       # the published bandit weights
    notices: tuple[Notice | str, ...] = ()   # rules/notices.py's, and what pages told

    def weights(self) -> WeightsTable | None:
        """The bandit weights as published (None: none, or unreadable)."""
        if self.bandits is None:
            return None
        try:
            return decoded(self.bandits, WeightsTable.decode)
        except TableUnreadable:
            return None


def make_snapshot(ruleset: RuleSet, totals: Mapping[CountKey, Tally], *, store: str,
                  taken_at: float, last_error: str | None = None,
                  predictions: Table | None = None, bandits: Table | None = None,
                  recorded: GoalCatalog | None = None,
                  notices: tuple[Notice | str, ...] = (),
                  unreadable: Mapping[str, list[str]] | None = None) -> Snapshot:
    """Judge the totals (scipy: call it off the event loop)."""
    judged = results(ruleset, totals, recorded, now=datetime.fromtimestamp(taken_at, UTC),
                     unreadable=unreadable)
    snapshot = Snapshot(ruleset, totals, judged, taken_at, store,
                        last_error, predictions, bandits, notices)
    add_bandit_weights(snapshot.results, ruleset, snapshot.weights() or WeightsTable())
    return snapshot


async def read_snapshot(store: Store, ruleset: RuleSet, *, last_error: str | None = None,
                        notices: tuple[Notice | str, ...] = (),
                        clock: Callable[[], float] = time.time) -> Snapshot:
    """The store's totals and published tables, judged; raises StoreError."""
    totals = await store.totals()
    predictions = await _published(store, MODEL_TABLE)
    bandits = await _published(store, WEIGHTS_TABLE)
    recorded = await read_catalog(store)
    unreadable = store.unreadable()
    return await anyio.to_thread.run_sync(
        lambda: make_snapshot(ruleset, totals, store=store.location, taken_at=clock(),
                              last_error=last_error, predictions=predictions,
                              bandits=bandits, recorded=recorded, notices=notices,
                              unreadable=unreadable))


async def _published(store: Store, name: str) -> Table | None:
    """Table `name` as published; None when none is, or the store's copy does not read
    (the trainer publishes over it); raises StoreError when the store does not answer."""
    try:
        return await read_table(store, name)
    except TableUnreadable:
        return None


async def snapshot_of(store_url: str, ruleset: RuleSet) -> Snapshot:
    """A snapshot of the store at `store_url` (for `edge-personalizer report`); raises
    StoreError when it does not answer, or names an SQLite file that does not exist."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and not Path(unquote(parts.path)).exists():
        raise StoreError(f"no store at {unquote(parts.path)}: nothing has been counted there "
                         "(pass --store URL or --data-dir DIR as the server has them)")
    store = open_store(store_url)
    try:
        return await read_snapshot(store, ruleset)
    finally:
        await store.close()


@dataclass(frozen=True)
class ExperimentSummary:
    """One line of the experiments list."""

    name: str
    status: str                 # running, paused, ended, scheduled (in the rules), stopped
                                # (counted, since removed from the rules)
    exposed: int
    goal: str | None            # the goal it is judged on first
    leader: str | None          # None: too few conversions to tell
    chance: float | None        # the leader's chance to beat control (control: to beat the
    leader_is_control: bool     # best challenger)
    srm_p: float | None
    srm: bool
    slots: tuple[str, ...] = ()
    error: str | None = None    # its results could not be worked out
    warnings: int = 0           # how many warnings its results carry
    no_leader: str = ""         # why no variant is ahead, when none is
    bandit: bool = False        # weights are published for it: a bandit shares it out


def _notices_of(snapshot: Snapshot, name: str) -> list[str]:
    """What the rules' notices say of one experiment (never shown, its schedule ended)."""
    return [n.message for n in snapshot.notices
            if isinstance(n, Notice) and n.kind == "experiment" and n.name == name]


def _experiment_named(ruleset: RuleSet, name: str) -> Experiment | None:
    return next((e for e in ruleset.experiments if e.name == name), None)


def summaries(snapshot: Snapshot) -> list[ExperimentSummary]:
    """One line per experiment of the results: the rules' (with their status, and whether
    a bandit shares them out), then those counted and since removed (stopped)."""
    weights = snapshot.weights()
    bandits = set(weights.experiments) if weights is not None else set()
    out = []
    for result in snapshot.results["experiments"]:
        name, goals = result["name"], result["goals"]
        experiment = _experiment_named(snapshot.ruleset, name)
        first = next(iter(goals), None)
        leader, chance = leader_of(goals[first]) if first else (None, None)
        out.append(ExperimentSummary(
            name, result["status"], result["exposed"], first, leader, chance,
            leader == result["control"], goals[first]["srm_p"] if first else None,
            bool(first and goals[first]["srm"]),
            experiment.slots if experiment is not None else (), result.get("error"),
            len(result["warnings"]) + len(_notices_of(snapshot, name)),
            why_no_leader(goals[first] if first else None) if leader is None else "",
            name in bandits))
    return out


def cumulative_rates(totals: Mapping[CountKey, Tally], experiment: str, goal: str,
                     variants: Iterable[str]) -> tuple[list[str], dict[str, list[int]],
                                                        dict[str, list[int]]]:
    """The days an experiment was counted on, and per variant its exposures and
    conversions on `goal` up to and including each day."""
    names = list(variants)
    days = sorted({k.day for k in totals if k.experiment == experiment})
    daily = {name: {day: [0, 0] for day in days} for name in names}
    for key, tally in totals.items():
        if key.experiment != experiment or key.variant not in daily:
            continue
        if key.goal == EXPOSURE:
            daily[key.variant][key.day][0] += tally.exposures
        elif key.goal == goal:
            daily[key.variant][key.day][1] += tally.conversions
    exposed: dict[str, list[int]] = {}
    converted: dict[str, list[int]] = {}
    for name in names:
        seen = won = 0
        exposed[name], converted[name] = [], []
        for day in days:
            seen += daily[name][day][0]
            won += daily[name][day][1]
            exposed[name].append(seen)
            converted[name].append(won)
    return days, exposed, converted


def _scale(rows: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
    """The uplifts a table's bars are drawn on; an interval with no upper end reaches
    past its low end and its uplift, and runs off the scale's right edge."""
    compared = [r for r in rows if r["uplift_low"] is not None]
    highs = [r["uplift_low"] + 0.5 if r["uplift_high"] is None else r["uplift_high"]
             for r in compared] + [r["uplift"] for r in compared if r["uplift"] is not None]
    return (min((r["uplift_low"] for r in compared), default=0.0), max(highs, default=0.0))


def _variant_rows(goal: Mapping[str, Any], shown_as: Mapping[str, str] | None = None
                  ) -> list[dict[str, Any]]:
    """A goal's rows on the page; `shown_as` renames the arms a row says are short of
    conversions."""
    rows = [{"name": name, "control": name == goal["control"], **values}
            for name, values in goal["variants"].items()]
    scale = _scale(rows)
    for row in rows:
        few = row.get("too_few_conversions") or ()
        row["few"] = ", ".join((shown_as or {}).get(name, name) for name in few)
        row["bar"] = (Markup(uplift_bar(row["uplift"], row["uplift_low"], row["uplift_high"],
                                        scale=scale, label=row["name"], judged=not few))
                      if row["uplift_low"] is not None else None)
        row["significant"] = row["uplift_low"] is not None and (
            row["uplift_low"] > 0 or row["uplift_high"] is not None and row["uplift_high"] < 0)
    return rows


def _holdout_rows(goal: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of the experiment against its holdout: those held out (the baseline),
    then every variant's visitors together."""
    if (holdout := goal.get("holdout")) is None:
        return None
    return _variant_rows({"control": "held out", "variants": {
        "held out": holdout["held_out"], "all variants": holdout["experiment"]}},
        shown_as={"held_out": "held out", "experiment": "all variants"})


def _cell_rows(judged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A cell's rows: its variants, then those held out and all together (if any were)."""
    return _variant_rows(judged) + (_holdout_rows(judged) or [])


def experiment_view(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    """One experiment's page: per goal, the variants' table and the cumulative chart; per
    segment cell, the variants again. A stopped experiment (counted, since removed from
    the rules) has its page too, read from the store's counts. None when the results
    have no such experiment."""
    found = [r for r in snapshot.results["experiments"] if r["name"] == name]
    if not found:
        return None
    result = found[0]
    experiment = _experiment_named(snapshot.ruleset, name)
    weights = dict(experiment.weights) if experiment is not None else {}
    cells = sorted({k.cell for k in snapshot.totals if k.experiment == name} - {ALL_VISITORS})
    goals = []
    for goal_name, goal in result["goals"].items():
        variants = list(goal["variants"])
        counted = from_day(snapshot.totals, goal.get("since"))   # (a goal that joined late)
        days, exposed, converted = cumulative_rates(counted, name, goal_name, variants)
        series = {v: [c / e if e else None for c, e in zip(converted[v], exposed[v],
                                                            strict=True)]
                  for v in variants}
        chart = Markup(line_chart(
            days, series, title=f"Cumulative conversion rate on {goal_name} per variant, "
                                "by day (UTC)")) \
            if any(goal["variants"][v]["converted"] for v in goal["variants"]) else None
        if "segments" in goal:   # judged per segment by the results, in the rules' order
            segments = [{"cell": cell, "rows": _cell_rows(judged)}
                        for cell, judged in goal["segments"].items()]
        elif experiment is not None:   # counted per cell under an earlier version of the rules
            rows = {k: t for k, t in counted.items() if k.experiment == name}
            plan = plan_of(experiment, rows)
            segments = [{"cell": cell, "rows": _cell_rows(judged_on(
                plan, goal_name, {k: t for k, t in rows.items() if k.cell == cell})[0])}
                for cell in cells]
        else:
            segments = []
        goals.append({
            "name": goal_name, "control": goal["control"], "srm": goal["srm"],
            "weighted_by": goal.get("weighted_by"),
            "srm_p": goal["srm_p"], "rows": _variant_rows(goal),
            "has_value": any(v["value_sum"] for v in goal["variants"].values()),
            "chart": chart, "days": days, "series": series, "exposed": exposed,
            "converted": converted, "segments": segments, "holdout": _holdout_rows(goal)})
    first = next(iter(result["goals"].values()), None)
    leader, chance = leader_of(first) if first is not None else (None, None)
    leaders = segment_leaders(first) if first is not None else {}
    return {"name": name, "result": result, "experiment": experiment, "goals": goals,
            "weights": weights, "cells": cells, "leader": leader, "chance": chance,
            "segment_leaders": leaders if len(set(leaders.values())) > 1 else {},
            "srm": any(g["srm"] for g in goals), "stopped": result["status"] == "stopped",
            "error": result.get("error"),
            "warnings": [*_notices_of(snapshot, name), *result["warnings"]],
            "bandit": allocation_view(snapshot, name, list(weights)) if weights else None}


def allocation_view(snapshot: Snapshot, name: str,
                    variants: list[str]) -> dict[str, Any] | None:
    """A bandit experiment's allocation: each variant's share of the day's exposures, day
    by day, with the last reweight marked, and the weights now published per cell. None
    when no weights are published for it."""
    table = snapshot.weights()
    held = table.experiments.get(name) if table is not None else None
    if held is None:
        return None
    days, exposed, _ = cumulative_rates(snapshot.totals, name, EXPOSURE, variants)
    shares: dict[str, list[float | None]] = {v: [] for v in variants}
    for i in range(len(days)):
        daily = {v: exposed[v][i] - (exposed[v][i - 1] if i else 0) for v in variants}
        total = sum(daily.values())
        for v in variants:
            shares[v].append(daily[v] / total if total else None)
    reweighted = time.strftime("%Y-%m-%d", time.gmtime(held.updated_at))
    marks = [(days.index(reweighted), f"reweighted (v{held.version})")] \
        if reweighted in days else []
    chart = Markup(line_chart(days, shares, title=f"Share of each day's visitors per variant "
                                                 f"of {name} (UTC days)", y_max=1.0,
                              marks=marks)) if days else None
    cells = [{"cell": cell, "reason": c.reason, "exposures": c.exposures,
              "weights": dict(c.weights)} for cell, c in sorted(held.cells.items())]
    if held.others is not None:   # the cells beyond its max_cells, sharing one row
        cells.append({"cell": f"other cells ({held.shared:,})", "reason": held.others.reason,
                      "exposures": held.others.exposures,
                      "weights": dict(held.others.weights)})
    return {"chart": chart, "days": days, "shares": shares, "version": held.version,
            "updated_at": held.updated_at, "holdout": held.holdout,
            "starting": dict(held.starting), "cells": cells, "variants": variants}


def predictions_view(snapshot: Snapshot, *, top: int = 25) -> dict[str, Any]:
    """The published "visitors like you" model: its pairs with the most support (page
    views counted for visitors with that pair), what it predicts for each, and what it
    predicts for visitors with no interests yet."""
    table = snapshot.predictions
    if table is None:
        return {"state": "none"}
    try:
        model = decoded(table, AffinityModel.decode)
    except TableUnreadable as exc:
        return {"state": "unreadable", "table": table, "error": str(exc)}
    counts = affinity_counts(snapshot.totals)
    pairs = sorted(((k, sum(v.values())) for k, v in counts.items() if len(k) == 2),
                   key=lambda item: (-item[1], item[0]))
    rows = [{"pair": pair, "support": support, "next": model.pairs.get(key_of(pair), ())}
            for pair, support in pairs[:top]]
    return {"state": "model", "table": table, "model": model, "rows": rows,
            "pairs": len(model.pairs), "counted_pairs": len(pairs)}


def segments_view(snapshot: Snapshot) -> dict[str, Any]:
    """What each rule reached (from the results; rules since removed from the rules last)
    and each segment cell (from the totals)."""
    counted = {r["name"]: r for r in snapshot.results["rules"]}
    goals = sorted({g for r in counted.values() for v in r["variants"].values()
                    for g in v["goals"]})
    # goals that joined the rules late: judged on the visitors reached from their day on
    since = {g: judged["since"] for r in counted.values() for v in r["variants"].values()
             for g, judged in v["goals"].items() if "since" in judged}
    rules = [{"name": rule.name, "source": rule.source, "removed": False,
              "variants": counted[rule.name]["variants"] if rule.name in counted else {}}
             for rule in snapshot.ruleset.rules]
    rules += [{"name": r["name"], "source": None, "removed": True, "variants": r["variants"]}
              for r in snapshot.results["rules"] if r["removed"]]
    cells: dict[str, dict[str, int]] = {}
    for key, tally in snapshot.totals.items():
        if key.experiment.startswith(INTERNAL_PREFIX) or (
                key.variant == HOLDOUT and key.experiment != HOLDOUT):
            continue   # (those an experiment held out were shown nothing; a rule named
                       # holdout counts under its name)
        row = cells.setdefault(key.cell, {})
        name = "exposed" if key.goal == EXPOSURE else key.goal
        row[name] = row.get(name, 0) + (tally.exposures if key.goal == EXPOSURE
                                        else tally.conversions)
    cell_goals = sorted({g for row in cells.values() for g in row} - {"exposed"})
    total = {name: sum(row.get(name, 0) for row in cells.values())
             for name in ("exposed", *cell_goals)}
    return {"rules": rules, "goals": goals, "since": since, "cells": sorted(cells.items()),
            "cell_goals": cell_goals, "total": total}

