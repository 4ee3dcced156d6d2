"""Slots, interests and segments: the declarations rules refer to."""

from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules

from . import told


def test_reserved_slot_names(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {head: {}, redirect: {}}\n")
    _, errors = check_rules(tmp_path)
    assert len(errors) == 2 and "reserved" in errors[0].reason


def test_slot_tag_qualifies_the_marker(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {hero: {tag: Section}, bad: {tag: '1x'}}\n")
    ruleset, errors = check_rules(tmp_path)
    assert ruleset.slots["hero"].selector == 'section[data-ep-slot="hero"]'
    assert len(errors) == 1 and "tag is an element name" in errors[0].reason


def test_a_slot_s_tag_is_an_html_element_or_a_custom_one(tmp_path: Path) -> None:
    # A mistyped tag loaded, and no page ever had the slot.
    (tmp_path / "r.yaml").write_text(
        "slots:\n  banner: {tag: dvi}\n  card: {tag: product-card}\n  old: {tag: CENTER}\n")
    ruleset, errors = check_rules(tmp_path)
    assert [(e.line, e.reason) for e in errors] == [
        (2, "slot 'banner': 'dvi' is no HTML element (a custom element's name has a \"-\"), "
            "so no page would have the slot; did you mean 'div'?")]
    assert ruleset.slots["card"].selector == 'product-card[data-ep-slot="card"]'
    assert ruleset.slots["old"].selector == 'center[data-ep-slot="old"]'


def test_sections_that_are_not_mappings_are_errors_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: [hero]\ninterests: 3\nsegments: {a: {}}\n")
    _, errors = check_rules(tmp_path)
    assert [(e.line, e.reason.split(" ")[0]) for e in errors] == [
        (1, "slots"), (2, "interests"), (3, "a")]


def test_unused_segments_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("segments:\n  fans: {when: {geo.contry: GB}}\n")
    _, errors = check_rules(tmp_path)
    assert len(errors) == 1 and "segment 'fans'" in str(errors[0]) and errors[0].line == 2


def test_a_selector_the_rewriter_cannot_use_is_an_error_at_its_line(tmp_path: Path) -> None:
    # Accepted before, each turned the rewriter away from every page its rules applied to,
    # while the headers and the counts named variants no visitor saw.
    (tmp_path / "r.yaml").write_text(
        "slots:\n"
        '  cta: {selector: "main >> a["}\n'
        '  card: {selector: "section:has(a)"}\n'
        '  link: {selector: "a:hover"}\n'
        '  hero: {selector: "main .hero a.button"}\n'
        '  teaser: {selector: "p:not(.x) > a[href^=\'/sale\']"}\n')
    ruleset, errors = check_rules(tmp_path)
    assert [(e.line, e.column) for e in errors] == [(2, 19), (3, 20), (4, 20)]
    assert "selector 'main >> a[' cannot be used: dangling combinator" in errors[0].reason
    assert "unsupported pseudo-class" in errors[1].reason and ":has()" in errors[1].reason
    assert set(ruleset.slots) == {"hero", "teaser"}


def test_a_name_defined_twice_says_where_it_was_first(tmp_path: Path) -> None:
    # Files are read in path order: the one in extra.yaml comes first, and the error is
    # at the second, which names the first.
    (tmp_path / "extra.yaml").write_text(
        "slots:\n  hero: {tag: h1}\ninterests:\n  trail: [/trail]\n"
        "segments:\n  fans: {when: {referral.source: facebook}}\ngoals:\n  buy: {}\n")
    (tmp_path / "site.yaml").write_text(
        "slots: {hero: {}}\ninterests: {trail: [/trail/*]}\n"
        "segments: {fans: {when: {referral.medium: social}}}\ngoals: {buy: {}}\n")
    _, errors = check_rules(tmp_path)
    extra = tmp_path / "extra.yaml"
    assert sorted((e.source.name, e.line, e.reason) for e in errors) == [
        ("site.yaml", 1, f"slot 'hero' is defined twice (first at {extra}:2)"),
        ("site.yaml", 2, f"interest 'trail' is defined twice (first at {extra}:4)"),
        ("site.yaml", 3, f"segment 'fans' is defined twice (first at {extra}:6)"),
        ("site.yaml", 4, f"goal 'buy': defined twice (first at {extra}:8)")]


def test_a_slot_s_mistakes_name_the_slot_and_tag_with_selector_is_one(tmp_path: Path) -> None:
    # A slot with both was looked for by its selector alone, the tag silently dropped;
    # a selector the rewriter refuses did not say which slot it was.
    (nav, side) = told(tmp_path, 'slots:\n  nav: {selector: "nav", tag: div}\n'
                                 '  side: {selector: "aside >> .x"}\nrules: []\n')
    assert nav[0] == 2 and nav[1].startswith("slot 'nav': tag names the element")
    assert side[0] == 3 and side[1].startswith("slot 'side': selector 'aside >> .x' cannot")


def test_each_interest_pattern_that_is_no_path_is_told_at_its_line(tmp_path: Path) -> None:
    # "an interest is a list of path patterns" was said of a list, of the whole interest.
    assert told(tmp_path, "interests:\n  hiking:\n    - /hiking\n    - hiking/*\n"
                          "    - trails\nrules: []\n") == [
        (4, "interest 'hiking': 'hiking/*' is no path pattern: a pattern starts with /, "
            "e.g. '/hiking/*'"),
        (5, "interest 'hiking': 'trails' is no path pattern: a pattern starts with /, "
            "e.g. '/trails'")]


RULE = ("a name may not hold a control character (a line break, a tab, an escape) or an "
        "invisible one (zero-width, a direction mark): names are printed in reports, "
        "terminals and dashboards")


def test_a_segment_or_interest_name_that_would_print_as_something_else_is_refused(
        tmp_path: Path) -> None:
    # Validated, and reached the terminal as written in `report`: a colour, a new line.
    assert told(tmp_path, 'segments:\n  "a\\e[31mRED\\nline": {when: {device.type: mobile}}\n'
                          '  "vip\\u202e": {when: {device.type: mobile}}\n'
                          '  " ": {when: {device.type: mobile}}\n'
                          "  café lovers: {when: {device.type: mobile}}\n"
                          "  Big-Spenders_2026.q1: {when: {device.type: mobile}}\n"
                          'interests:\n  "run\\tning": ["/running"]\n'
                          "  trail running: [/trail]\n") == [
        (2, f"segment 'a\\x1b[31mRED\\nline': {RULE}"), (3, f"segment 'vip\\u202e': {RULE}"),
        (4, "a segment needs a name"), (8, f"interest 'run\\tning': {RULE}")]
