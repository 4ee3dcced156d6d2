from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.evaluator import decide
from edge_personalizer.rules.segment import DEFAULT_SEGMENT, segment_of

from ..factories import make_visitor

RULES = """
slots: {hero: {}, banner: {}}
rules:
  - {name: uk, when: {geo.country: GB}, then: {hero: {html: "uk"}}}
  - {name: city, when: {geo.country: [GB, SE]}, then: {banner: {html: "hi {{ geo.city }}"}}}
"""


def test_same_variants_same_key_and_templates_count(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    rules = load_rules(tmp_path)
    london = make_visitor(ip="81.2.69.142")
    london_again = make_visitor(ip="81.2.69.142")
    sweden = make_visitor(ip="89.160.20.112")
    nowhere = make_visitor()
    key = segment_of(decide(rules, london), london)
    assert key == segment_of(decide(rules, london_again), london_again)
    assert key.key.startswith("s-") and len(key.key) == 14
    assert "ep-rule-uk" in key.tags and "ep-variant-hero-uk" in key.tags
    assert segment_of(decide(rules, sweden), sweden).key != key.key
    assert segment_of(decide(rules, nowhere), nowhere).key == DEFAULT_SEGMENT
