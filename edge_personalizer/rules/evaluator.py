"""decide(ruleset, visitor) -> Decision, and explain() for the why. Pure: no I/O."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from ..classify.visitor import Visitor, field_getter
from .bucketing import bucket, pick
from .model import (
    NO_DECISION,
    Decision,
    Experiment,
    Rule,
    RuleSet,
    SlotChoice,
)


def _candidates(ruleset: RuleSet, visitor: Visitor) -> Iterable[int]:
    """Ranks of the rules this visitor could match, in rank order."""
    lists: list[tuple[int, ...]] = [ruleset.unindexed]
    values: dict[str, object] = {}
    for fields, buckets in ruleset.index.items():
        key = []
        for field in fields:
            if field not in values:
                value = field_getter(field)(visitor)
                values[field] = value.casefold() if isinstance(value, str) else value
            key.append(values[field])
        ranks = buckets.get(tuple(key))
        if ranks:
            lists.append(ranks)
    if len(lists) == 1:
        return lists[0]
    return heapq.merge(*lists)


def decide(ruleset: RuleSet, visitor: Visitor) -> Decision:
    """Per slot (and per page action) the first matching rule by rank wins; experiments
    fill the slots no rule took."""
    open_targets = set(ruleset.targets)
    winners: list[tuple[int, frozenset[str]]] = []
    rules = ruleset.rules
    for rank in _candidates(ruleset, visitor):
        rule = rules[rank]
        targets = rule.targets & open_targets
        if not targets or not rule.condition(visitor):
            continue
        winners.append((rank, targets))
        open_targets -= targets
        if not open_targets:
            break
    if ruleset.experiments:
        return _decision(ruleset, winners, visitor)
    # Without experiments the winners alone make the decision: the same winners, the
    # same (immutable) Decision, built once.
    key = tuple(rank for rank, _ in winners)
    decision = ruleset.decided.get(key)
    if decision is None:
        if len(ruleset.decided) >= _DECIDED_LIMIT:
            ruleset.decided.clear()
        decision = ruleset.decided[key] = _decision(ruleset, winners, visitor)
    return decision


_DECIDED_LIMIT = 4096


def _decision(ruleset: RuleSet, winners: list[tuple[int, frozenset[str]]],
              visitor: Visitor) -> Decision:
    slots: dict[str, SlotChoice] = {}
    won: list[str] = []
    redirect = redirect_rule = None
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[tuple[str, str], ...] = ()
    for rank, targets in winners:
        rule = ruleset.rules[rank]
        won.append(rule.name)
        for slot in targets & rule.slots.keys():
            slots[slot] = SlotChoice(slot, rule.name, "rule", rule.name, rule.slots[slot])
        if "redirect" in targets:
            redirect, redirect_rule = rule.redirect, rule.name
        if "headers" in targets:
            headers = rule.headers
        if "cookies" in targets:
            cookies = rule.cookies
    for experiment in ruleset.experiments:
        if not any(slot in slots for slot in experiment.slots):
            slots.update(_assign(experiment, visitor))
    if not slots and not won:
        return NO_DECISION
    return Decision(slots=MappingProxyType(slots), redirect=redirect,
                    redirect_rule=redirect_rule, headers=headers, cookies=cookies,
                    rules=tuple(won))


def experiment_bucket(experiment: Experiment, visitor: Visitor) -> float | None:
    """The visitor's stable place in [0, 1), or None when they must not be bucketed:
    bots, and visitors without a stored profile (no consent, no stable id)."""
    if visitor.device.type == "bot":
        return None
    profile = visitor.profile
    if not profile.stored or not profile.visitor_id:
        return None
    return bucket(experiment.name, profile.visitor_id)


def _assign(experiment: Experiment, visitor: Visitor) -> dict[str, SlotChoice]:
    if not experiment.audience(visitor):
        return {}
    point = experiment_bucket(experiment, visitor)
    if point is None:
        return {slot: SlotChoice(slot, "control", "control", experiment.name)
                for slot in experiment.slots}
    holdout = experiment.holdout / 100
    if point < holdout:
        return {slot: SlotChoice(slot, "holdout", "holdout", experiment.name)
                for slot in experiment.slots}
    variant = pick(experiment.weights, (point - holdout) / (1 - holdout))
    contents = experiment.variants[variant]
    return {slot: SlotChoice(slot, variant, "experiment", experiment.name, contents.get(slot))
            for slot in experiment.slots}


Outcome = Literal["won", "matched", "failed"]


@dataclass(frozen=True)
class RuleTrace:
    """One rule's part in a decision, for `explain` and the debug header."""

    name: str
    condition: str
    outcome: Outcome
    detail: str
    source: str


def explain(ruleset: RuleSet, visitor: Visitor) -> dict[str, Any]:
    """Every rule and experiment with what matched or failed, and the decision."""
    decision = decide(ruleset, visitor)
    traces = [_trace(rule, visitor, decision) for rule in ruleset.rules]
    experiments = []
    for experiment in ruleset.experiments:
        point = experiment_bucket(experiment, visitor)
        in_audience = experiment.audience(visitor)
        experiments.append({
            "name": experiment.name, "slots": list(experiment.slots),
            "source": experiment.source,
            "audience": experiment.audience.describe(),
            "in_audience": in_audience,
            "audience_failed": None if in_audience else experiment.audience.failure(visitor),
            "bucket": round(point, 4) if point is not None else None,
            "variant": next((c.variant for c in decision.slots.values()
                             if c.by == experiment.name), None),
        })
    return {
        "rules": [trace.__dict__ for trace in traces],
        "experiments": experiments,
        "decision": {
            "slots": {slot: {"variant": c.variant, "reason": c.reason, "by": c.by}
                      for slot, c in decision.slots.items()},
            "redirect": decision.redirect.location if decision.redirect else None,
            "headers": dict(decision.headers), "cookies": dict(decision.cookies),
        },
    }


def _trace(rule: Rule, visitor: Visitor, decision: Decision) -> RuleTrace:
    described = rule.condition.describe()
    failed = rule.condition.failure(visitor)
    if failed is not None:
        return RuleTrace(rule.name, described, "failed", failed, rule.source)
    if rule.name in decision.rules:
        won = sorted(rule.targets & ({s for s, c in decision.slots.items() if c.by == rule.name}
                                     | ({"redirect"} if decision.redirect_rule == rule.name
                                        else set())))
        detail = "won " + ", ".join(won) if won else "won page actions"
        return RuleTrace(rule.name, described, "won", detail, rule.source)
    return RuleTrace(rule.name, described, "matched",
                     "matched, but higher-ranked rules had taken its slots", rule.source)
