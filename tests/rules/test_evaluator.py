from __future__ import annotations

import random
from pathlib import Path

from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.evaluator import decide, explain
from edge_personalizer.rules.model import Decision, RuleSet

from ..factories import make_visitor

COUNTRIES = ["GB", "SE", "US", "DE", "JP"]
SOURCES = ["facebook", "google", "bing", "newsletter", "linkedin"]
REFERERS = {"facebook": "https://facebook.com/", "google": "https://www.google.com/",
            "bing": "https://www.bing.com/", "linkedin": "https://www.linkedin.com/"}
IPS = ["81.2.69.142", "89.160.20.112", "216.160.83.56", None]


def _random_rules(tmp_path: Path, count: int, seed: int) -> RuleSet:
    rng = random.Random(seed)
    lines = ["slots: {a: {}, b: {}, c: {}}", "rules:"]
    for i in range(count):
        clauses = []
        if rng.random() < 0.7:
            clauses.append(f"geo.country: {rng.choice(COUNTRIES)}")
        if rng.random() < 0.5:
            clauses.append(f"referral.source: [{rng.choice(SOURCES)}, {rng.choice(SOURCES)}]")
        if rng.random() < 0.3:
            clauses.append("profile.visits: {gte: 1}")
        when = "{" + ", ".join(clauses) + "}"
        slot = rng.choice("abc")
        priority = rng.choice([0, 0, 1, 5])
        lines.append(f"  - name: r{i}\n    priority: {priority}\n" + (
            f"    when: {when}\n" if clauses else "") + f"    then: {{{slot}: {{html: r{i}}}}}")
    (tmp_path / "rules.yaml").write_text("\n".join(lines) + "\n")
    return load_rules(tmp_path)


def _linear(ruleset: RuleSet, visitor: object) -> dict[str, str]:
    """What deciding must give: every rule tried in rank order, no index."""
    taken: dict[str, str] = {}
    for rule in ruleset.rules:
        for slot in rule.slots:
            if slot not in taken and rule.condition(visitor):  # type: ignore[arg-type]
                taken[slot] = rule.name
    return taken


def test_index_gives_the_same_answer_as_trying_every_rule(tmp_path: Path) -> None:
    ruleset = _random_rules(tmp_path, 300, seed=7)
    assert ruleset.unindexed != tuple(r.rank for r in ruleset.rules)   # the index is used
    rng = random.Random(3)
    for _ in range(200):
        source = rng.choice([*REFERERS, None])
        headers = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
        if source:
            headers["referer"] = REFERERS[source]
        visitor = make_visitor(headers=headers, ip=rng.choice(IPS))
        got = {slot: choice.by for slot, choice in decide(ruleset, visitor).slots.items()}
        assert got == _linear(ruleset, visitor)


def test_no_rules_no_decision(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {a: {}}\n")
    decision = decide(load_rules(tmp_path), make_visitor())
    assert decision == Decision() and decision.is_empty and not decision.changes_page


def test_explain_reports_every_rule(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {a: {}}\nrules:\n"
        "  - {name: one, when: {geo.country: SE}, then: {a: {html: x}}}\n"
        "  - {name: two, then: {a: {html: y}}}\n"
        "  - {name: three, then: {a: {html: z}}}\n")
    trace = explain(load_rules(tmp_path), make_visitor(ip="81.2.69.142"))
    outcomes = [(r["name"], r["outcome"]) for r in trace["rules"]]
    assert outcomes == [("one", "failed"), ("two", "won"), ("three", "matched")]
    assert trace["rules"][0]["detail"] == 'geo.country is "se" (was "GB")'
    assert trace["decision"]["slots"]["a"] == {"variant": "two", "reason": "rule", "by": "two"}


def test_the_same_winners_give_the_same_decision_object(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {a: {}, b: {}}\nrules:\n"
        "  - {name: se, when: {geo.country: SE}, then: {a: {html: x}}}\n"
        "  - {name: all, then: {a: {html: y}, b: {html: z}}}\n")
    ruleset = load_rules(tmp_path)
    swede, other = make_visitor(ip="89.160.20.112"), make_visitor(ip="81.2.69.142")
    first, again = decide(ruleset, swede), decide(ruleset, make_visitor(ip="89.160.20.112"))
    assert first is again and first.rules == ("se", "all")
    assert first.slots["a"].by == "se" and first.slots["b"].by == "all"
    elsewhere = decide(ruleset, other)
    assert elsewhere is not first and elsewhere.slots["a"].by == "all"
    assert len(ruleset.decided) == 2


def test_decisions_with_experiments_are_made_each_time(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {a: {}}\nexperiments:\n"
        "  - name: e\n    slots: [a]\n"
        "    variants: {one: {a: {html: '1'}}, two: {a: {html: '2'}}}\n")
    ruleset = load_rules(tmp_path)
    decide(ruleset, make_visitor())
    assert not ruleset.decided
