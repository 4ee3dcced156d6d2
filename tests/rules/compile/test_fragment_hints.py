"""What a fragment path that names no file is told (the whole message: test_actions)."""

from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.compile.fragment_hints import near_fragment


def _rules(tmp_path: Path, *files: str) -> Path:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<b>x</b>")
    return tmp_path


def test_a_near_miss_in_its_folder_is_named(tmp_path: Path) -> None:
    rules = _rules(tmp_path, "fragments/hero-sale.html", "fragments/hero-summer.html")
    assert near_fragment(rules, "fragments/hero_sale.html") == \
        "; did you mean 'fragments/hero-sale.html'?"


def test_a_name_written_without_its_folder_is_found_in_the_folders_below(
        tmp_path: Path) -> None:
    rules = _rules(tmp_path, "fragments/hero.html", "campaigns/hero.html", ".drafts/hero.html")
    assert near_fragment(rules, "hero.html") == \
        "; did you mean 'campaigns/hero.html' or 'fragments/hero.html'?"


def test_a_path_written_from_a_subfolder_s_file_is_found_below(tmp_path: Path) -> None:
    # campaigns/spring.yaml names fragments/spring.html, meaning the one beside it: paths
    # are from the rules directory.
    rules = _rules(tmp_path, "campaigns/fragments/spring.html", "fragments/other.html")
    assert near_fragment(rules, "fragments/spring.html") == \
        "; did you mean 'campaigns/fragments/spring.html'?"
    rules = _rules(tmp_path / "only", "campaigns/fragments/spring.html")
    assert near_fragment(rules, "fragments/spring.html") == \
        "; did you mean 'campaigns/fragments/spring.html'?"


def test_else_a_folder_of_few_fragments_is_listed_and_one_of_many_is_not(
        tmp_path: Path) -> None:
    rules = _rules(tmp_path, "fragments/a.html", "fragments/b.html")
    assert near_fragment(rules, "fragments/footer.html") == "; fragments/ holds a.html, b.html"
    _rules(tmp_path, *(f"fragments/page-{n}.html" for n in range(10)))
    assert near_fragment(rules, "fragments/footer.html") == ""


def test_nothing_is_said_of_folders_outside_the_rules_or_hidden(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules", ".drafts/hero.html")
    _rules(tmp_path, "outside/hero.html")
    assert near_fragment(rules, "../outside/hero.htm") == ""
    assert near_fragment(rules, ".drafts/hero.htm") == ""
    assert near_fragment(rules, "missing/hero.html") == ""
