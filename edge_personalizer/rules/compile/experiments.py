"""The `experiments` sections -> Experiment values (one experiment per slot)."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, Final

from ..allocation import NO_SEGMENT, Allocation, BanditSettings, Cells
from ..conditions import AllOf, Condition
from ..durations import seconds_in
from ..fields import as_written, lookup, normalize, suggest
from ..loader import KeyPath, RuleFile, RuleFiles
from ..model import HOLDOUT, Content, Experiment
from .actions import content
from .conditions import compile_condition, segment
from .context import (
    UNPRINTABLE,
    CompileContext,
    Invalid,
    Invalids,
    Parts,
    Reported,
    as_float,
    each,
    name_problem,
    percentage,
    sections,
)
from .rules import compile_schedule

EXPERIMENT_KEYS = ("name", "slot", "slots", "audience", "schedule", "paused", "holdout",
                   "variants", "goals", "allocation", "per", "bandit", "description")
BANDIT_KEYS = ("burn_in", "floor", "update_every", "metric", "max_cells")
UPDATE_EVERY_SPAN = (1.0, 30 * 86400.0)   # seconds: at least 1 s, at most 30 days
# Cells of one bandit experiment with weights of their own (the rest share one row): the
# weights of every bandit experiment are published in one table of at most 1 MiB
MAX_CELLS_SPAN = (1, 2000)
# Exposures every variant of a cell gets before the bandit learns: each cell keeps the
# weights written until then, and one of 400 digits never learned while it validated
MAX_BURN_IN: Final = 1_000_000
# Weights are shares of their sum: two of 1e308 made it infinite (every share nan, every
# visitor one variant, the results a ZeroDivisionError), and one of 5e-324 beside 1e9 a
# share of 0 (the sample ratio check divides by each variant's)
MIN_WEIGHT: Final = 0.000001
MAX_WEIGHT: Final = 1_000_000_000
# What a variant's name may not hold: it is written in X-EP-Variant as slot=variant, one
# slot after another with commas (a line break there would end the header; the server
# then answers 500), and printed as any name is.
_HEADER_UNSAFE = re.compile(f"[,;={UNPRINTABLE}]")


def compile_experiments(ctx: CompileContext, rule_files: RuleFiles, *,
                        rule_names: frozenset[str] = frozenset()) -> tuple[Experiment, ...]:
    """The experiments of every file; `rule_names`: the rules', which none may share (what
    a page showed is counted under the name of the rule or experiment that chose it)."""
    experiments: list[Experiment] = []
    claimed: dict[str, str] = {}
    names: set[str] = set()
    for rule_file, section in sections(rule_files, "experiments"):
        if not isinstance(section, list):
            ctx.fail(rule_file, "experiments is a list (- name: ...)", ("experiments",), None)
            continue
        for position, raw in enumerate(section):
            at: KeyPath = ("experiments", position)
            try:
                experiment = _experiment(ctx, rule_file, raw, at, names, rule_names)
            except Invalid as exc:
                name = raw.get("name") if isinstance(raw, dict) else None
                ctx.reject(rule_file, exc, f"experiment '{name}'" if isinstance(name, str)
                           else None)
                continue
            except Reported:
                continue
            fighting = [s for s in experiment.slots if s in claimed]
            if fighting:
                ctx.fail(rule_file, f"slot {fighting[0]!r} is already tested by experiment "
                         f"{claimed[fighting[0]]!r}: one experiment per slot", (*at, "slot"),
                         f"experiment '{experiment.name}'")
                continue
            claimed.update(dict.fromkeys(experiment.slots, experiment.name))
            experiments.append(experiment)
    return tuple(experiments)


def _experiment(ctx: CompileContext, rule_file: RuleFile, raw: Any, at: KeyPath,
                names: set[str], rule_names: frozenset[str]) -> Experiment:
    if not isinstance(raw, dict):
        raise Invalid("an experiment is a mapping (name, slot, variants)", at)
    name = raw.get("name")
    problem = name_problem("experiment", name)
    if problem is not None or not isinstance(name, str):
        raise Invalid(problem or "", (*at, "name"))
    if name in names:
        raise Invalid(f"experiment {name!r} is defined twice", (*at, "name"))
    if name in rule_names:
        raise Invalid("a rule has the same name: exposures and conversions are counted "
                      "by name, and the two would be counted as one; rename one of them",
                      (*at, "name"))
    names.add(name)
    parts = Parts(ctx, rule_file, f"experiment '{name}'")
    for key in raw:
        if key in BANDIT_KEYS and key not in EXPERIMENT_KEYS:
            parts.fail(Invalid(f"{key} is a setting of the bandit: write it under bandit: "
                               f"(allocation: bandit, then bandit: {{{key}: ...}})",
                               (*at, str(key)), on_key=True))
        elif key not in EXPERIMENT_KEYS:
            parts.fail(Invalid(f"unknown key {key!r}; an experiment has "
                               + ", ".join(EXPERIMENT_KEYS)
                               + ("; an experiment's visitors are chosen by audience: (as "
                                  "a rule's by when:)" if key == "when"
                                  else suggest(str(key), EXPERIMENT_KEYS)),
                               (*at, str(key)), on_key=True))
    no_slots: tuple[str, ...] = ()
    slots, slots_known = parts.attempt(lambda: _slots(ctx, raw, at), no_slots)
    everyone: Condition = AllOf(())
    audience = parts.take(lambda: compile_condition(
        ctx, rule_file, raw["audience"], (*at, "audience"), parts.owner),
        everyone) if "audience" in raw else everyone
    if "schedule" in raw:   # outside it, as outside the audience: the page as it is
        when = parts.take(lambda: compile_schedule(raw["schedule"], (*at, "schedule"),
                                                   "experiment"), None)
        if when is not None:
            audience = when if audience == everyone else AllOf((audience, when))
    paused = parts.take(lambda: _paused(raw.get("paused", False), (*at, "paused")), False)
    holdout = parts.take(lambda: _holdout(raw.get("holdout", 0), (*at, "holdout")), 0.0)
    # A variant's content is checked against the slots, when they are known.
    no_variants: _Variants = ((), MappingProxyType({}))
    weights, variants = parts.take(lambda: _variants(
        ctx, parts, raw.get("variants"), slots, slots_known, (*at, "variants")), no_variants)
    no_goals: tuple[str, ...] = ()
    goals, goals_known = parts.attempt(lambda: _goals(ctx, raw.get("goals"), (*at, "goals")),
                                       no_goals)
    fixed: Allocation = "fixed"
    allocation, allocation_known = parts.attempt(
        lambda: _allocation(raw.get("allocation", "fixed"), (*at, "allocation")), fixed)
    bandit = None
    if allocation == "bandit":
        if not goals and goals_known:
            parts.fail(Invalid("a bandit learns from conversions: name what it is judged on, "
                               "e.g. goals: [purchase]", (*at, "allocation")))
        written = raw.get("variants")
        count = max(len(written) if isinstance(written, dict) else 0, 2)
        bandit = parts.take(lambda: _bandit(raw.get("bandit", {}), count, (*at, "bandit")),
                            None)
    elif "bandit" in raw and allocation_known:
        parts.fail(Invalid("bandit settings need allocation: bandit", (*at, "bandit"),
                           on_key=True))
    cells = parts.take(lambda: _cells(ctx, raw.get("per"), (*at, "per")), Cells())
    parts.done()
    return Experiment(name=name, slots=slots, audience=audience, holdout=holdout,
                      weights=weights, variants=variants,
                      source=f"{rule_file.path}:{rule_file.line_of(at)}", goals=goals,
                      allocation=allocation, bandit=bandit, cells=cells, paused=paused)


def _paused(raw: Any, at: KeyPath) -> bool:
    if not isinstance(raw, bool):
        raise Invalid(f"paused is true or false, not {as_written(raw)}", at)
    return raw


def _holdout(raw: Any, at: KeyPath) -> float:
    holdout = percentage(raw, "holdout", at)
    if not 0 <= holdout < 100:
        raise Invalid("holdout is a percentage from 0 up to (not including) 100", at)
    return float(holdout)


_Variants = tuple[tuple[tuple[str, float], ...], Mapping[str, Mapping[str, Content]]]


def _variants(ctx: CompileContext, parts: Parts, raw: Any, slots: tuple[str, ...],
              slots_known: bool, at: KeyPath) -> _Variants:
    """The variants' weights and what each shows; each wrong variant is recorded in
    `parts` (whose `done()` then stops the experiment)."""
    if not isinstance(raw, dict) or len(raw) < 2:
        raise Invalid("an experiment needs at least two variants (one may be the "
                      "control, with only a weight)", at)
    weights: list[tuple[str, float]] = []
    variants: dict[str, Mapping[str, Content]] = {}
    seen: dict[str, str] = {}
    for variant, spec in raw.items():
        named = str(variant)
        alike = seen.get(named.casefold())
        if not named.strip():
            parts.fail(Invalid("a variant needs a name", (*at, named), on_key=True))
        elif named != named.strip() or _HEADER_UNSAFE.search(named):
            parts.fail(Invalid(f"variant {named!r}: its name goes in X-EP-Variant "
                               "(slot=variant, comma-separated), so it may not hold a comma, "
                               "'=', ';', a control character (a line break, a tab, an "
                               "escape) or an invisible one (zero-width, a direction mark), "
                               "nor begin or end with a space", (*at, named), on_key=True))
        elif named.casefold() == HOLDOUT:
            parts.fail(Invalid(f"variant {named!r}: the name is kept for the visitors the "
                               "experiment holds out (holdout:), whom X-EP-Variant, the cache "
                               "tags and the results name so; name the variant otherwise",
                               (*at, named), on_key=True))
        if alike is None:
            seen[named.casefold()] = named
        elif alike == named:   # YAML's 1 and "1": two keys, one name
            parts.fail(Invalid(f"variant {named!r} is named twice (1 and '1' are one name)",
                               (*at, named), on_key=True))
        else:
            parts.fail(Invalid(f"variants {alike!r} and {named!r} differ only in case: "
                               "results would count them apart, and tell them apart by "
                               "case alone; name them apart", (*at, named), on_key=True))
        made = parts.take(functools.partial(_variant, ctx, spec, slots, slots_known,
                                            (*at, named)), None)
        if made is not None:
            weights.append((named, made[0]))
            variants[named] = made[1]
    return tuple(weights), MappingProxyType(variants)


def _allocation(raw: Any, at: KeyPath) -> Allocation:
    if raw == "fixed":
        return "fixed"
    if raw == "bandit":
        return "bandit"
    raise Invalid(f"allocation {as_written(raw)}: fixed (the weights given) or bandit (learned "
                  "per cell)", at)


def _cells(ctx: CompileContext, raw: Any, at: KeyPath) -> Cells:
    """`per: segment` (the first segment a visitor is in) or `per: [field, ...]`."""
    if raw is None:
        return Cells()
    if raw == "segment":
        if not ctx.segment_sources:
            raise Invalid("per: segment needs a segments: section to take the cells from", at)
        if NO_SEGMENT in ctx.segment_sources:
            raise Invalid(f"per: segment counts the visitors in none of the segments as "
                          f"{NO_SEGMENT}, and a segment is named {NO_SEGMENT}: name the "
                          "segment otherwise", at)
        return Cells(segments=tuple(segment(ctx, name, at) for name in ctx.segment_sources))
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise Invalid("per is segment, or a list of visitor fields such as "
                      "[device.type, referral.medium]", at)
    def known(position: int, name: str) -> str:
        spec, why = lookup(normalize(name))
        if spec is None:
            raise Invalid(why, (*at, position) if isinstance(raw, list) else at)
        return normalize(name)

    return Cells(fields=tuple(dict.fromkeys(each(known, names))))


def _bandit(raw: Any, variants: int, at: KeyPath) -> BanditSettings:
    """The bandit's settings; Invalids naming each of its mistakes."""
    if not isinstance(raw, dict):
        raise Invalid("bandit is a mapping, e.g. {burn_in: 200, floor: 1, update_every: 1h}",
                      at)
    errors = [Invalid(f"unknown key {key!r}; bandit has " + ", ".join(BANDIT_KEYS)
                      + suggest(str(key), BANDIT_KEYS), (*at, str(key)), on_key=True)
              for key in raw if key not in BANDIT_KEYS]
    defaults = BanditSettings()
    burn_in = raw.get("burn_in", defaults.burn_in)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) \
            or not 0 <= burn_in <= MAX_BURN_IN:
        errors.append(Invalid(f"burn_in is a whole number of exposures per variant, from 0 to "
                              f"{MAX_BURN_IN:,} (until every variant of a cell has them, the "
                              "cell keeps the weights written)", (*at, "burn_in")))
    floor = raw.get("floor", defaults.floor)
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) \
            or not 0 <= floor * variants <= 100:
        errors.append(Invalid(f"floor is the percent of new visitors each variant keeps: 0 "
                              f"to {100 / variants:g} for {variants} variants",
                              (*at, "floor")))
    metric = raw.get("metric", defaults.metric)
    if metric not in ("conversion", "value"):
        errors.append(Invalid(f"metric {as_written(metric)}: conversion (the rate) or value (per "
                              "visitor)", (*at, "metric")))
    max_cells = raw.get("max_cells", defaults.max_cells)
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) \
            or not MAX_CELLS_SPAN[0] <= max_cells <= MAX_CELLS_SPAN[1]:
        errors.append(Invalid(f"max_cells is the number of cells (those with the most "
                              f"visitors) with weights of their own: a whole number from "
                              f"{MAX_CELLS_SPAN[0]} to {MAX_CELLS_SPAN[1]:,}; the other "
                              "cells share one row", (*at, "max_cells")))
    update_every = defaults.update_every
    try:
        update_every = _duration(raw.get("update_every", "1h"), (*at, "update_every"))
    except Invalid as exc:
        errors.append(exc)
    if errors:
        raise Invalids(errors)
    return BanditSettings(burn_in=burn_in, floor=float(floor), metric=metric,
                          update_every=update_every, max_cells=max_cells,
                          max_cells_written="max_cells" in raw)


def _duration(raw: Any, at: KeyPath) -> float:
    """`1h`, `30m`, `1d`, `10s` or a number of seconds: at least 1 s, at most 30 days."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        seconds = as_float(raw)
    else:
        written = seconds_in(str(raw))
        if written is None:
            raise Invalid(f"update_every {as_written(raw)}: write 10s, 30m, 1h or 1d", at)
        seconds = written
    if not UPDATE_EVERY_SPAN[0] <= seconds <= UPDATE_EVERY_SPAN[1]:
        raise Invalid("update_every is at least 1 second and at most 30 days", at)
    return seconds


def _goals(ctx: CompileContext, raw: Any, at: KeyPath) -> tuple[str, ...]:
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Invalid("goals is a list of goal names, e.g. [purchase]", at)
    _all_known("goal", names, ctx.goals, ctx.goals_in_error, "; declare it under goals:",
               at if isinstance(raw, str) else None, at)
    return tuple(dict.fromkeys(names))


def _all_known(kind: str, names: list[Any], known: Collection[str], in_error: Collection[str],
               fix: str, whole: KeyPath | None, at: KeyPath) -> None:
    """Every name of `names` neither `known` nor `in_error` (whose own error says what to
    fix: Reported when that is all), each told at its place in the list (or at `whole`,
    the key, for one written alone), with the names there are when none is close."""
    unknown = [Invalid(f"unknown {kind} {name!r}{fix}"
                       + (suggest(str(name), known)
                          or f" (there {'is' if len(known) == 1 else 'are'} "
                             f"{', '.join(sorted(known)[:12]) or 'none'})"),
                       whole if whole is not None else (*at, i))
               for i, name in enumerate(names)
               if not isinstance(name, str) or name not in known and name not in in_error]
    if unknown:
        raise unknown[0] if len(unknown) == 1 else Invalids(unknown)
    if any(name in in_error for name in names):
        raise Reported


def _slots(ctx: CompileContext, raw: dict[Any, Any], at: KeyPath) -> tuple[str, ...]:
    slot_list = raw.get("slots", [raw["slot"]] if "slot" in raw else [])
    if isinstance(slot_list, str):
        slot_list = [slot_list]
    if not isinstance(slot_list, list) or not slot_list:
        raise Invalid("an experiment needs slot: <name> (or slots: [...])", at)
    written = "slots" if "slots" in raw else "slot"
    _all_known("slot", slot_list, ctx.slots, ctx.slots_in_error, "",
               (*at, written) if isinstance(raw[written], str) else None, (*at, written))
    return tuple(slot_list)


_WEIGHT = frozenset({"weight"})


def _variant(ctx: CompileContext, spec: Any, slots: tuple[str, ...], slots_known: bool,
             at: KeyPath) -> tuple[float, Mapping[str, Content]]:
    if not isinstance(spec, dict):
        raise Invalid("a variant is a mapping with a weight, e.g. {weight: 50, html: ...}", at)
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
            or not MIN_WEIGHT <= as_float(weight) <= MAX_WEIGHT:
        raise Invalid(f"weight is a positive number, from {MIN_WEIGHT:f} up to {MAX_WEIGHT:,} "
                      "(weights are shares of their sum: 50 and 50, or 1 and 3); to stop "
                      "showing a variant, remove it: what was counted for it stays in the "
                      "results", (*at, "weight"))
    rest = {str(k): v for k, v in spec.items() if k != "weight"}
    if not rest:
        return float(weight), MappingProxyType({})          # the control
    if not slots_known:
        raise Reported   # which slots it may fill is not known: the slots' error says why
    if len(slots) == 1 and not set(rest) & set(slots):
        return float(weight), MappingProxyType({slots[0]: content(ctx, rest, at,
                                                                 beside=_WEIGHT)})
    per_slot = {}
    for slot, raw in rest.items():
        if slot not in slots:
            each = "" if len(slots) == 1 else (
                "; with several slots, each gets its own content: {weight: 50, "
                + ", ".join(f"{s}: {{html: ...}}" for s in slots) + "}")
            raise Invalid(f"{slot!r} is not a slot of this experiment ({', '.join(slots)})"
                          + each, (*at, slot))
        per_slot[slot] = content(ctx, raw, (*at, slot))
    return float(weight), MappingProxyType(per_slot)
