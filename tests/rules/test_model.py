from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from edge_personalizer.classify.classifier import request_info
from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.conditions import AllOf
from edge_personalizer.rules.model import (
    NO_DECISION,
    Content,
    Decision,
    Redirect,
    Rule,
    RuleSet,
    SlotChoice,
    header_text,
)
from edge_personalizer.rules.template import Template

from ..factories import (
    IPHONE,
    NOW,
    default_classifier,
    make_visitor,
    unset_fields_take_their_declared_defaults,
)


def test_rule_targets_include_page_actions() -> None:
    rule = Rule("r", AllOf(()), 0, 0, "a.yaml:1",
                slots=MappingProxyType({"hero": Content("inner", Template(("x",)))}),
                redirect=Redirect("/l"), headers=(("X-A", "1"),))
    assert rule.targets == {"hero", "redirect", "headers"}


def test_decision_properties() -> None:
    assert NO_DECISION.is_empty and not NO_DECISION.changes_page
    control = Decision(slots=MappingProxyType({"hero": SlotChoice("hero", "control", "control",
                                                                   "exp")}))
    assert not control.is_empty and not control.changes_page
    assert RuleSet.empty().rules == ()


def test_a_request_is_tested_only_against_the_goals_it_could_reach(tmp_path: Path) -> None:
    (tmp_path / "goals.yaml").write_text(
        "goals:\n"
        "  purchase: {when: {request.path: /checkout/thanks}, value: {query: total}}\n"
        "  newsletter: {when: {request.path: [/newsletter, /subscribe], request.method: POST}}\n"
        "  deep-read: {when: {request.path: {prefix: /blog/}}}\n"
        "  cta-click: {}\n")
    ruleset = load_rules(tmp_path)

    def within_reach(path: str, method: str = "GET") -> list[str]:
        visitor = default_classifier().visitor(
            request_info(method=method, path=path, query_string="", host="shop.example",
                         headers=[("user-agent", IPHONE)], client_ip=None), now=NOW)
        return [goal.name for goal in ruleset.goals_within_reach(visitor)]

    # by path, in the order written; a goal that names no page (a prefix) is always tested,
    # one reached only by header or beacon never is, and the rest of a condition (the
    # method) is left to the test itself
    assert within_reach("/checkout/thanks") == ["purchase", "deep-read"]
    assert within_reach("/Checkout/Thanks") == ["purchase", "deep-read"]   # as paths compare
    assert within_reach("/subscribe", "POST") == ["newsletter", "deep-read"]
    assert within_reach("/subscribe") == ["newsletter", "deep-read"]
    assert within_reach("/") == ["deep-read"]
    assert list(RuleSet.empty().goals_within_reach(make_visitor("/"))) == []



def test_a_rule_set_says_how_much_it_holds(tmp_path: Path) -> None:
    assert RuleSet.empty().size == "0 rules in 0 files"
    (tmp_path / "rules.yaml").write_text("slots: {hero: {}}\nrules:\n"
                                         "  - {name: a, then: {hero: x}}\n")
    assert load_rules(tmp_path).size == "1 rule in 1 file"
    (tmp_path / "more.yaml").write_text(
        "experiments:\n  - {name: e, slot: hero, goals: [buy],\n"
        "     variants: {control: {html: a}, b: {html: b}}}\n"
        "goals:\n  buy: {when: {request.path: /thanks}}\n")
    assert load_rules(tmp_path).size == "1 rule, 1 experiment and 1 goal in 2 files"


def test_a_choice_and_a_decision_left_unset_take_the_defaults_their_fields_declare() -> None:
    assert unset_fields_take_their_declared_defaults(
        SlotChoice("hero", "welcome", "rule", "facebook")) == []
    assert unset_fields_take_their_declared_defaults(Decision()) == []


def test_header_text_is_ascii_with_percent_and_the_rest_percent_encoded() -> None:
    assert header_text("hero=bold,banner=b") == b"hero=bold,banner=b"
    assert header_text("hero=café") == b"hero=caf%C3%A9"
    assert header_text("hero=100%") == b"hero=100%25"
    assert header_text("hero=日本") == b"hero=%E6%97%A5%E6%9C%AC"
    assert Decision({"hero": SlotChoice("hero", "é", "rule", "é")}).variant_header == b"hero=%C3%A9"


def test_a_rule_set_names_what_a_full_profile_keeps_entries_for(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("""
slots: {hero: {}}
rules:
  - name: follow-up
    when: {profile.variants.spring-test: bold}
    then: {hero: {html: "<h1>Welcome back</h1>"}}
experiments:
  - name: hero-test
    slot: hero
    variants: {control: {weight: 1}, bold: {weight: 1, html: "<h1>Bold</h1>"}}
""")
    ruleset = load_rules(tmp_path)
    assert ruleset.served_names == {"follow-up", "hero-test", "spring-test"}
