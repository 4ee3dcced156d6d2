from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_personalizer.rules.book import check_rules
from edge_personalizer.rules.compile import EXPERIMENT_KEYS, RULE_KEYS
from edge_personalizer.rules.schema import build_schema

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted([*ROOT.glob("rules/*.yaml"), *ROOT.glob("tests/data/rules/*.yaml")])


def test_published_schema_is_up_to_date() -> None:
    published = json.loads((ROOT / "docs" / "rules.schema.json").read_text())
    assert published == build_schema(), "run: edge-personalizer schema > docs/rules.schema.json"


def test_schema_knows_every_key_the_compiler_knows() -> None:
    schema = build_schema()
    rule = schema["properties"]["rules"]["items"]["properties"]
    experiment = schema["properties"]["experiments"]["items"]["properties"]
    assert set(rule) == set(RULE_KEYS)
    assert set(experiment) == set(EXPERIMENT_KEYS)


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.name for p in RULE_FILES])
def test_shipped_rule_files_follow_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), build_schema())


@pytest.mark.parametrize("document", [
    {"rules": [{"name": "x", "when": {"device.type": "tablett"}, "then": {"hero": "a"}}]},
    {"rules": [{"name": "x", "when": {"geo.contry": "GB"}, "then": {"hero": "a"}}]},
    {"rules": [{"name": "x", "whne": {}, "then": {"hero": "a"}}]},
    {"rulez": []},
])
def test_schema_underlines_mistakes(document: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, build_schema())


# Values the compiler takes in any case and other spellings; and mistakes it refuses. The
# editor's underlining must agree with it both ways (a marketer's `Mobile` or `tues` was
# underlined although it serves).
@pytest.mark.parametrize(("field", "written"), [
    ("device.type", "Mobile"), ("device.type", "TABLET"), ("geo.continent", "eu"),
    ("referral.medium", "Social"), ("time.daypart", "Evening"),
    ("time.weekday", "Mon"), ("time.weekday", "tues"), ("time.weekday", "THURS"),
    ("time.weekday", "Saturday"), ("time.weekday", "Weekend"), ("time.weekday", "wednes"),
    ("device.type", "tablett"), ("device.type", "mobiles"), ("geo.continent", "Europe"),
    ("time.weekday", "tu"), ("time.weekday", "mondays"), ("time.weekday", "weekends"),
    ("time.weekday", "sundae"), ("time.weekday", "week"),
    ("geo.country", "UK"), ("geo.country", "uk"), ("geo.country", "GB"),
    ("time.hour", "{gte: 24}"), ("time.hour", "{lt: 0}"), ("time.hour", "{gt: 23}"),
    ("time.hour", "{gte: 23}"), ("time.hour", "{lte: 30}"),
    ("profile.interests.running", "{gt: 1}"), ("profile.interests.running", "{gte: 0.5}"),
    ("profile.visits", "-1"), ("profile.visits", "1.5"), ("profile.visits", "[0.5, 2.5]"),
    ("profile.visits", "{lt: 0}"), ("profile.visits", "{lte: 0}"),
    ("profile.visits", "{gte: 1.5}"), ("profile.visits", "{gt: 1000000}"),
    ("time.hour", "22.5"), ("time.hour", "{gt: 22.5}"), ("geo.metro", "501.5"),
    ("profile.visits", "{between: [-1, 5]}"), ("profile.visits", "{between: [0, 5]}"),
    ("time.hour", "{between: [18, 25]}"), ("time.hour", "{between: [18, 23]}"),
    ("profile.interests.running", "{between: [0.5, 2]}"),
])
def test_schema_and_compiler_agree_on_values(tmp_path: Path, field: str, written: str
                                             ) -> None:
    _judged_alike(tmp_path, f"slots: {{a: {{}}}}\nrules:\n  - name: r\n"
                            f"    when: {{{field}: {written}}}\n    then: {{a: x}}\n")


def _judged_alike(tmp_path: Path, text: str) -> bool:
    """Whether the compiler and the schema both take `text` (True) or both refuse it
    (False); fails where they disagree."""
    (tmp_path / "r.yaml").write_text(text)
    _, errors = check_rules(tmp_path)
    valid: bool = jsonschema.Draft202012Validator(build_schema()).is_valid(
        yaml.safe_load(text))
    assert valid == (not errors), (errors, text)
    return valid


@pytest.mark.parametrize(("days", "valid"), [
    ("Tues", True), ("[mon, Thurs, weekend]", True), ("Weekdays", True),
    ("tu", False), ("[mon, funday]", False), ("[]", False),
])
def test_schema_reads_schedule_days_as_the_compiler(tmp_path: Path, days: str, valid: bool
                                                    ) -> None:
    assert _judged_alike(tmp_path, "slots: {a: {}}\nrules:\n  - name: r\n"
                                   "    when: {device.type: mobile}\n    then: {a: x}\n"
                                   f"    schedule: {{days: {days}}}\n") is valid


GOAL = "goals:\n  purchase: {{when: {{request.path: /thanks}}, window: {window}}}\n"
EXPERIMENT = ("experiments:\n  - name: {name}\n    slot: a\n    goals: [purchase]\n"
              "    holdout: {holdout}\n    allocation: bandit\n"
              "    bandit: {{update_every: {every}}}\n"
              "    variants: {{control: {{}}, b: {b}}}\n")
RULE = ("rules:\n  - name: r\n    traffic: {traffic}\n    then: {{a: x, redirect: {to}}}\n"
        "    schedule: {{start: '{start}', hours: '{hours}'}}\n")
FINE = {"window": "72h", "name": "hero", "holdout": "10", "every": "1h",
        "b": "{html: x}", "traffic": "50", "to": "/landing", "start": "2026-12-01",
        "hours": "18:00-23:00"}


# Documents the compiler takes that the schema underlined (units in capitals, "25 %"),
# and mistakes it refuses that the schema passed (names, dates, hours, two contents).
@pytest.mark.parametrize(("key", "written"), [
    ("window", "24H"), ("window", "30D"), ("every", "1H"), ("every", "10S"),
    ("traffic", "'25 %'"), ("holdout", "'10 %'"), ("hours", "9:00 - 17:30"),
    ("to", "https://shop.example/x"), ("to", "/"),
    ("name", "'my test'"), ("name", "-hero"), ("start", "2026/12/01"),
    ("hours", "18:00-25:00"), ("hours", "18-23"), ("b", "{html: x, file: y.html}"),
    ("b", "{text: x, html: y}"), ("to", "landing"), ("to", "//evil.example/"),
    ("window", "72"), ("every", "1 hour"), ("traffic", "half"),
    ("traffic", "'.5%'"), ("traffic", "'+5'"), ("hours", "18:00-24:00"),
    ("hours", "18:00-24:30"),
])
def test_schema_and_compiler_agree_on_documents(tmp_path: Path, key: str, written: str
                                                ) -> None:
    values = {**FINE, key: written}
    _judged_alike(tmp_path, "slots: {a: {}}\n" + GOAL.format(**values)
                  + EXPERIMENT.format(**values)
                  + RULE.format(**values).replace("'" + written + "'", written))


@pytest.mark.parametrize("variant", ["holdout", "'a,b'", "' lead'", "'x=y'", "café",
                                     "Bold-2", "'two words'", '"a\\x7f"', '"a\\x85b"',
                                     '"b\\u200b"', '"\\u3000lead"', '"tail\\xa0"',
                                     '"a\\u202eb"', "'ünïcödé ok'"])
def test_schema_and_compiler_agree_on_variant_names(tmp_path: Path, variant: str) -> None:
    _judged_alike(tmp_path, "slots: {a: {}}\nexperiments:\n  - name: e\n    slot: a\n"
                            f"    variants: {{control: {{}}, {variant}: {{html: x}}}}\n")


def test_a_slot_with_tag_and_selector_is_underlined_as_refused(tmp_path: Path) -> None:
    assert not _judged_alike(tmp_path, 'slots:\n  nav: {selector: "nav", tag: div}\n'
                                       "rules: []\n")


def test_a_document_with_no_mistakes_is_taken_by_both(tmp_path: Path) -> None:
    assert _judged_alike(tmp_path, "slots: {a: {}}\n" + GOAL.format(**FINE)
                         + EXPERIMENT.format(**FINE) + RULE.format(**FINE))


def _rule(extra: str = "", then: str = "{a: x}", when: str = "{device.type: mobile}") -> str:
    return ("slots: {a: {}}\nrules:\n  - name: r\n"
            f"    when: {when}\n    then: {then}\n{extra}")


def _experiment(extra: str = "", variants: str = "{control: {}, b: {html: x}}",
                goal: str = "{when: {request.path: /thanks}}") -> str:
    return (f"slots: {{a: {{}}}}\ngoals:\n  purchase: {goal}\nexperiments:\n  - name: e\n"
            f"    slot: a\n    variants: {variants}\n{extra}")


def _bandit(settings: str, variants: str = "{control: {}, b: {html: x}}") -> str:
    return _experiment("    goals: [purchase]\n    allocation: bandit\n"
                       f"    bandit: {settings}\n", variants)


# Days that are no day (the 30th of February, the 29th in a year not leap, year 0), and
# forms date.fromisoformat reads that are no YYYY-MM-DD, were taken by one side only.
@pytest.mark.parametrize(("document", "valid"), [
    (_rule("    schedule: {start: '2026-02-30'}\n"), False),
    (_rule("    schedule: {end: '2026-04-31'}\n"), False),
    (_rule("    schedule: {start: '2100-02-29'}\n"), False),
    (_rule("    schedule: {start: '0000-01-01'}\n"), False),
    (_rule("    schedule: {start: '20261201'}\n"), False),
    (_rule("    schedule: {start: '2026-W49-1'}\n"), False),
    (_rule("    schedule: {}\n"), False),
    (_rule("    schedule: {start: '2028-02-29', end: '2028-12-31'}\n"), True),
    (_rule("    schedule: {start: '2000-02-29'}\n"), True),
    (_rule(when="{time.date: '2026-02-30'}"), False),
    (_rule(when="{time.date: '2026-06-31'}"), False),
    (_rule(when="{time.date: {in: ['2026-12-24', '2026-12-31']}}"), True),
], ids=["feb-30", "apr-31", "2100-feb-29", "year-0", "basic-form", "week-form",
        "empty-schedule", "leap-day", "2000-feb-29", "date-feb-30", "date-jun-31",
        "dates-in"])
def test_schema_and_compiler_agree_on_dates(tmp_path: Path, document: str, valid: bool
                                            ) -> None:
    assert _judged_alike(tmp_path, document) is valid


# Shares and durations past their bounds ("150%", window: 91d, update_every: 0s) were
# taken by the schema; shares written as 1e1 or -0 by the compiler only.
@pytest.mark.parametrize(("document", "valid"), [
    (_rule("    traffic: '150%'\n"), False), (_rule("    traffic: '0%'\n"), False),
    (_rule("    traffic: '100.01'\n"), False), (_rule("    traffic: '100.0 %'\n"), True),
    (_rule("    traffic: '0.5%'\n"), True), (_rule("    traffic: '1e1'\n"), False),
    (_rule("    traffic: 150\n"), False),
    (_experiment("    holdout: '100%'\n"), False), (_experiment("    holdout: '-0'\n"), False),
    (_experiment("    holdout: '0%'\n"), True), (_experiment("    holdout: '99.9'\n"), True),
    (_experiment(goal="{window: 0h}"), False), (_experiment(goal="{window: 91d}"), False),
    (_experiment(goal="{window: 2161h}"), False), (_experiment(goal="{window: 2160h}"), True),
    (_experiment(goal="{window: 90.0d}"), True), (_experiment(goal="{window: .5h}"), True),
    (_experiment(goal="{window: 7776001s}"), False),
    (_bandit("{update_every: 0s}"), False), (_bandit("{update_every: 31d}"), False),
    (_bandit("{update_every: 0.01m}"), False), (_bandit("{update_every: 0.02m}"), True),
    (_bandit("{update_every: 721h}"), False), (_bandit("{update_every: 30d}"), True),
    (_bandit("{update_every: 3000000}"), False), (_bandit("{update_every: 2592000}"), True),
], ids=["traffic-150%", "traffic-0%", "traffic-100.01", "traffic-100.0%", "traffic-0.5%",
        "traffic-1e1", "traffic-150", "holdout-100%", "holdout--0", "holdout-0%",
        "holdout-99.9", "window-0h", "window-91d", "window-2161h", "window-2160h",
        "window-90.0d", "window-.5h", "window-7776001s", "every-0s", "every-31d",
        "every-0.01m", "every-0.02m", "every-721h", "every-30d", "every-3000000",
        "every-2592000"])
def test_schema_and_compiler_agree_on_bounds(tmp_path: Path, document: str, valid: bool
                                             ) -> None:
    assert _judged_alike(tmp_path, document) is valid


# What an experiment's keys ask of each other: bandit settings need allocation: bandit, a
# bandit needs goals, an experiment a slot, per: known fields, the floor room for each.
@pytest.mark.parametrize(("document", "valid"), [
    (_experiment("    bandit: {floor: 1}\n"), False),
    (_experiment("    allocation: fixed\n    bandit: {floor: 1}\n"), False),
    (_experiment("    allocation: bandit\n"), False),
    (_experiment("    goals: []\n    allocation: bandit\n"), False),
    (_experiment("    goals: purchase\n    allocation: bandit\n"), True),
    (_experiment("    per: [device.typo]\n"), False),
    (_experiment("    per: device.type\n"), True),
    (_experiment("    per: [request.query.utm, geo.country]\n"), True),
    (_bandit("{floor: 40}", "{control: {}, b: {html: x}, c: {html: y}}"), False),
    (_bandit("{floor: 33}", "{control: {}, b: {html: x}, c: {html: y}}"), True),
    ("slots: {a: {}}\nexperiments:\n  - name: e\n    variants: {control: {}, b: {html: x}}\n",
     False),
    ("slots: {a: {}}\nexperiments:\n  - name: e\n    slots: []\n"
     "    variants: {control: {}, b: {html: x}}\n", False),
    ("slots: {a: {}}\nexperiments:\n  - name: e\n    slots: a\n"
     "    variants: {control: {}, b: {html: x}}\n", True),
], ids=["bandit-settings-no-allocation", "bandit-settings-fixed", "bandit-no-goals",
        "bandit-goals-empty", "bandit-one-goal", "per-unknown-field", "per-one-field",
        "per-fields", "floor-40-of-3", "floor-33-of-3", "no-slot", "slots-empty",
        "slots-one-name"])
def test_schema_and_compiler_agree_on_experiments(tmp_path: Path, document: str, valid: bool
                                                  ) -> None:
    assert _judged_alike(tmp_path, document) is valid


# Conditions: a number where text is compared is read as its digits (request.path:
# {contains: 5}), on both sides; text operators on numbers and true/false are refused on
# both; true of a free text field is the text "true"; empty lists and operators under
# not: are refused as the compiler refuses them.
@pytest.mark.parametrize(("when", "valid"), [
    ("{request.path: {contains: 5}}", True), ("{request.query.page: {prefix: 2}}", True),
    ("{request.path: {matches: 5}}", True), ("{language.tags: {contains: 5}}", True),
    ("{request.path: {contains: ''}}", False), ("{language.tags: ''}", False),
    ("{profile.visits: {contains: 5}}", False), ("{geo.eu: {contains: x}}", False),
    ("{device.touch: {prefix: t}}", False),
    ("{request.query.debug: true}", True), ("{request.query.debug: {in: [true]}}", True),
    ("{device.type: true}", False), ("{language.tags: true}", False),
    ("{request.path: {not: []}}", False), ("{request.path: {not: {}}}", False),
    ("{request.path: {not: {bogus: 1}}}", False),
    ("{request.path: {not: {prefix: /admin}}}", True),
    ("{request.path: {not: {not: {prefix: /admin}}}}", True),
    ("{request.path: {not: [/a, /b]}}", True), ("{segment: []}", False),
], ids=["contains-number", "prefix-number", "matches-number", "tag-number", "contains-empty",
        "tag-empty", "contains-of-count", "contains-of-boolean", "prefix-of-boolean",
        "text-true", "text-in-true", "enum-true", "tag-true", "not-empty-list",
        "not-empty-mapping", "not-unknown-operator", "not-prefix", "not-not", "not-list",
        "segment-empty"])
def test_schema_and_compiler_agree_on_conditions(tmp_path: Path, when: str, valid: bool
                                                 ) -> None:
    assert _judged_alike(tmp_path, _rule(when=when)) is valid


# Page actions and what a slot's action needs: headers and cookies the compiler refuses
# (names, values, the product's own), redirects with a space, an action without what it
# works with (add_class without class) were taken by the schema; true was underlined.
@pytest.mark.parametrize(("then", "valid"), [
    ("{a: x, headers: {}}", False), ("{a: x, headers: {'X Bad': 1}}", False),
    ("{a: x, headers: {Host: x}}", False), ("{a: x, headers: {X-EP-Variant: x}}", False),
    ("{a: x, headers: {surrogate-control: x}}", False),
    ("{a: x, headers: {X-A: '{{ geo.city }}'}}", False),
    ('{a: x, headers: {X-A: "a\\nb"}}', False), ("{a: x, headers: {X-A: true}}", True),
    ("{a: x, headers: {X-Offer: 'Spring sale', X-Id: 5}}", True),
    ("{a: x, cookies: {seg: 'a b'}}", False), ("{a: x, cookies: {EP_seg: x}}", False),
    ("{a: x, cookies: {'a=b': x}}", False), ("{a: x, cookies: {seg: spring%20sale}}", True),
    ("{redirect: '/sale now'}", False), ("{redirect: {to: '/a\\\\b'}}", False),
    ("{redirect: {to: 'https://shop.example/x?y=1', status: 301}}", True),
    ("{a: {action: add_class}}", False), ("{a: {action: remove_class, class: ' '}}", False),
    ("{a: {action: add_class, class: promo}}", True),
    ("{a: {action: set_attribute, attribute: href}}", False),
    ("{a: {action: set_attribute, attribute: 'a b', value: x}}", False),
    ("{a: {action: set_attribute, attribute: data-n, value: 5}}", True),
    ("{a: {action: remove_attribute}}", False), ("{a: {action: append}}", False),
    ("{a: {}}", False), ("{a: {class: x}}", False), ("{a: {action: remove}}", True),
    ("{a: {text: 5}}", True), ("{a: {action: before, html: '<p>x</p>'}}", True),
], ids=["headers-empty", "header-name-space", "header-host", "header-x-ep",
        "header-cdn-control", "header-template", "header-two-lines", "header-true",
        "headers-fine", "cookie-space", "cookie-ep", "cookie-name-equals", "cookie-fine",
        "redirect-space", "redirect-backslash", "redirect-fine", "add-class-no-class",
        "remove-class-blank", "add-class-fine", "set-attribute-no-value",
        "set-attribute-bad-name", "set-attribute-number", "remove-attribute-no-name",
        "append-nothing", "empty-variant", "class-only", "remove", "text-number",
        "before-html"])
def test_schema_and_compiler_agree_on_actions(tmp_path: Path, then: str, valid: bool) -> None:
    assert _judged_alike(tmp_path, _rule(then=then)) is valid


HUGE = "1" + "0" * 400   # YAML reads an int of any size; no float holds this one


# Numbers too large for a float: the compiler ended in OverflowError, the schema took them.
@pytest.mark.parametrize(("document", "valid"), [
    (_rule(when=f"{{profile.visits: {{gte: {HUGE}}}}}"), False),
    (_rule(when=f"{{profile.visits: {{lt: -{HUGE}}}}}"), False),
    (_rule(when=f"{{profile.visits: {HUGE}}}"), False),
    (_rule(when=f"{{profile.visits: {{between: [1, {HUGE}]}}}}"), False),
    (_rule(when=f"{{profile.interests.running: {{not: {HUGE}}}}}"), False),
    (_rule(when="{profile.visits: {lt: .inf}}"), False),
    (_rule(when="{profile.visits: {gte: 1.5e+308}}"), True),
    (_rule(f"    traffic: {HUGE}\n"), False),
    (_experiment(f"    holdout: {HUGE}\n"), False),
    (_experiment(variants=f"{{control: {{weight: {HUGE}}}, b: {{html: x}}}}"), False),
    (_bandit(f"{{update_every: {HUGE}}}"), False),
], ids=["gte", "lt-negative", "equals", "between", "not", "lt-inf", "gte-largest", "traffic",
        "holdout", "weight", "update-every"])
def test_schema_and_compiler_agree_on_numbers_too_large(tmp_path: Path, document: str,
                                                        valid: bool) -> None:
    assert _judged_alike(tmp_path, document) is valid


# Weights whose sum no float holds (1e308 twice) were taken by both.
@pytest.mark.parametrize(("variants", "valid"), [
    ("{control: {weight: 1.0e308}, b: {weight: 1.0e308, html: x}}", False),
    ("{control: {weight: 1000000001}, b: {html: x}}", False),
    ("{control: {weight: 0.0000009}, b: {html: x}}", False),
    ("{control: {weight: 0.000001}, b: {weight: 1000000000, html: x}}", True),
])
def test_schema_and_compiler_agree_on_weights(tmp_path: Path, variants: str, valid: bool
                                              ) -> None:
    assert _judged_alike(tmp_path, _experiment(variants=variants)) is valid


# A priority of any size was taken by both.
@pytest.mark.parametrize(("priority", "valid"), [
    ("1000000", True), ("-1000000", True), ("1000001", False), ("-1000001", False),
    (HUGE, False), (f"-{HUGE}", False)])
def test_schema_and_compiler_agree_on_priority(tmp_path: Path, priority: str, valid: bool
                                               ) -> None:
    assert _judged_alike(tmp_path, _rule(f"    priority: {priority}\n")) is valid


# A burn_in of any size was taken by both: a bandit that never learns.
@pytest.mark.parametrize(("burn_in", "valid"), [
    ("0", True), ("1000000", True), ("1000001", False), (HUGE, False), ("-1", False)])
def test_schema_and_compiler_agree_on_burn_in(tmp_path: Path, burn_in: str, valid: bool
                                              ) -> None:
    assert _judged_alike(tmp_path, _bandit(f"{{burn_in: {burn_in}}}")) is valid


@pytest.mark.parametrize(("segment", "valid"), [
    ("other", True), ("OTHER", True), ("others", True), ("phones", True)])
def test_schema_and_compiler_agree_on_segment_names(tmp_path: Path, segment: str,
                                                    valid: bool) -> None:
    # A segment named other is refused only beside an experiment counted per: segment (its
    # results name so the visitors in none): no schema sees across the sections.
    assert _judged_alike(tmp_path, f"segments:\n  {segment}: {{when: {{device.type: mobile}}}}\n"
                         ) is valid



# Segment and interest names held anything: a terminal's escape, a line break.
@pytest.mark.parametrize(("name", "valid"), [
    ('"a\\e[31mRED\\nline"', False), ('"vip\\u200f"', False), ('"\\ufeffvip"', False),
    ('" "', False), ('"\\u3000"', False), ("café lovers", True), ("Big-Spenders_2026.q1", True),
    ("'loyal: 3+ visits'", True),
])
def test_schema_and_compiler_agree_on_segment_and_interest_names(tmp_path: Path, name: str,
                                                                 valid: bool) -> None:
    assert _judged_alike(tmp_path, f"segments:\n  {name}: {{when: {{device.type: mobile}}}}\n"
                         ) is valid
    assert _judged_alike(tmp_path, f"interests:\n  {name}: [/running]\n") is valid
