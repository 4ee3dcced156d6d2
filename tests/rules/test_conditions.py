from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.conditions import Condition

from ..factories import make_visitor


def condition(tmp_path: Path, when: str) -> Condition:
    (tmp_path / "r.yaml").write_text(
        f"slots: {{a: {{}}}}\nrules:\n  - name: r\n    when: {when}\n    then: {{a: x}}\n")
    return load_rules(tmp_path).rules[0].condition


@pytest.mark.parametrize(("when", "described"), [
    ("{geo.country: GB}", 'geo.country is "GB"'),   # as written (compared without case)
    ("{geo.country: gb}", 'geo.country is "gb"'),
    ("{request.header.X-Zip: 10115}", 'request.header.x-zip is "10115"'),   # text, as read
    ("{request.header.X-Zip: [10115, 80331]}",
     'request.header.x-zip is one of "10115", "80331"'),
    ("{device.type: [Mobile, tablet, mobile]}", 'device.type is one of "Mobile", "tablet", '
                                                 '"mobile"'),
    ("{device.type: [mobile, tablet]}", 'device.type is one of "mobile", "tablet"'),
    ("{profile.visits: {gte: 3, lt: 10}}", "profile.visits is at least 3 and is less than 10"),
    ("{time.hour: {between: [9, 17]}}", "time.hour is between 9 and 17"),
    ("{request.path: {matches: '^/a'}}", "request.path matches /^/a/"),
    ("{referral.keywords: {exists: true}}", "referral.keywords is known"),
    ("{not: {device.type: bot}}", 'not (device.type is "bot")'),
    ("{any: [{geo.country: GB}, {geo.country: SE}]}",
     'geo.country is "GB" or geo.country is "SE"'),
])
def test_conditions_describe_themselves(tmp_path: Path, when: str, described: str) -> None:
    assert condition(tmp_path, when).describe() == described


def test_failure_says_what_the_value_was(tmp_path: Path) -> None:
    check = condition(tmp_path, "{geo.country: SE, device.type: mobile}")
    visitor = make_visitor(ip="81.2.69.142")
    assert not check(visitor)
    assert check.failure(visitor) == 'geo.country is "SE" (was "GB")'


def test_unknown_values_never_match(tmp_path: Path) -> None:
    visitor = make_visitor()   # no address: geo unknown
    assert not condition(tmp_path, "{geo.country: {not: GB}, geo.city: {exists: true}}")(visitor)
    assert condition(tmp_path, "{geo.country: {exists: false}}")(visitor)
    assert not condition(tmp_path, "{profile.days_since_last: {gte: 0}}")(visitor)


def test_not_a_value_needs_a_value_but_a_condition_turned_around_does_not(
        tmp_path: Path) -> None:
    unknown = make_visitor()   # no address: geo unknown, no referral keywords
    # A visitor of unknown place is neither in GB nor "not GB" (it matched, before).
    assert not condition(tmp_path, "{geo.country: {not: GB}}")(unknown)
    assert not condition(tmp_path, "{referral.keywords: {not: shoes}}")(unknown)
    assert not condition(tmp_path, "{geo.country: {not: {contains: x}}}")(unknown)
    assert condition(tmp_path, "{geo.country: {not: {exists: true}}}")(unknown)
    # The whole condition turned around: anyone it does not match.
    assert condition(tmp_path, "{not: {geo.country: GB}}")(unknown)
    london, sweden = make_visitor(ip="81.2.69.142"), make_visitor(ip="89.160.20.112")
    assert not condition(tmp_path, "{geo.country: {not: GB}}")(london)
    assert condition(tmp_path, "{geo.country: {not: GB}}")(sweden)


def test_traffic_share_is_stable_per_visitor(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {a: {}}\nrules:\n  - {name: r, traffic: 30, then: {a: x}}\n")
    traffic = load_rules(tmp_path).rules[0].condition
    inside = sum(traffic(make_visitor()) for _ in range(2000))
    assert 450 < inside < 750


def test_regular_expressions_match_text_and_lists_and_keep_nothing() -> None:
    import dataclasses

    import re2

    from edge_personalizer.rules.conditions import Matches

    matcher = Matches("Mobile|iPhone", re2.compile(b"Mobile|iPhone"))
    assert matcher("Mozilla/5.0 (iPhone)") and not matcher("Mozilla/5.0 (X11)")
    assert matcher(["Desktop", "Mobile Safari"]) and not matcher(("a", "b"))
    assert not matcher(None) and not matcher(3)
    # A frozen condition holds only what it was built with: nothing is remembered per value.
    assert [f.name for f in dataclasses.fields(matcher)] == ["source", "pattern"]
    assert not hasattr(matcher, "__dict__") or vars(matcher) == {
        "source": "Mobile|iPhone", "pattern": matcher.pattern}

