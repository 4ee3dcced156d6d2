"""The `experiments` sections -> Experiment values (one experiment per slot)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..conditions import AllOf, Condition
from ..fields import suggest
from ..loader import KeyPath, RuleFile, RuleFiles
from ..model import Content, Experiment
from .actions import content
from .conditions import compile_condition
from .context import NAME, NAME_RULE, CompileContext, Invalid, Reported, sections

EXPERIMENT_KEYS = ("name", "slot", "slots", "audience", "holdout", "variants", "goals",
                   "description")


def compile_experiments(ctx: CompileContext, rule_files: RuleFiles) -> tuple[Experiment, ...]:
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
                experiment = _experiment(ctx, rule_file, raw, at, names)
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
                names: set[str]) -> Experiment:
    if not isinstance(raw, dict):
        raise Invalid("an experiment is a mapping (name, slot, variants)", at)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise Invalid(f"every experiment needs a name ({NAME_RULE})", (*at, "name"))
    if name in names:
        raise Invalid(f"experiment {name!r} is defined twice", (*at, "name"))
    names.add(name)
    for key in raw:
        if key not in EXPERIMENT_KEYS:
            raise Invalid(f"unknown key {key!r}; an experiment has "
                          + ", ".join(EXPERIMENT_KEYS[:-1])
                          + suggest(str(key), EXPERIMENT_KEYS), (*at, str(key)), on_key=True)
    slots = _slots(ctx, raw, at)
    audience: Condition = AllOf(())
    if "audience" in raw:
        audience = compile_condition(ctx, rule_file, raw["audience"], (*at, "audience"),
                                     f"experiment '{name}'")
    holdout = raw.get("holdout", 0)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) \
            or not 0 <= holdout < 100:
        raise Invalid("holdout is a percentage from 0 to 99", (*at, "holdout"))
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or len(variants_raw) < 2:
        raise Invalid("an experiment needs at least two variants (one may be the "
                      "control, with only a weight)", (*at, "variants"))
    weights: list[tuple[str, float]] = []
    variants: dict[str, Mapping[str, Content]] = {}
    for variant, spec in variants_raw.items():
        v_at: KeyPath = (*at, "variants", str(variant))
        weight, contents = _variant(ctx, spec, slots, v_at)
        weights.append((str(variant), weight))
        variants[str(variant)] = contents
    return Experiment(name=name, slots=slots, audience=audience, holdout=float(holdout),
                      weights=tuple(weights), variants=MappingProxyType(variants),
                      source=f"{rule_file.path}:{rule_file.line_of(at)}",
                      goals=_goals(ctx, raw.get("goals"), (*at, "goals")))


def _goals(ctx: CompileContext, raw: Any, at: KeyPath) -> tuple[str, ...]:
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Invalid("goals is a list of goal names, e.g. [purchase]", at)
    for goal in names:
        if goal not in ctx.goals:
            raise Invalid(f"unknown goal {goal!r}; declare it under goals:"
                          + suggest(goal, ctx.goals), at)
    return tuple(dict.fromkeys(names))


def _slots(ctx: CompileContext, raw: dict[Any, Any], at: KeyPath) -> tuple[str, ...]:
    slot_list = raw.get("slots", [raw["slot"]] if "slot" in raw else [])
    if isinstance(slot_list, str):
        slot_list = [slot_list]
    if not isinstance(slot_list, list) or not slot_list:
        raise Invalid("an experiment needs slot: <name> (or slots: [...])", at)
    for slot in slot_list:
        if not isinstance(slot, str) or slot not in ctx.slots:
            raise Invalid(f"unknown slot {slot!r}" + suggest(str(slot), ctx.slots),
                          (*at, "slots" if "slots" in raw else "slot"))
    return tuple(slot_list)


def _variant(ctx: CompileContext, spec: Any, slots: tuple[str, ...],
             at: KeyPath) -> tuple[float, Mapping[str, Content]]:
    if not isinstance(spec, dict):
        raise Invalid("a variant is a mapping with a weight, e.g. {weight: 50, html: ...}", at)
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 \
            or weight == float("inf"):
        raise Invalid("weight is a positive number", (*at, "weight"))
    rest = {str(k): v for k, v in spec.items() if k != "weight"}
    if not rest:
        return float(weight), MappingProxyType({})          # the control
    if len(slots) == 1 and not set(rest) & set(slots):
        return float(weight), MappingProxyType({slots[0]: content(ctx, rest, at)})
    per_slot = {}
    for slot, raw in rest.items():
        if slot not in slots:
            raise Invalid(f"{slot!r} is not a slot of this experiment ({', '.join(slots)})",
                          (*at, slot))
        per_slot[slot] = content(ctx, raw, (*at, slot))
    return float(weight), MappingProxyType(per_slot)
