from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules

from . import told

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


def test_a_mistyped_variant_key_is_told_the_keys_a_variant_takes_weight_included(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n"
        "  - {name: e, slot: hero, variants: {a: {weight: 50}, b: {wieght: 50, colour: red}}}\n")
    _, errors = check_rules(tmp_path)
    assert len(errors) == 1 and errors[0].line == 3, errors
    assert ("unknown variant key 'wieght'; expected one of action, attribute, class, file, "
            "html, text, value, weight; did you mean 'weight'?") in errors[0].reason


def test_a_variant_of_several_slots_is_told_how_to_give_each_its_content(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}, cta: {}}\nexperiments:\n  - name: two\n    slots: [hero, cta]\n"
        "    variants:\n      a: {weight: 0}\n      b: {weight: 50, html: '<b>x</b>'}\n"
        "  - name: three\n    slots: [hero, cta]\n    variants:\n"
        "      b: {weight: 50, html: '<b>x</b>'}\n"
        "      c: {weight: 50, hero: {html: '<h1>x</h1>'}, cta: {text: Shop}}\n")
    _, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [6, 7, 11]   # each wrong variant
    assert "to stop showing a variant, remove it" in errors[0].reason
    assert "'html' is not a slot of this experiment (hero, cta)" in errors[1].reason
    assert "'html' is not a slot of this experiment (hero, cta); with several slots, each " \
           "gets its own content: {weight: 50, hero: {html: ...}, cta: {html: ...}}" \
           in errors[2].reason


def test_an_experiment_may_not_share_a_rules_name(tmp_path: Path) -> None:
    # Both are counted under their name in the results: one name would mix their counts.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n"
        "  - {name: hero-test, when: {referral.source: facebook}, then: {hero: {html: f}}}\n"
        "experiments:\n"
        "  - {name: hero-test, slot: hero, variants: {a: {}, b: {html: x}}}\n"
        "  - {name: other, slot: hero, variants: {a: {}, b: {html: x}}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert len(errors) == 1 and errors[0].line == 5
    assert "experiment 'hero-test': a rule has the same name" in str(errors[0])
    assert [e.name for e in ruleset.experiments] == ["other"]


def test_a_bandit_setting_written_on_the_experiment_says_where_it_goes(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n"
        "  - {name: e, slot: hero, allocation: bandit, metric: value,\n"
        "     variants: {a: {}, b: {html: x}}}\n")
    _, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [3, 3]
    assert "a bandit learns from conversions: name what it is judged on" in errors[0].reason
    assert "metric is a setting of the bandit: write it under bandit:" in errors[1].reason


@pytest.mark.parametrize(("holdout", "share", "problem"), [
    ("10", 10.0, None), ("10%", 10.0, None), ("'12.5%'", 12.5, None), ("0", 0.0, None),
    ("100", None, "up to (not including) 100"), ("'100%'", None, "up to (not including) 100"),
    ("ten", None, "such as 25 or 25%"), ("true", None, "such as 25 or 25%"),
    (".nan", None, "such as 25 or 25%"),
])
def test_a_holdout_is_written_as_traffic_is_with_or_without_its_percent_sign(
        tmp_path: Path, holdout: str, share: float | None, problem: str | None) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n"
        f"  - {{name: e, slot: hero, holdout: {holdout}, variants: {{a: {{}}, b: {{}}}}}}\n")
    ruleset, errors = check_rules(tmp_path)
    if problem is None:
        assert errors == [] and ruleset.experiments[0].holdout == share
    else:
        assert len(errors) == 1 and problem in errors[0].reason and errors[0].line == 3


def test_every_mistake_of_an_experiment_is_told_at_once(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\ngoals: {buy: {when: {request.path: /thanks}}}\nexperiments:\n"
        "  - name: e\n"
        "    slot: heroo\n"                          # 5: unknown slot
        "    holdout: 120\n"                         # 6
        "    audience: {device.typ: mobile}\n"       # 7
        "    variants: {a: {}, b: {html: x}}\n"      # (not checked against unknown slots)
        "    goals: [by]\n"                          # 9
        "    allocation: bandit\n"
        "    bandit: {burn_in: -1}\n"                # 11
        "    per: [geo.contry]\n"                    # 12
        "    colour: red\n")                         # 13
    ruleset, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [5, 6, 7, 9, 11, 12, 13], errors
    said = [e.reason for e in errors]
    assert "unknown slot 'heroo'" in said[0] and "did you mean 'hero'" in said[0]
    assert "holdout is a percentage from 0 up to (not including) 100" in said[1]
    assert "unknown field 'device.typ'" in said[2]
    assert "unknown goal 'by'" in said[3]   # and no "a bandit learns from conversions"
    assert "burn_in is a whole number" in said[4]
    assert "geo.contry" in said[5]
    assert "experiment 'e': unknown key 'colour'" in said[6]
    assert ruleset.experiments == ()


def test_a_variant_s_mistakes_are_told_beside_the_holdout_s_and_the_audience_s(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n"
        "    holdout: 120\n    audience: {device.typ: mobile}\n"
        "    variants: {a: {}, b: {htm: x}}\n")
    _, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [5, 6, 7], errors
    assert "unknown variant key 'htm'" in errors[2].reason


@pytest.mark.parametrize(("first", "second", "said"), [
    ("control", "Control", "variants 'control' and 'Control' differ only in case"),
    ("1", "'1'", "variant '1' is named twice (1 and '1' are one name)"),
])
def test_variants_of_one_name_are_refused(tmp_path: Path, first: str, second: str,
                                          said: str) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    variants:\n"
        f"      {first}: {{}}\n      {second}: {{html: x}}\n      b: {{html: y}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [7], errors
    assert said in errors[0].reason
    assert ruleset.experiments == ()


@pytest.mark.parametrize("name", ["holdout", "Holdout"])
def test_no_variant_is_named_as_the_visitors_held_out_are(tmp_path: Path, name: str) -> None:
    # X-EP-Variant, the cache tags and the results name held-out visitors "holdout": a
    # variant of that name could not be told from them.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    holdout: 5\n"
        f"    variants:\n      control: {{}}\n      {name}: {{html: x}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [8], errors
    assert f"variant {name!r}: the name is kept for the visitors the experiment holds out" \
        in errors[0].reason
    assert ruleset.experiments == ()


def test_an_experiment_may_be_paused_and_scheduled(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    paused: true\n"
        "    audience: {device.type: mobile}\n"
        "    schedule: {start: 2026-12-01, end: 2026-12-24}\n"
        "    variants: {control: {}, b: {html: x}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    (experiment,) = ruleset.experiments
    assert experiment.paused is True
    assert experiment.audience.describe() == (
        'device.type is "mobile" and scheduled from 2026-12-01 until 2026-12-24')


def test_a_paused_or_schedule_written_wrong_is_told_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    paused: yes please\n"
        "    schedule: {end: next friday}\n    variants: {control: {}, b: {html: x}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [(e.line, e.reason) for e in errors] == [
        (5, "experiment 'e': paused is true or false, not 'yes please'"),
        (6, "experiment 'e': 'next friday' is not a date; write a day as YYYY-MM-DD, e.g. "
            "2026-12-24")]
    assert ruleset.experiments == ()


@pytest.mark.parametrize(("written", "said"), [
    ('"a\\r\\nX-Evil: 1"', "variant 'a\\r\\nX-Evil: 1': its name goes in X-EP-Variant"),
    ('"b,c=d"', "variant 'b,c=d': its name goes in X-EP-Variant"),
    ('"tab\\there"', "variant 'tab\\there': its name goes in X-EP-Variant"),
    ('" padded"', "nor begin or end with a space"),
    ('""', "a variant needs a name"),
])
def test_a_variant_name_that_would_break_x_ep_variant_is_refused(
        tmp_path: Path, written: str, said: str) -> None:
    # "a\r\nX-Evil: 1" compiled, and its visitors were answered 500 with X-EP-Variant on.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    variants:\n"
        f"      control: {{}}\n      {written}: {{html: x}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [e.line for e in errors] == [7], errors
    assert said in errors[0].reason
    assert ruleset.experiments == ()


def test_every_unknown_slot_and_goal_of_a_list_is_told_at_its_line(tmp_path: Path) -> None:
    # Only the first of each list was told (footer; purchace), and with no list of the
    # names there are when none was close.
    assert told(tmp_path,
                "slots: {promo: {}, hero: {}}\ngoals: {purchase: {when: {request.path: /thanks}}}\n"
                "experiments:\n"
                "  - name: e\n"
                "    slots:\n"
                "      - promo\n"
                "      - footer\n"                           # 7
                "      - sidebar\n"                          # 8
                "    goals: [purchace, signup]\n"            # 9
                "    variants: {a: {}, b: {promo: {html: x}}}\n") == [
        (7, "experiment 'e': unknown slot 'footer' (there are hero, promo)"),
        (8, "experiment 'e': unknown slot 'sidebar' (there are hero, promo)"),
        (9, "experiment 'e': unknown goal 'purchace'; declare it under goals:; did you mean "
            "'purchase'?"),
        (9, "experiment 'e': unknown goal 'signup'; declare it under goals: (there is "
            "purchase)")]


def test_a_rule_s_when_on_an_experiment_says_audience_and_the_other_way_round(
        tmp_path: Path) -> None:
    mistakes = told(
        tmp_path,
        "slots: {hero: {}}\nrules:\n  - name: r\n    audience: {device.type: mobile}\n"
        "    then: {hero: x}\nexperiments:\n  - name: e\n    slot: hero\n"
        "    when: {device.type: mobile}\n    variants: {a: {}, b: {html: x}}\n")
    assert [(line, said.split("; ", 2)[-1]) for line, said in mistakes] == [
        (4, "a rule's visitors are chosen by when: (as an experiment's by audience:)"),
        (9, "an experiment's visitors are chosen by audience: (as a rule's by when:)")]
    assert "a rule has name, when, then, priority, schedule, traffic, description;" \
        in mistakes[0][1]


def test_a_goal_in_error_hides_no_unknown_goal_beside_it(tmp_path: Path) -> None:
    mistakes = told(
        tmp_path,
        "slots: {hero: {}}\ngoals: {buy: {when: {request.path: /thanks}, window: 72x}}\n"
        "experiments:\n  - name: e\n    slot: hero\n    goals: [buy, signp]\n"
        "    variants: {a: {}, b: {html: x}}\n")
    assert [(line, said.split(": ", 1)[1][:30]) for line, said in mistakes] == [
        (2, "window '72x': write 30m, 72h o"), (6, "unknown goal 'signp'; declare ")]


def test_every_unknown_field_of_per_is_told(tmp_path: Path) -> None:
    mistakes = told(tmp_path, "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n"
                              "    per: [device.typ, referral.mediu]\n"
                              "    variants: {a: {}, b: {html: x}}\n")
    assert [line for line, _ in mistakes] == [5, 5]
    assert "device.typ" in mistakes[0][1] and "referral.mediu" in mistakes[1][1]


@pytest.mark.parametrize(("written", "cells", "problem"), [
    ("", 100, None), (", max_cells: 5", 5, None), (", max_cells: 2000", 2000, None),
    (", max_cells: 0", None, "max_cells is the number of cells"),
    (", max_cells: 2001", None, "a whole number from 1 to 2,000"),
    (", max_cells: 2.5", None, "max_cells is the number of cells"),
])
def test_a_bandit_keeps_weights_of_their_own_for_its_max_cells_cells(
        tmp_path: Path, written: str, cells: int | None, problem: str | None) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\ngoals: {purchase: {}}\nexperiments:\n"
        "  - {name: e, slot: hero, goals: [purchase], allocation: bandit,\n"
        f"     per: [device.type], bandit: {{burn_in: 5{written}}},\n"
        "     variants: {a: {}, b: {html: x}}}\n")
    ruleset, errors = check_rules(tmp_path)
    if problem is None:
        assert errors == []
        (experiment,) = ruleset.experiments
        assert experiment.bandit is not None and experiment.bandit.max_cells == cells
    else:
        assert len(errors) == 1 and problem in errors[0].reason


def test_a_number_too_large_for_a_float_is_told_at_its_line(tmp_path: Path) -> None:
    # An int of 400 digits as a weight, a holdout, a rule's traffic or update_every ended
    # validate in OverflowError, and a reload in "the loader failed", naming no file.
    huge = "1" + "0" * 400
    assert told(tmp_path, "slots: {hero: {}}\ngoals: {buy: {when: {request.path: /t}}}\n"
                          "rules:\n  - name: r\n    traffic: " + huge + "\n"
                          "    then: {hero: x}\nexperiments:\n  - name: e\n    slot: hero\n"
                          "    holdout: " + huge + "\n    goals: [buy]\n"
                          "    allocation: bandit\n    bandit: {update_every: " + huge + "}\n"
                          "    variants: {a: {weight: " + huge + "}, b: {html: x}}\n") == [
        (5, "rule 'r': traffic is a share of visitors above 0 and up to 100 percent, got "
            "10000000000000000000…"),
        (10, "experiment 'e': holdout is a percentage from 0 up to (not including) 100"),
        (13, "experiment 'e': update_every is at least 1 second and at most 30 days"),
        (14, "experiment 'e': weight is a positive number, from 0.000001 up to "
             "1,000,000,000 (weights are shares of their sum: 50 and 50, or 1 and 3); to "
             "stop showing a variant, remove it: what was counted for it stays in the "
             "results"),
    ]


def test_a_setting_of_many_digits_is_told_briefly(tmp_path: Path) -> None:
    # paused, allocation and metric quoted an int of 400 digits whole
    huge = "1" + "0" * 400
    assert told(tmp_path, "slots: {hero: {}, side: {}}\ngoals: {buy: {}}\nexperiments:\n"
                          "  - name: e\n    slot: hero\n    paused: " + huge + "\n"
                          "    allocation: " + huge + "\n    variants: {a: {}, b: {html: x}}\n"
                          "  - name: f\n    slot: side\n    goals: [buy]\n"
                          "    allocation: bandit\n    bandit: {metric: " + huge + "}\n"
                          "    variants: {a: {}, b: {html: x}}\n") == [
        (6, "experiment 'e': paused is true or false, not 10000000000000000000…"),
        (7, "experiment 'e': allocation 10000000000000000000…: fixed (the weights given) or "
            "bandit (learned per cell)"),
        (13, "experiment 'f': metric 10000000000000000000…: conversion (the rate) or value "
             "(per visitor)"),
    ]


@pytest.mark.parametrize(("written", "burn_in", "line"), [
    ("0", 0, None), ("1000000", 1_000_000, None),
    # a burn_in of 400 digits validated, and the bandit never learned
    ("1000001", None, 5), ("1" + "0" * 400, None, 5), ("-1", None, 5), ("2.5", None, 5),
])
def test_a_bandit_s_burn_in_is_from_0_to_a_million_exposures(
        tmp_path: Path, written: str, burn_in: int | None, line: int | None) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\ngoals: {purchase: {}}\nexperiments:\n"
        "  - {name: e, slot: hero, goals: [purchase], allocation: bandit,\n"
        f"     bandit: {{burn_in: {written}}},\n     variants: {{a: {{}}, b: {{html: x}}}}}}\n")
    ruleset, errors = check_rules(tmp_path)
    if burn_in is not None:
        assert errors == []
        (experiment,) = ruleset.experiments
        assert experiment.bandit is not None and experiment.bandit.burn_in == burn_in
    else:
        assert [(e.line, e.reason) for e in errors] == [(line, (
            "experiment 'e': burn_in is a whole number of exposures per variant, from 0 to "
            "1,000,000 (until every variant of a cell has them, the cell keeps the weights "
            "written)"))]


@pytest.mark.parametrize(("weights", "lines"), [
    # Two weights of 1e308 were taken: their sum is infinite, every share nan, every
    # visitor went to one variant and the results ended in ZeroDivisionError.
    ("{a: {weight: 1.0e308}, b: {weight: 1.0e308, html: x}}", [5, 5]),
    ("{a: {weight: 1000000001}, b: {weight: 1, html: x}}", [5]),
    ("{a: {weight: 5.0e-324}, b: {weight: 1000000000, html: x}}", [5]),
    ("{a: {weight: 0.0000009}, b: {weight: 1, html: x}}", [5]),
    ("{a: {weight: 0.000001}, b: {weight: 1000000000, html: x}}", []),
    ("{a: {weight: 1}, b: {weight: 1000000, html: x}}", []),
])
def test_weights_stay_within_shares_a_sum_can_tell(tmp_path: Path, weights: str,
                                                   lines: list[int]) -> None:
    said = told(tmp_path, "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n"
                          f"    variants: {weights}\n")
    assert [line for line, _ in said] == lines
    assert all("weight is a positive number, from 0.000001 up to 1,000,000,000" in reason
               for _, reason in said)


def test_no_segment_is_named_as_the_visitors_in_none_are_where_they_are_counted(
        tmp_path: Path) -> None:
    # A segment named other, beside an experiment counted per: segment, had its visitors
    # counted in one cell with everyone in no segment. Without one, the name is free (rule
    # files that read segment: other loaded before and still do).
    segments = ("segments:\n  other: {when: {device.type: mobile}}\n"
                "  Other: {when: {device.type: tablet}}\nslots: {hero: {}}\n")
    assert told(tmp_path, segments + "rules:\n  - {name: r, when: {segment: other}, "
                                     "then: {hero: x}}\n") == []
    assert told(tmp_path, segments + "experiments:\n  - name: e\n    slot: hero\n"
                                     "    per: segment\n    variants: {a: {}, b: {html: x}}\n"
                ) == [(8, "experiment 'e': per: segment counts the visitors in none of the "
                          "segments as other, and a segment is named other: name the segment "
                          "otherwise")]

