"""allocation: bandit in rule files: checked at load, cells per visitor, published weights
used for new visitors only."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import jsonschema
import pytest
import yaml

from edge_personalizer.classify.visitor import Visitor
from edge_personalizer.learn.bandit import BanditSpec, WeightsTable, experiment_weights
from edge_personalizer.learn.counters import EXPOSURE, CountKey, Tally
from edge_personalizer.rules.allocation import BanditSettings, Cells
from edge_personalizer.rules.book import check_rules
from edge_personalizer.rules.evaluator import decide, explain
from edge_personalizer.rules.model import RuleSet
from edge_personalizer.rules.schema import build_schema

from ..factories import make_visitor, with_profile

DESKTOP = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")
RULES = """\
slots: {hero: {selector: "#hero"}}
goals:
  purchase: {when: {request.path: /checkout/thanks}}
segments:
  from-search: {when: {referral.medium: search}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
    allocation: bandit
    per: [device.type, referral.medium]
    bandit: {burn_in: 50, floor: 2, update_every: 10s}
    variants: {control: {weight: 34}, a: {weight: 33, html: "A"}, b: {weight: 33, html: "B"}}
"""


def load(tmp_path: Path, text: str) -> tuple[RuleSet, list[str]]:
    (tmp_path / "r.yaml").write_text(text)
    ruleset, errors = check_rules(tmp_path)
    return ruleset, [str(e) for e in errors]


def test_a_bandit_experiment_compiles_with_its_cells_and_settings(tmp_path: Path) -> None:
    ruleset, errors = load(tmp_path, RULES)
    assert errors == []
    (experiment,) = ruleset.experiments
    assert experiment.allocation == "bandit"
    assert experiment.cells == Cells(fields=("device.type", "referral.medium"))
    assert experiment.bandit == BanditSettings(burn_in=50, floor=2.0, update_every=10.0)
    assert {"device.type", "referral.medium"} <= ruleset.fields
    jsonschema.validate(yaml.safe_load(RULES), build_schema())


@pytest.mark.parametrize(("old", "new", "line", "message"), [
    ("    goals: [purchase]\n", "", 9, "a bandit learns from conversions"),
    ("[device.type,", "[device.typo,", 11,
     "unknown field 'device.typo'; did you mean 'device.type'?"),
    ("per: [device.type, referral.medium]", "per: {device: type}", 11,
     "per is segment, or a list of visitor fields"),
    ("burn_in: 50", "burn_in: lots", 12, "burn_in is a whole number"),
    ("floor: 2", "floor: 40", 12,
     "floor is the percent of new visitors each variant keeps: 0 to 33.3333"),
    ("update_every: 10s", "update_every: often", 12,
     "update_every 'often': write 10s, 30m, 1h or 1d"),
    ("update_every: 10s", "update_every: " + "9" * 400 + "x", 12,   # (quoted whole)
     "update_every '9999999999999999999…: write 10s, 30m, 1h or 1d"),
    ("allocation: bandit", "allocation: learned", 10,
     "allocation 'learned': fixed (the weights given) or bandit"),
    ("floor: 2,", "flor: 2,", 12,
     "unknown key 'flor'; bandit has burn_in, floor, update_every, metric"),
])
def test_bandit_mistakes_are_errors_at_their_line(tmp_path: Path, old: str, new: str,
                                                  line: int, message: str) -> None:
    _, errors = load(tmp_path, RULES.replace(old, new))
    assert len(errors) == 1, errors
    assert f"r.yaml:{line}" in errors[0] and message in errors[0]


def test_every_mistake_of_a_bandit_s_settings_is_told(tmp_path: Path) -> None:
    # floor: 60 hid update_every's mistake beside it
    _, errors = load(tmp_path, RULES.replace("{burn_in: 50, floor: 2, update_every: 10s}",
                                             "{burn_in: -1, floor: 60, update_every: 5 minutes,"
                                             " metrc: value}"))
    assert len(errors) == 4, errors
    for said in ("burn_in is a whole number", "floor is the percent",
                 "update_every '5 minutes': write 10s", "unknown key 'metrc'"):
        assert any(said in error for error in errors), (said, errors)


def test_bandit_settings_without_a_bandit_and_per_segment_without_segments(
        tmp_path: Path) -> None:
    _, errors = load(tmp_path, RULES.replace("allocation: bandit", "allocation: fixed"))
    assert len(errors) == 1 and "bandit settings need allocation: bandit" in errors[0]
    no_segments = RULES.replace("segments:\n  from-search: {when: {referral.medium: search}}\n",
                                "").replace("[device.type, referral.medium]", "segment")
    _, errors = load(tmp_path, no_segments)
    assert len(errors) == 1 and "per: segment needs a segments: section" in errors[0]


def visitor(*, user_agent: str = DESKTOP, referer: str = "", variants: dict[str, str]
            | None = None, visitor_id: str = "v-1") -> Visitor:
    headers = {"user-agent": user_agent, "cookie": ""}
    if referer:
        headers["referer"] = referer
    made = make_visitor("/", headers=headers)
    profile = made.profile._replace(visitor_id=visitor_id, stored=True,
                                    variants=MappingProxyType(variants or {}))
    return with_profile(made, profile)


def test_cells_are_the_named_fields_or_the_first_segment(tmp_path: Path) -> None:
    ruleset, _ = load(tmp_path, RULES)
    cells = ruleset.experiments[0].cells
    assert cells(visitor()) == "desktop|direct"
    assert cells(visitor(referer="https://www.google.com/")) == "desktop|search"
    by_segment, errors = load(tmp_path, RULES.replace("[device.type, referral.medium]",
                                                      "segment"))
    assert errors == []
    cells = by_segment.experiments[0].cells
    assert cells(visitor(referer="https://www.google.com/")) == "from-search"
    assert cells(visitor()) == "other"


def learned(cell: str, winner: str) -> WeightsTable:
    spec = BanditSpec("hero-test", (("control", 34), ("a", 33), ("b", 33)), goal="purchase")
    rows = {}
    for variant in ("control", "a", "b"):
        rows[CountKey("hero-test", variant, EXPOSURE, cell, "2026-12-02")] = Tally(5000)
        rows[CountKey("hero-test", variant, "purchase", cell, "2026-12-02")] = Tally(
            0, 400 if variant == winner else 100)
    return WeightsTable(3, {"hero-test": experiment_weights(spec, rows, version=5, now=0.0)})


def shown(ruleset: RuleSet, table: WeightsTable | None, **kwargs: object) -> tuple[str, str]:
    choice = decide(ruleset, visitor(**kwargs), allocations=table).slots["hero"]  # type: ignore[arg-type]
    return choice.variant, choice.cell


def test_new_visitors_get_the_learned_weights_of_their_cell(tmp_path: Path) -> None:
    ruleset, _ = load(tmp_path, RULES)
    table = learned("desktop|direct", "b")
    desktop = [shown(ruleset, table, visitor_id=f"v-{n}") for n in range(300)]
    assert {cell for _, cell in desktop} == {"desktop|direct"}
    assert sum(variant == "b" for variant, _ in desktop) > 240
    from_search = [shown(ruleset, table, visitor_id=f"v-{n}", referer="https://www.bing.com/")
                   for n in range(300)]
    assert 60 < sum(variant == "b" for variant, _ in from_search) < 140   # starting weights


def test_a_visitor_keeps_the_variant_they_were_shown(tmp_path: Path) -> None:
    ruleset, _ = load(tmp_path, RULES)
    table = learned("desktop|direct", "b")
    kept = [shown(ruleset, table, visitor_id=f"v-{n}", variants={"hero-test": "a"})[0]
            for n in range(100)]
    assert set(kept) == {"a"}


def test_without_published_weights_the_fixed_weights_share_out(tmp_path: Path) -> None:
    ruleset, _ = load(tmp_path, RULES)
    without = [shown(ruleset, None, visitor_id=f"v-{n}")[0] for n in range(300)]
    assert {"control", "a", "b"} == set(without)
    assert without == [shown(ruleset, WeightsTable(), visitor_id=f"v-{n}")[0]
                       for n in range(300)]


def test_explain_says_which_cell_which_weights_and_why(tmp_path: Path) -> None:
    ruleset, _ = load(tmp_path, RULES)
    table = learned("desktop|direct", "b")
    (traced,) = explain(ruleset, visitor(), allocations=table)["experiments"]
    assert traced["cell"] == "desktop|direct" and traced["weights_version"] == 5
    assert traced["why"] == "learned weights version 5 for cell 'desktop|direct'"
    (kept,) = explain(ruleset, visitor(variants={"hero-test": "a"}),
                      allocations=table)["experiments"]
    assert kept["why"].startswith("kept") and kept["variant"] == "a"
    assert traced["period"] == 5   # a new visitor counts in the version assigned under
    exposed = visitor(variants={"hero-test": "a"})
    exposed = with_profile(exposed, exposed.profile.with_exposure("hero-test", "a", "all", 3))
    (earlier,) = explain(ruleset, exposed, allocations=table)["experiments"]
    assert earlier["period"] == 3 and earlier["weights_version"] == 5
    assert earlier["why"] == "kept: the variant this visitor was shown before, " \
        "under weights version 3"
    (fixed,) = explain(ruleset, visitor())["experiments"]
    assert fixed["weights_version"] is None and fixed["why"].startswith("the fixed weights")
    # A cell in its burn-in, or not counted yet, shares out by the starting weights.
    spec = BanditSpec("hero-test", (("control", 34), ("a", 33), ("b", 33)), goal="purchase")
    few = {CountKey("hero-test", v, EXPOSURE, "desktop|direct", "2026-12-02"): Tally(10)
           for v in ("control", "a", "b")}
    burning = WeightsTable(3, {"hero-test": experiment_weights(spec, few, version=2, now=0.0)})
    (early,) = explain(ruleset, visitor(), allocations=burning)["experiments"]
    assert early["why"] == ("the starting weights (version 2): cell 'desktop|direct' is in its "
                            "burn-in, until every variant has its burn_in of exposures")
    assert early["weights"] == {"control": 34.0, "a": 33.0, "b": 33.0}
    (other,) = explain(ruleset, visitor(referer="https://www.bing.com/"),
                       allocations=table)["experiments"]
    assert other["why"].endswith("is not counted yet")
