"""Conditions no value meets: refused where they are written, with why."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules

from .test_conditions import rules_with


@pytest.mark.parametrize(("when", "message"), [
    ("{profile.visits: {gte: 5, lt: 3}}",
     "profile.visits is a whole number 0 or more, and no value is at least 5 and is less "
     "than 3: the condition never holds"),
    ("{profile.visits: {gt: 3, lte: 3}}", "profile.visits is a whole number 0 or more, and no "
                                          "value is more than 3 and"),
    ("{profile.interests.running: {gte: 2}}",
     "profile.interests.running is between 0 and 1, and no value is at least 2: the "
     "condition never holds"),
    ("{time.hour: {gt: 23}}",
     "time.hour is a whole number between 0 and 23, and no value is more than 23"),
    ("{profile.visits: {between: [1, 4], gt: 4}}", "no value is between 1 and 4 and is more"),
    ("{profile.visits: {equals: 3, gt: 5}}", "no value is 3 and is more than 5"),
    # Counts and hours are whole numbers, and counts are never below 0
    ("{profile.visits: {gt: 5, lt: 6}}", "no value is more than 5 and is less than 6"),
    ("{time.hour: {gt: 22.5, lte: 22.9}}", "no value is more than 22.5 and is at most 22.9"),
    ("{profile.visits: 1.5}", "profile.visits is a whole number 0 or more, got 1.5"),
    ("{profile.conversions: [2, 1.5]}", "profile.conversions is a whole number 0 or more, "
                                        "got 1.5"),
    ("{profile.visits: {lt: 0}}", "no value is less than 0: the condition never holds"),
    ("{profile.visits: -1}", "profile.visits is a whole number 0 or more, got -1"),
    # What a condition names it then excludes
    ("{geo.country: {in: [GB], not: gb}}",
     'geo.country: no value is one of "GB" and not (is "gb"): the condition never holds'),
    ("{time.weekday: {equals: weekend, not: [sat, sun]}}",
     'no value is one of "weekend" and not (is one of "sat", "sun")'),
    ("{device.type: {equals: mobile, in: [tablet, desktop]}}",
     'no value is "mobile" and is one of "tablet", "desktop"'),
    ("{language.tags: {in: [de], not: [de, fr]}}",
     'no value is one of "de" and not (is one of "de", "fr")'),
    # Under not:, a comparison no value meets leaves one every value meets
    ("{profile.visits: {not: {gt: 5, lt: 6}}}",
     "no value is more than 5 and is less than 6: not: of it holds for every value"),
    ("{time.hour: {in: [1, 2], gt: 5}}", "no value is one of 1, 2 and is more than 5"),
    # ... and one every value meets leaves none
    ("{time.hour: {not: {between: [0, 23]}}}",
     "time.hour is a whole number between 0 and 23, and every value is between 0 and 23: "
     "not: of it holds for none"),
    ("{profile.visits: {not: {gt: -0.5}}}", "every value is more than -0.5: not: of it"),
    ("{profile.interests.running: {not: {gte: 0, lte: 1}}}", "not: of it holds for none"),
])
def test_comparisons_no_value_meets_are_an_error(tmp_path: Path, when: str,
                                                 message: str) -> None:
    # Each was taken as valid, and the rule never matched anyone.
    _, errors = check_rules(rules_with(tmp_path, when))
    assert len(errors) == 1 and message in errors[0].reason and errors[0].line == 4, errors


@pytest.mark.parametrize("when", [
    "{profile.visits: {gte: 3, lt: 5}}", "{profile.visits: {gte: 3, lte: 3}}",
    "{profile.interests.running: {gte: 0.5}}", "{profile.interests.running: {lte: 1}}",
    "{time.hour: {gte: 23}}", "{profile.visits: {between: [1, 4], gte: 4}}",
    "{profile.visits: {equals: 3, gte: 3}}", "{profile.visits: {gt: 4.5, lt: 5.5}}",
    "{time.hour: {gte: 22.5}}", "{profile.visits: {lt: 0.5}}", "{profile.visits: [0, 2]}",
    "{geo.country: {in: [GB, DE], not: GB}}", "{time.weekday: {in: [weekend], not: sat}}",
    "{language.tags: {equals: de, in: [fr]}}", "{language.tags: {in: [de, fr], not: de}}",
    "{profile.interests.running: {gt: 0.25, lt: 0.3}}", "{geo.latitude: {gt: 5, lt: 6}}",
    "{time.hour: {not: {between: [1, 23]}}}", "{time.hour: {in: [1, 9], gt: 5}}",
    "{profile.visits: {not: {gte: 1}}}",
    "{profile.interests.running: {not: {gt: 0}}}", "{geo.latitude: {not: {gte: -90}}}",
])
def test_comparisons_some_value_meets_are_taken(tmp_path: Path, when: str) -> None:
    assert check_rules(rules_with(tmp_path, when))[1] == []
