from __future__ import annotations

from types import MappingProxyType

from edge_personalizer.rules.conditions import AllOf
from edge_personalizer.rules.model import (
    NO_DECISION,
    Content,
    Decision,
    Redirect,
    Rule,
    RuleSet,
    SlotChoice,
)
from edge_personalizer.rules.template import Template


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
