from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules

EXPERIMENT = """slots: {{hero: {{}}}}
experiments:
  - name: e
    slot: hero
    audience: {audience}
    variants: {{a: {{weight: 1}}, b: {{html: x}}}}
"""


def test_a_bad_audience_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(EXPERIMENT.format(audience="{geo.contry: GB}"))
    ruleset, errors = check_rules(tmp_path)
    assert len(errors) == 1 and errors[0].line == 5
    assert "experiment 'e': unknown field 'geo.contry'" in str(errors[0])
    assert ruleset.experiments == ()


def test_weights_and_slots_are_checked(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n"
        "  - {name: e, slot: hero, variants: {a: {weight: .inf}, b: {html: x}}}\n"
        "  - {name: f, slots: [nope], variants: {a: {}, b: {}}}\n"
        "  - {name: g, slot: hero, variants: {a: {}, b: {}}}\n")
    _, errors = check_rules(tmp_path)
    assert ["weight is a positive number" in errors[0].reason,
            "unknown slot 'nope'" in errors[1].reason] == [True, True]
    assert len(errors) == 2   # g is fine: e never claimed the slot
