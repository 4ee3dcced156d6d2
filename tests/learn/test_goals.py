from __future__ import annotations

import pytest

from edge_personalizer.classify.visitor import Visitor
from edge_personalizer.learn.goals import (
    GoalReader,
    goals_not_counted,
    parse_goal_header,
    parse_value,
)
from edge_personalizer.rules.conditions import Condition
from edge_personalizer.rules.model import Goal

from ..factories import default_classifier, make_request


class PathIs:
    """A condition on the request path (what a compiled `request.path:` gives)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, visitor: Visitor) -> bool:
        return visitor.request.path == self.path

    def describe(self) -> str:
        return f"request.path is {self.path}"


def goals(**extra: Goal) -> dict[str, Goal]:
    thanks: Condition = PathIs("/checkout/thanks")   # type: ignore[assignment]
    found = {"purchase": Goal("purchase", when=thanks, value_query="total"),
             "signup": Goal("signup", statuses=frozenset({200, 201})),
             **extra}
    return found


@pytest.mark.parametrize(("header", "expected"), [
    (b"purchase; value=49.90", ("purchase", 49.9)),
    (b"purchase", ("purchase", None)),
    (b'purchase; value="1,299.00"', None),   # a separator: 1.299 or 1299?
    (b"purchase; value=1299.00", ("purchase", 1299.0)),
    (b"purchase; value=-3", None),
    (b"purchase; value=nan", None),
    (b"purchase; value=1e12", None),
    (b"<script>", None),
    (b"", None),
    ("käse".encode(), None),
])
def test_goal_headers(header: bytes, expected: tuple[str, float | None] | None) -> None:
    assert parse_goal_header(header) == expected


def test_values_are_plain_amounts() -> None:
    assert parse_value("12") == 12.0
    assert parse_value("inf") is None and parse_value("") is None and parse_value(None) is None


def test_a_request_reaches_its_goal_with_the_value_of_its_query() -> None:
    invalid: list[str] = []
    visitor = default_classifier().visitor(
        make_request("/checkout/thanks", query="total=49.90"), now=0.0)
    found, kept = GoalReader(invalid.append).reached(goals(), visitor, 200, [(b"x-a", b"1")])
    assert [(c.goal, c.value) for c in found] == [("purchase", 49.9)]
    assert kept == [(b"x-a", b"1")] and invalid == []


def test_the_origin_s_goal_header_counts_and_never_reaches_the_visitor() -> None:
    invalid: list[str] = []
    visitor = default_classifier().visitor(make_request("/signup"), now=0.0)
    headers = [(b"x-ep-goal", b"signup; value=5"), (b"x-ep-goal", b"unknown-goal"),
               (b"x-ep-goal", b"purchase; value=oops"), (b"content-type", b"text/html")]
    found, kept = GoalReader(invalid.append).reached(goals(), visitor, 500, headers)
    assert [(c.goal, c.value) for c in found] == [("signup", 5.0)]
    assert kept == [(b"content-type", b"text/html")]
    assert invalid == ["header", "header"]


def test_a_status_bound_goal_needs_its_status() -> None:
    visitor = default_classifier().visitor(make_request("/checkout/thanks"), now=0.0)
    only_created = Goal("made", when=goals()["purchase"].when, statuses=frozenset({201}))
    reader = GoalReader()
    assert [c.goal for c in reader.reached({"made": only_created}, visitor, 200, [])[0]] == []
    assert [c.goal for c in reader.reached({"made": only_created}, visitor, 201, [])[0]] \
        == ["made"]


def test_without_a_status_a_refused_or_failed_request_reaches_no_goal() -> None:
    # A POST /signup the origin refused (405) counted as a signup.
    visitor = default_classifier().visitor(make_request("/checkout/thanks"), now=0.0)
    reader = GoalReader()
    for status, reached in ((200, True), (201, True), (302, True), (304, True),
                            (404, False), (405, False), (500, False), (503, False)):
        found = reader.reached(goals(), visitor, status, [])[0]
        assert [c.goal for c in found] == (["purchase"] if reached else []), status
    # a goal told a status counts on it, an error's too
    failed = Goal("failed", when=goals()["purchase"].when, statuses=frozenset({500}))
    assert [c.goal for c in reader.reached({"failed": failed}, visitor, 500, [])[0]] == \
        ["failed"]


def test_requests_that_reach_a_goal_but_fail_are_tallied_until_the_rules_reload() -> None:
    # A goal on a page the site answers 404 counted nothing, and nothing said why.
    thanks = default_classifier().visitor(make_request("/checkout/thanks"), now=0.0)
    home = default_classifier().visitor(make_request("/"), now=0.0)
    served = goals()
    reader = GoalReader()
    for visitor, status in ((thanks, 404), (thanks, 404), (thanks, 500), (home, 404),
                            (thanks, 200), (thanks, 302)):
        reader.reached(served, visitor, status, [])
    # a 302 is no error, home reaches no purchase, and signup (reached by the origin's
    # goal header alone) by no request
    assert reader.uncounted(served) == {"purchase": {"404": 2, "500": 1}}
    assert goals_not_counted([reader.uncounted(served), {"purchase": {"404": 5}},
                              {"signup": {"503": 1}}]) == [
        "goal 'purchase': 8 requests that reach it were answered 404 (7), 500 (1) and not "
        "counted: check its page, or name the statuses it counts (status: [...])",
        "goal 'signup': 1 request that reaches it was answered 503 (1) and not counted: "
        "check its page, or name the statuses it counts (status: [...])"]
    assert reader.uncounted(goals()) == {}   # other rules: nothing seen with them yet
    reader.reached(goals(), thanks, 410, [])
    assert reader.uncounted(served) == {}    # (the tallies follow the rules served)
