from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import load_rules

from ..factories import make_visitor


def test_rules_are_filed_by_the_values_they_need(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {a: {}}\nrules:\n"
        "  - {name: gb, when: {geo.country: GB}, then: {a: x}}\n"
        "  - {name: gb-se-mobile, when: {geo.country: [GB, SE], device.type: mobile}, "
        "then: {a: x}}\n"
        "  - {name: everyone, when: {profile.visits: {gte: 0}}, then: {a: x}}\n")
    ruleset = load_rules(tmp_path)
    index = ruleset.index
    assert index.unindexed == (2,)
    assert {group.fields for group in index.groups} == {
        ("geo.country",), ("device.type", "geo.country")}
    london = make_visitor(ip="81.2.69.142")                  # an iPhone by default
    assert list(index.candidates(london)) == [0, 1, 2]
    assert list(index.candidates(make_visitor(ip="216.160.83.56"))) == [2]


def test_long_one_of_lists_leave_the_index(tmp_path: Path) -> None:
    countries = ", ".join(f"C{i}" for i in range(70))
    (tmp_path / "r.yaml").write_text(
        f"slots: {{a: {{}}}}\nrules:\n  - {{name: many, when: {{geo.region: [{countries}]}}, "
        "then: {a: x}}\n")
    assert load_rules(tmp_path).index.unindexed == (0,)
