"""The rule index: which rules a visitor could match, found without trying them all.

Rules are filed under every combination of values their equality conditions accept,
grouped by which fields those are; deciding looks each group up once with the visitor's
values, so it only tries rules whose every such condition already holds.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from ..classify.visitor import Visitor, field_getter
from .conditions import AllOf, Condition, Equals, FieldIs, OneOf
from .fields import lookup

if TYPE_CHECKING:
    from .model import Goal, Rule

_MAX_KEYS_PER_RULE: Final = 64   # one-of lists multiply keys; past this a field is left out
_SORT_AT_MOST: Final = 64        # candidates sorted at once; more are merged as they are read


@dataclass(frozen=True)
class IndexGroup:
    """Rules that test the same fields for equality, by the values they accept."""

    fields: tuple[str, ...]
    readers: tuple[tuple[str, Callable[[Visitor], Any]], ...]   # each field and its reader
    ranks: Mapping[tuple[object, ...], tuple[int, ...]]    # folded values -> rule ranks


@dataclass(frozen=True)
class RuleIndex:
    groups: tuple[IndexGroup, ...]
    unindexed: tuple[int, ...]          # ranks of rules that are always tried

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> RuleIndex:
        grouped: dict[tuple[str, ...], dict[tuple[object, ...], list[int]]] = {}
        unindexed: list[int] = []
        for rule in rules:
            names, keys = _index_keys(rule)
            if not names:
                unindexed.append(rule.rank)
                continue
            group = grouped.setdefault(names, {})
            for key in keys:
                group.setdefault(key, []).append(rule.rank)
        groups = tuple(
            IndexGroup(names, tuple((name, field_getter(name)) for name in names),
                       MappingProxyType({key: tuple(ranks) for key, ranks in by_key.items()}))
            for names, by_key in grouped.items())
        return cls(groups, tuple(unindexed))

    def candidates(self, visitor: Visitor) -> Iterable[int]:
        """Ranks of the rules this visitor could match, in rank order."""
        lists: list[tuple[int, ...]] = [self.unindexed]
        values: dict[str, object] = {}
        for group in self.groups:
            key = []
            for name, read in group.readers:
                if name not in values:
                    value = read(visitor)
                    values[name] = value.casefold() if isinstance(value, str) else value
                key.append(values[name])
            ranks = group.ranks.get(tuple(key))
            if ranks:
                lists.append(ranks)
        if len(lists) == 1:
            return lists[0]
        if sum(map(len, lists)) <= _SORT_AT_MOST:
            # Few candidates (most sites): sorted at once. heapq.merge is a generator of
            # interpreted code: 3.4% of a request's instructions with the demo rules.
            return sorted(itertools.chain.from_iterable(lists))
        return heapq.merge(*lists)   # many: lazily, the first match usually ends it early


def _index_keys(rule: Rule) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """The fields a rule needs to equal some value, and every combination of values it
    accepts for them (one-of lists expand)."""
    condition = rule.condition
    children = condition.conditions if isinstance(condition, AllOf) else (condition,)
    accepted: dict[str, frozenset[Any]] = {}
    for child in children:
        if not isinstance(child, FieldIs) or child.field in accepted:
            continue
        spec, _ = lookup(child.field)
        if spec is None or spec.type == "list":
            continue
        if isinstance(child.matcher, Equals):
            accepted[child.field] = frozenset({child.matcher.expected})
        elif isinstance(child.matcher, OneOf):
            accepted[child.field] = child.matcher.choices
    while accepted and math.prod(len(v) for v in accepted.values()) > _MAX_KEYS_PER_RULE:
        del accepted[max(accepted, key=lambda name: len(accepted[name]))]
    names = tuple(sorted(accepted))
    values = (sorted(accepted[name], key=repr) for name in names)
    return names, [tuple(combination) for combination in itertools.product(*values)]


@dataclass(frozen=True)
class GoalIndex:
    """Which goals a request could reach by its own data, by its path: every request is
    tested against the goals, and most goals are a page (a thank-you page, a form's
    target), so a site's many goals cost one lookup. Each tuple keeps the order the goals
    were written in; a goal whose condition names no path is in every one."""

    anywhere: tuple[Goal, ...]                     # goals that name no path
    at_path: Mapping[str, tuple[Goal, ...]]        # folded path -> goals to test there

    @classmethod
    def build(cls, goals: Iterable[Goal]) -> GoalIndex:
        tested = [(goal, _paths_needed(goal.when)) for goal in goals if goal.when is not None]
        paths = {path for _, needed in tested if needed is not None for path in needed}
        return cls(tuple(goal for goal, needed in tested if needed is None),
                   MappingProxyType({path: tuple(goal for goal, needed in tested
                                                 if needed is None or path in needed)
                                     for path in paths}))

    def within_reach(self, visitor: Visitor) -> tuple[Goal, ...]:
        if not self.at_path:
            return self.anywhere
        return self.at_path.get(visitor.request.path.casefold(), self.anywhere)


def _paths_needed(condition: Condition) -> frozenset[str] | None:
    """The paths (folded) a condition needs the request to be at; None if it names none."""
    children = condition.conditions if isinstance(condition, AllOf) else (condition,)
    for child in children:
        if isinstance(child, FieldIs) and child.field == "request.path":
            if isinstance(child.matcher, Equals) and isinstance(child.matcher.expected, str):
                return frozenset({child.matcher.expected})
            if isinstance(child.matcher, OneOf):
                return frozenset(str(choice) for choice in child.matcher.choices)
    return None

