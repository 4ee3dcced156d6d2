"""decide(ruleset, visitor) -> Decision, and explain() for the why. Pure: no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, Literal

from ..classify.visitor import Visitor
from .allocation import ALL_VISITORS, Allocations
from .bucketing import bucket, pick, variant_key
from .conditions import holds_with
from .model import (
    HOLDOUT,
    NO_DECISION,
    Decision,
    Experiment,
    Reason,
    Rule,
    RuleSet,
    SlotChoice,
)

# Where an experiment placed a visitor: why (experiment, holdout, control), the variant,
# and the cell they count in; and by experiment index, the placements of one decision.
Placement = tuple[Reason, str, str]
Placements = tuple[tuple[int, Placement], ...]
DecisionKey = tuple[tuple[int, ...], Placements]


class DecisionMemo:
    """Decisions already built, by rule set, winning rules and experiment placements:
    owned by the app, bounded.

    Without redirects (which depend on where the visitor came from) the winners and where
    each experiment placed the visitor make the decision, so they can share one immutable
    Decision: building it is ~half of deciding (~50k instructions a request with the
    benchmark kit's rules), and what is worked out per decision object further on (its
    segment, its page edits) is then found again.
    """

    def __init__(self, *, max_entries: int = 4096) -> None:
        self._ruleset: RuleSet | None = None
        self._decisions: dict[DecisionKey, Decision] = {}
        self._max_entries = max_entries

    def get(self, ruleset: RuleSet, key: DecisionKey) -> Decision | None:
        if ruleset is not self._ruleset:   # reloaded: what was kept is for the old rules
            self._ruleset = ruleset
            self._decisions.clear()
            return None
        return self._decisions.get(key)

    def put(self, key: DecisionKey, decision: Decision) -> None:
        if len(self._decisions) >= self._max_entries:   # many combinations: start again
            self._decisions.clear()
        self._decisions[key] = decision


def decide(ruleset: RuleSet, visitor: Visitor, memo: DecisionMemo | None = None, *,
           allocations: Allocations | None = None) -> Decision:
    """Per slot (and per page action) the first matching rule by rank wins; experiments
    fill the slots no rule took. `memo` (the app's) skips building a decision made before;
    `allocations`: the published weights of `allocation: bandit` experiments."""
    open_targets = set(ruleset.targets)
    winners: list[tuple[int, frozenset[str]]] = []
    rules = ruleset.rules
    for rank in ruleset.index.candidates(visitor):
        rule = rules[rank]
        targets = rule.targets & open_targets
        if not targets or not rule.condition(visitor):
            continue
        winners.append((rank, targets))
        open_targets -= targets
        if not open_targets:
            break
    placements = _placements(ruleset, winners, visitor, allocations)
    if memo is None or ruleset.redirects:
        return _decision(ruleset, winners, visitor, placements)   # depends on the visitor
    key = (tuple(rank for rank, _ in winners), placements)
    decision = memo.get(ruleset, key)
    if decision is None:
        decision = _decision(ruleset, winners, visitor, placements)
        memo.put(key, decision)
    return decision


def _placements(ruleset: RuleSet, winners: list[tuple[int, frozenset[str]]],
                visitor: Visitor, allocations: Allocations | None) -> Placements:
    """Where each experiment whose slots the winning rules leave open places the visitor
    (rules come first; an earlier experiment takes its slots before a later one)."""
    if not ruleset.experiments:
        return ()
    rules = ruleset.rules
    filled = {slot for rank, targets in winners for slot in targets.intersection(rules[rank].slots)}
    placements: list[tuple[int, Placement]] = []
    for index, experiment in enumerate(ruleset.experiments):
        if any(slot in filled for slot in experiment.slots):
            continue
        placement = _place(experiment, visitor, allocations)
        if placement is not None:
            placements.append((index, placement))
            filled.update(experiment.slots)
    return tuple(placements)


def _decision(ruleset: RuleSet, winners: list[tuple[int, frozenset[str]]],
              visitor: Visitor, placements: Placements) -> Decision:
    slots: dict[str, SlotChoice] = {}
    won: list[str] = []
    redirect = redirect_rule = None
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[tuple[str, str], ...] = ()
    for rank, targets in winners:
        rule = ruleset.rules[rank]
        won.append(rule.name)
        for slot in targets.intersection(rule.slots):
            slots[slot] = SlotChoice(slot=slot, variant=rule.name, reason="rule", by=rule.name,
                                     content=rule.slots[slot])
        if "redirect" in targets and not redirects_back(ruleset, rank, visitor):
            redirect, redirect_rule = rule.redirect, rule.name
        if "headers" in targets:
            headers = rule.headers
        if "cookies" in targets:
            cookies = rule.cookies
    for index, (reason, variant, cell) in placements:
        experiment = ruleset.experiments[index]
        contents = experiment.variants[variant] if reason == "experiment" else {}
        for slot in experiment.slots:
            slots[slot] = SlotChoice(slot=slot, variant=variant, reason=reason,
                                     by=experiment.name, content=contents.get(slot), cell=cell)
    if not slots and not won:
        return NO_DECISION
    return Decision(slots=MappingProxyType(slots), redirect=redirect,
                    redirect_rule=redirect_rule, headers=headers, cookies=cookies,
                    rules=tuple(won))


def redirects_back(ruleset: RuleSet, rank: int, visitor: Visitor) -> bool:
    """Whether following this rule's redirect would lead this visitor, through the rules'
    redirects, back to a path they were sent from (a loop the browser goes round until it
    gives up: issue 18, bug 3)."""
    host = visitor.request.host.lower()
    path = visitor.request.path
    seen = {path}
    route = next((r for r in ruleset.redirects if r.rank == rank), None)
    for _ in range(len(ruleset.redirects)):
        if route is None or (route.target_host and route.target_host != host):
            return False   # no redirect there, or off to another site
        if route.target == path:
            return False   # a redirect to where one is is never sent: the chain ends
        if route.target in seen:
            return True
        path = route.target
        seen.add(path)
        route = next((r for r in ruleset.redirects
                      if holds_with(r.condition, visitor, "request.path", path)), None)
    return False


def served_as_is(visitor: Visitor) -> bool:
    """Search engines and AI crawlers index and learn the page as it is: no rule or
    experiment changes it for them."""
    device = visitor.device
    return device.type == "bot" and device.bot_category in ("search", "ai")


def bucketed_id(visitor: Visitor) -> str | None:
    """The visitor id experiments place the visitor by, or None when they must not be
    bucketed: bots, and visitors without a stored profile (no consent, no stable id)."""
    if visitor.device.type == "bot":
        return None
    profile = visitor.profile
    if not profile.stored or not profile.visitor_id:
        return None
    return profile.visitor_id


def holdout_point(experiment: Experiment, visitor_id: str) -> float:
    """Where the visitor stands for the holdout: held out under the holdout share."""
    return bucket(experiment.name, visitor_id)


def variant_point(experiment: Experiment, visitor_id: str) -> float:
    """Where the weights put the visitor: independent of the holdout point, so a change of
    the holdout moves no one's variant and shares out those it releases by the weights."""
    return bucket(variant_key(experiment.name), visitor_id)


def _place(experiment: Experiment, visitor: Visitor,
           allocations: Allocations | None = None) -> Placement | None:
    """Why and what the visitor is shown in `experiment`, and the cell they count in;
    None outside its audience (and its schedule) or while it is paused. Without a stable
    id (a bot, no stored profile) the control."""
    if experiment.paused or not experiment.audience(visitor):
        return None
    visitor_id = bucketed_id(visitor)
    if visitor_id is None:
        return ("control", "control", ALL_VISITORS)
    cells = experiment.cells
    cell = ALL_VISITORS if cells.single else cells(visitor)   # most experiments: one cell
    kept = visitor.profile.variants.get(experiment.name)
    if kept is not None and kept in experiment.variants:
        return ("experiment", kept, cell)
    # Held out once, held out for good (a lower holdout, even none, holds out fewer new
    # visitors only: the comparison with those held out stays fair); a visitor who was
    # shown a variant since removed is shared out anew, never held out.
    if kept == HOLDOUT or kept is None and (
            holdout_point(experiment, visitor_id) < experiment.holdout / 100):
        return ("holdout", HOLDOUT, cell)
    return ("experiment", _new_variant(experiment, variant_point(experiment, visitor_id),
                                       cell, allocations), cell)


def _new_variant(experiment: Experiment, point: float, cell: str,
                 allocations: Allocations | None) -> str:
    """The variant for a visitor not held out and not yet shown one: a bandit's learned
    weights for their cell once published for the experiment's variants, else the fixed
    weights (a variant just added, here or by another server's rules, is shared out by
    them until the weights published know it: it got no visitor before)."""
    if experiment.allocation == "bandit" and allocations is not None \
            and allocations.version_for(experiment.name, experiment.names) is not None:
        chosen = allocations.choose(experiment.name, cell, point)
        if chosen is not None:
            return chosen
    return pick(experiment.weights, point)


def kept_variant(experiment: Experiment, visitor: Visitor) -> str | None:
    """The variant this visitor was shown before, remembered in their profile, while the
    experiment still has it: sticky, whatever the allocation (fixed or bandit). A change of
    weights or of the holdout shares out new visitors only (one held out stays so: see
    _place); a visitor whose variant was removed is assigned anew (and stays counted in
    the one they were first shown: Profile.with_variant)."""
    kept = visitor.profile.variants.get(experiment.name)
    return kept if kept is not None and kept in experiment.variants else None


Outcome = Literal["won", "matched", "failed"]


@dataclass(frozen=True)
class RuleTrace:
    """One rule's part in a decision, for `explain` and the debug header."""

    name: str
    condition: str
    outcome: Outcome
    detail: str
    source: str


def explain(ruleset: RuleSet, visitor: Visitor, *,
            allocations: Allocations | None = None) -> dict[str, Any]:
    """Every rule and experiment with what matched or failed, and the decision."""
    as_is = served_as_is(visitor)
    decision = NO_DECISION if as_is else decide(ruleset, visitor, allocations=allocations)
    traces = [_trace(rule, visitor, decision, as_is) for rule in ruleset.rules]
    experiments = []
    for experiment in ruleset.experiments:
        visitor_id = bucketed_id(visitor)
        in_audience = experiment.audience(visitor)
        experiments.append({
            "name": experiment.name, "slots": list(experiment.slots),
            "source": experiment.source,
            "audience": experiment.audience.describe(),
            "in_audience": in_audience,
            "audience_failed": None if in_audience else experiment.audience.failure(visitor),
            "paused": experiment.paused,
            "holdout_share": experiment.holdout,   # percent held out: the page as it is
            "held_out": (placed := _place(experiment, visitor, allocations)) is not None
            and placed[0] == "holdout",
            # held out on an earlier visit: so still, whatever the share and bucket say
            "kept_held_out": visitor.profile.variants.get(experiment.name) == HOLDOUT,
            "buckets": None if visitor_id is None else {
                "holdout": round(holdout_point(experiment, visitor_id), 4),
                "variant": round(variant_point(experiment, visitor_id), 4)},
            "variant": next((c.variant for c in decision.slots.values()
                             if c.by == experiment.name), None),
            "taken_by": (taken := _taken_by(experiment, decision)),
            **_allocation_trace(experiment, visitor, allocations),
        })
        if experiment.paused or not in_audience or taken is not None:
            experiments[-1]["why"] = _not_shown(experiment.paused, in_audience, taken)
    return {
        "rules": [asdict(trace) for trace in traces],
        "experiments": experiments,
        "as_is": "a search or AI crawler: served the page as it is" if as_is else None,
        "decision": {
            "slots": {slot: {"variant": c.variant, "reason": c.reason, "by": c.by}
                      for slot, c in decision.slots.items()},
            "redirect": decision.redirect.location if decision.redirect else None,
            "headers": dict(decision.headers), "cookies": dict(decision.cookies),
        },
    }


def _not_shown(paused: bool, in_audience: bool, taken: str | None) -> str:
    """Why an experiment paused, outside the visitor's audience, or whose slot is
    `taken` shows nothing."""
    if paused:
        return "paused: shows no variant, counts no one new"
    if not in_audience or taken is None:
        return "outside its audience or schedule: the page as it is, counted nowhere"
    return (f"its slot is taken by {taken}: the page as that {taken.split()[0]} makes it, "
            "counted nowhere in this experiment")


def _taken_by(experiment: Experiment, decision: Decision) -> str | None:
    """The rule or earlier experiment whose choice holds one of the experiment's slots
    ("rule promo-mobile (slot promo)"), or None."""
    for slot in experiment.slots:
        choice = decision.slots.get(slot)
        if choice is not None and choice.by != experiment.name:
            kind = "rule" if choice.reason == "rule" else "experiment"
            return f"{kind} {choice.by} (slot {slot})"
    return None


def _allocation_trace(experiment: Experiment, visitor: Visitor,
                      allocations: Allocations | None) -> dict[str, Any]:
    """Why the variant; for a bandit also the visitor's cell and the weights' version."""
    if experiment.allocation != "bandit":
        return {"allocation": "fixed", "weights": _shares(experiment.weights),
                "why": "kept: the variant this visitor was shown before"
                if kept_variant(experiment, visitor) is not None
                else "placed by the visitor's id: the same variant on every visit"}
    version = allocations.version_of(experiment.name) if allocations is not None else None
    cell = experiment.cells(visitor)
    learned = (allocations.weights_of(experiment.name, cell)
               if allocations is not None and version is not None else None)
    # the period the visitor's counts go in: the weights version they were assigned under
    exposure = visitor.profile.exposures.get(experiment.name)
    period = exposure.period if exposure is not None else (version or 0)
    if kept_variant(experiment, visitor) is not None:
        why = "kept: the variant this visitor was shown before"
        if exposure is not None:
            why += (", under weights from before periods were kept" if period < 0 else
                    f", under weights version {period}" if period else
                    ", under the starting weights")
    elif version is None:
        why = "the fixed weights: no learned weights published yet"
    elif allocations is not None \
            and allocations.version_for(experiment.name, experiment.names) is None:
        why = (f"the fixed weights: the weights published (version {version}) are for other "
               "variants (" + ", ".join(allocations.names_of(experiment.name) or ()) + ")")
    else:
        why = _bandit_why(version, cell, allocations.reason_of(experiment.name, cell)
                          if allocations is not None else None)
    return {"allocation": "bandit", "cell": cell,
            "cells": experiment.cells.describe(), "weights_version": version,
            "weights": _shares(learned or experiment.weights), "period": period, "why": why}


def _bandit_why(version: int, cell: str, reason: str | None) -> str:
    """Why a new visitor of `cell` gets the weights of weights `version`."""
    if reason == "learned":
        return f"learned weights version {version} for cell {cell!r}"
    if reason == "burn_in":
        return (f"the starting weights (version {version}): cell {cell!r} is in its burn-in, "
                "until every variant has its burn_in of exposures")
    if reason == "shared":
        return (f"the weights version {version} of the cells beyond the experiment's "
                f"max_cells (its cells with the most visitors have their own): cell "
                f"{cell!r} shares them")
    return f"the starting weights (version {version}): cell {cell!r} is not counted yet"


def _shares(weights: tuple[tuple[str, float], ...]) -> dict[str, float]:
    """Each variant's share of new visitors, in percent (the holdout apart)."""
    total = sum(weight for _, weight in weights) or 1.0
    return {name: round(100 * weight / total, 1) for name, weight in weights}


def _trace(rule: Rule, visitor: Visitor, decision: Decision, as_is: bool) -> RuleTrace:
    described = rule.condition.describe()
    failed = rule.condition.failure(visitor)
    if failed is not None:
        return RuleTrace(name=rule.name, condition=described, outcome="failed", detail=failed,
                         source=rule.source)
    if rule.name in decision.rules:
        won = sorted(rule.targets & ({s for s, c in decision.slots.items() if c.by == rule.name}
                                     | ({"redirect"} if decision.redirect_rule == rule.name
                                        else set())))
        detail = "won " + ", ".join(won) if won else "won page actions"
        return RuleTrace(name=rule.name, condition=described, outcome="won", detail=detail,
                         source=rule.source)
    return RuleTrace(name=rule.name, condition=described, outcome="matched",
                     detail="matched, but a search or AI crawler is served the page as it is"
                     if as_is else "matched, but higher-ranked rules had taken its slots",
                     source=rule.source)
