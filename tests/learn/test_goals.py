from __future__ import annotations

from dataclasses import dataclass

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

from ..factories import IPHONE, default_classifier, make_request


@dataclass(frozen=True)
class PathIs:
    """A condition on the request path (what a compiled `request.path:` gives)."""

    path: str

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


def test_requests_that_reach_a_goal_or_meet_a_broken_page_are_tallied_per_rules() -> None:
    # A goal on a page the site answered 404 counted nothing, and nothing said why.
    classify = default_classifier()
    thanks = classify.visitor(make_request("/checkout/thanks"), now=0.0)
    home = classify.visitor(make_request("/"), now=0.0)
    crawler = classify.visitor(make_request("/checkout/thanks", headers={
        "user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}), now=0.0)
    untracked = classify.visitor(make_request("/checkout/thanks", headers={
        "user-agent": IPHONE, "dnt": "1"}), now=0.0)
    served = goals()
    reader = GoalReader()
    for visitor, status in ((thanks, 404), (thanks, 404), (thanks, 500), (home, 404),
                            (thanks, 200), (thanks, 302), (thanks, 403), (thanks, 422),
                            (crawler, 404), (crawler, 200), (untracked, 404),
                            (untracked, 200)):
        reader.reached(served, visitor, status, [])
    # reached twice (200, 302); a refusal (403, 422) is a form's answer, not a broken
    # page; home meets no purchase; a crawler's requests and a Do Not Track visitor's are
    # none the results count
    assert reader.seen(served) == {"purchase": {"404": 2, "500": 1, "reached": 2}}
    assert goals_not_counted([reader.seen(served), {"purchase": {"404": 5}}]) == [
        "goal 'purchase': 8 requests that meet it were answered 404 (7), 500 (1) and not "
        "counted (2 reached it): check its page (moved, or failing?) and its when:"]
    # told only when most of a goal's requests fail, and at least 3 of them
    assert goals_not_counted([{"purchase": {"404": 2}}]) == []
    assert goals_not_counted([{"purchase": {"404": 9, "reached": 120}}]) == []
    # reloaded rules: a goal as it was keeps its tally, a changed one starts again
    moved = goals(purchase=Goal("purchase", when=PathIs("/thanks")))  # type: ignore[arg-type]
    assert reader.seen(goals()) == reader.seen(served) and reader.seen(moved) == {}
    reader.reached(moved, classify.visitor(make_request("/thanks"), now=0.0), 410, [])
    assert reader.seen(moved) == {"purchase": {"410": 1}} and reader.seen(served) == {}


def test_requests_answered_as_a_goal_s_status_leaves_out_are_tallied() -> None:
    # A newsletter form answered 303 (then GET /thanks) under `status: [200]` counted
    # nothing, and nothing said why.
    classify = default_classifier()
    signup = classify.visitor(make_request("/checkout/thanks"), now=0.0)
    when = goals()["purchase"].when

    def tallied(statuses: set[int], answers: tuple[int, ...]) -> dict[str, dict[str, int]]:
        served = {"purchase": Goal("purchase", when=when, statuses=frozenset(statuses))}
        reader = GoalReader()
        for status in answers:
            reader.reached(served, signup, status, [])
        return reader.seen(served)

    # a 304 is a page the browser had already; a 403 a form's own refusal
    only_200 = tallied({200}, (303, 303, 303, 304, 403, 404))
    assert only_200 == {"purchase": {"303": 3, "404": 1}}
    assert goals_not_counted([only_200]) == [
        "goal 'purchase': 4 requests that meet it were answered 303 (3), 404 (1) and not "
        "counted (0 reached it): its status: leaves out 303 (add it if that answer reaches "
        "the goal: a form that redirects once done answers 303), or check its when:"]
    # a goal whose status: names its redirect: the form page's own views (200) are no fault
    assert tallied({303}, (200, 200, 200, 200)) == {}
    # a redirect beside answers that reach it (a trailing slash added) is the page's way
    slash = tallied({200}, (301, 200, 301, 200, 301, 200, 301))
    assert slash == {"purchase": {"301": 4, "reached": 3}}
    assert goals_not_counted([slash]) == []
    # a form answering 303 once done and 200 when a field is wrong, under status: [200]:
    # the few 200s counted do not hide the many 303s
    form = tallied({200}, (200,) * 5 + (303,) * 40)
    assert goals_not_counted([form]) == [
        "goal 'purchase': 40 requests that meet it were answered 303 (40) and not counted "
        "(5 reached it): its status: leaves out 303 (add it if that answer reaches the "
        "goal: a form that redirects once done answers 303), or check its when:"]
