"""Redirects between rules: the routes the loop guard follows, and circles found at load.

A rule may redirect from a path to a path where another rule redirects back (`/a -> /b
-> /a`): the browser would go round until it gives up. Validation reports every such
circle that some visitor could meet; the evaluator also refuses, per visitor, a redirect
whose target redirects back (issue 18, bug 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ..conditions import AllOf, AnyOf, Condition, FieldIs, Not, Segment
from ..model import RedirectRoute, Rule
from .context import CompileContext
from .rules import Written

PATH = "request.path"


def redirect_routes(rules: tuple[Rule, ...]) -> tuple[RedirectRoute, ...]:
    """Each redirecting rule's route, in rank order."""
    routes = []
    for rule in rules:
        if rule.redirect is None:
            continue
        target = urlsplit(rule.redirect.location)
        routes.append(RedirectRoute(rank=rule.rank, condition=rule.condition,
                                    target=target.path or "/",
                                    target_host=target.netloc.lower()))
    return tuple(routes)


def _on_path(condition: Condition, path: str) -> bool | None:
    """Whether a condition holds on `path` whoever the visitor is: True, False, or None
    when that depends on the visitor."""
    if isinstance(condition, FieldIs):
        return condition.matcher(path) if condition.field == PATH else None
    if isinstance(condition, AllOf):
        answers = [_on_path(c, path) for c in condition.conditions]
        return False if False in answers else (True if all(answers) else None)
    if isinstance(condition, AnyOf):
        answers = [_on_path(c, path) for c in condition.conditions]
        return True if True in answers else (False if all(a is False for a in answers)
                                             else None)
    if isinstance(condition, Not):
        inner = _on_path(condition.condition, path)
        return None if inner is None else not inner
    if isinstance(condition, Segment):
        return _on_path(condition.condition, path)
    return None


def check_redirect_circles(ctx: CompileContext, rules: tuple[Rule, ...],
                           routes: tuple[RedirectRoute, ...],
                           written: Mapping[str, Written]) -> None:
    """Report each circle of redirects once, at the rule in it that ranks first."""
    steps = {route.rank: _next_steps(route, routes) for route in routes
             if not route.target_host}
    reported: set[frozenset[int]] = set()
    for start in sorted(steps):
        circle = _circle_from(start, steps)
        if circle is None or frozenset(circle) in reported:
            continue
        reported.add(frozenset(circle))
        first = rules[min(circle)]
        at = written[first.name]
        shown = " -> ".join(f"{rules[rank].name} (to {route.target})"
                            for rank in _rotate(circle) for route in routes
                            if route.rank == rank)
        ctx.fail(at.rule_file, f"redirects go round in a circle: {shown} -> {first.name}; a "
                 "visitor would never arrive", (*at.at, "then", "redirect"),
                 f"rule '{first.name}'")


def _next_steps(route: RedirectRoute, routes: tuple[RedirectRoute, ...]) -> list[int]:
    """The rules that may send on a visitor this route sent to its target: on the target,
    the first rule (by rank) that holds takes the redirect, so a rule that surely holds
    there hides every rule ranked below it. The route's own rule holds there too if its
    path allows (the visitor is the same), and a redirect to where one is is never sent."""
    steps = []
    for other in routes:
        verdict = _on_path(other.condition, route.target)
        if other.rank == route.rank:
            if verdict is not False:
                break
            continue
        if verdict is not False and not other.target_host:
            steps.append(other.rank)
        if verdict is True:
            break
    return steps


def _circle_from(start: int, steps: Mapping[int, list[int]]) -> list[int] | None:
    """A circle of ranks through `start`, found depth-first, or None."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    visited: set[int] = set()
    while stack:
        rank, trail = stack.pop()
        for step in steps.get(rank, ()):
            if step == start:
                return trail
            if step not in visited:
                visited.add(step)
                stack.append((step, [*trail, step]))
    return None


def _rotate(circle: list[int]) -> list[int]:
    at = circle.index(min(circle))
    return circle[at:] + circle[:at]
