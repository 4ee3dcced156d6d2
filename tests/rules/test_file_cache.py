from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_personalizer.errors import RuleError
from edge_personalizer.rules.book import RuleBook, check_rules
from edge_personalizer.rules.file_cache import RuleCache
from edge_personalizer.rules.model import RuleSet

DEMO = Path(__file__).resolve().parents[2] / "rules"

CAMPAIGN = """rules:
  - name: {prefix}-fb
    when:
      referral.source: facebook
      segment: runner
    then:
      hero: fragments/hero-facebook.html
  - name: {prefix}-de
    priority: 2
    when:
      geo.country: DE
      profile.interests.running: {{gte: 0.5}}
    then:
      banner:
        html: "<p>Hallo {{{{ geo.city | default: \\"du\\" }}}}</p>"
"""


def _directory(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(DEMO, directory)
    for name in ("spring", "summer", "autumn"):
        (directory / f"{name}.yaml").write_text(CAMPAIGN.format(prefix=name))
    return directory


def _same(cached: RuleSet, fresh: RuleSet) -> None:
    """Equal rule sets (the index's field readers are functions made anew each load)."""
    assert cached.rules == fresh.rules
    assert (cached.version, cached.slots, cached.experiments, cached.interests, cached.goals,
            cached.redirects, cached.file_count, cached.fields, cached.vary) == \
        (fresh.version, fresh.slots, fresh.experiments, fresh.interests, fresh.goals,
         fresh.redirects, fresh.file_count, fresh.fields, fresh.vary)
    assert [(g.fields, dict(g.ranks)) for g in cached.index.groups] == \
        [(g.fields, dict(g.ranks)) for g in fresh.index.groups]
    assert cached.index.unindexed == fresh.index.unindexed


def _errors(errors: list[RuleError]) -> list[str]:
    return [str(e) for e in errors]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_reload_with_nothing_changed_gives_the_same_rules(tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    first = cache.load()
    assert not first.errors and len(first.ruleset.rules) > 6
    assert (first.read, first.compiled) == (7, 4)   # every file read; those with rules compiled
    again = cache.load()
    assert again.ruleset is first.ruleset and again.read == again.compiled == 0
    _same(cache.load().ruleset, check_rules(directory)[0])


def test_only_the_changed_file_is_compiled_again(tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    before = {r.name: r for r in cache.load().ruleset.rules}
    _edit(directory / "summer.yaml", "geo.country: DE", "geo.country: AT")
    loaded = cache.load()
    assert not loaded.errors
    after = {r.name: r for r in loaded.ruleset.rules}
    assert after["spring-de"].condition is before["spring-de"].condition   # reused
    assert after["summer-de"].condition != before["summer-de"].condition
    _same(loaded.ruleset, check_rules(directory)[0])


def _rename_slot(directory: Path) -> None:
    _edit(directory / "slots.yaml", "  banner:", "  top-banner:")


def _change_segment(directory: Path) -> None:
    _edit(directory / "audiences.yaml", "referral.medium: social", "referral.medium: email")


def _change_fragment(directory: Path) -> None:
    (directory / "fragments" / "hero-facebook.html").write_text("<h1>{{ geo.country }}</h1>")


def _remove_fragment(directory: Path) -> None:
    (directory / "fragments" / "hero-facebook.html").unlink()


def _remove_interest(directory: Path) -> None:
    _edit(directory / "slots.yaml", "  running: [", "  walking: [")


def _move_interests(directory: Path) -> None:
    slots = directory / "slots.yaml"
    text = slots.read_text()
    at = text.index("interests:")
    slots.write_text(text[:at])
    (directory / "zz-interests.yaml").write_text(text[at:])


def _change_slot_selector(directory: Path) -> None:
    _edit(directory / "slots.yaml", "hero: {tag: section}", "hero: {tag: div}\n  unused: {}")


@pytest.mark.parametrize("change", [_rename_slot, _change_segment, _change_fragment,
                                    _remove_fragment, _remove_interest, _move_interests,
                                    _change_slot_selector])
def test_a_change_in_what_rules_refer_to_gives_what_a_fresh_load_gives(
        tmp_path: Path, change: Callable[[Path], None]) -> None:
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    before = cache.load()
    assert not before.errors
    change(directory)
    fresh, fresh_errors = check_rules(directory)
    loaded = cache.load()
    assert _errors(loaded.errors) == _errors(fresh_errors)
    _same(loaded.ruleset, fresh)


def test_a_segment_change_reaches_the_rules_that_name_it(tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    before = {r.name: r for r in cache.load().ruleset.rules}
    _edit(directory / "audiences.yaml", "profile.interests.running: {gte: 0.5}",
          "profile.interests.running: {gte: 0.9}")
    after = {r.name: r for r in cache.load().ruleset.rules}
    assert after["spring-fb"].condition != before["spring-fb"].condition
    assert "0.9" in repr(after["spring-fb"].condition)


def test_errors_of_a_reused_file_keep_their_file_and_line(tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    _edit(directory / "autumn.yaml", "geo.country: DE", "geo.countyr: DE")
    (directory / "winter.yaml").write_text(
        "rules:\n  - name: spring-fb\n    then: {hero: x}\n"        # a name used before
        "  - name: loop-a\n    when: {request.path: /a}\n    then: {redirect: /b}\n"
        "  - name: loop-b\n    when: {request.path: /b}\n    then:\n      redirect: /a\n")
    cache = RuleCache(directory)
    first = _errors(cache.load().errors)
    autumn, winter = directory / "autumn.yaml", directory / "winter.yaml"
    assert first == [
        f"{autumn}:11:7: rule 'autumn-de': unknown field 'geo.countyr'; did you mean "
        "'geo.country'?",
        f"{winter}:2:11: rule 'spring-fb': the name is already used by the rule at "
        f"{directory / 'spring.yaml'}:2",
        f"{winter}:6:22: rule 'loop-a': redirects go round in a circle: loop-a (to /b) -> "
        "loop-b (to /a) -> loop-a; a visitor would never arrive"]
    # Another file changes: these two are reused, not read again, and say the same.
    _edit(directory / "summer.yaml", "geo.country: DE", "geo.country: AT")
    assert _errors(cache.load().errors) == first
    assert _errors(check_rules(directory)[1]) == first


def test_only_the_current_files_are_kept(tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    cache.load()
    files = len(list(directory.glob("*.yaml")))
    assert len(cache) == files
    for round_ in range(5):   # each save is a new file content; only the last is kept
        _edit(directory / "spring.yaml", f"spring-de{'x' * round_}\n",
              f"spring-de{'x' * (round_ + 1)}\n")
        cache.load()
        assert len(cache) == files
    (directory / "autumn.yaml").unlink()
    (directory / "summer.yaml").unlink()
    assert not cache.load().errors
    assert len(cache) == files - 2


def test_the_book_reuses_its_cache_across_a_bad_reload(tmp_path: Path) -> None:
    directory = _directory(tmp_path)
    book = RuleBook(directory)
    good = book.current
    spring = {r.name: r for r in good.rules}["spring-de"]
    _edit(directory / "summer.yaml", "geo.country: DE", "geo.countyr: DE")
    assert book.reload() is False and book.current is good
    assert book.last_error is not None and "summer.yaml:11:7:" in book.last_error
    _edit(directory / "summer.yaml", "geo.countyr: DE", "geo.country: NL")
    assert book.reload() is True and book.current is not good
    assert {r.name: r for r in book.current.rules}["spring-de"].condition \
        is spring.condition
    _same(book.current, check_rules(directory)[0])


def test_files_that_cannot_be_read_count_among_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("slots: {hero: {}}\n")
    (tmp_path / "b.yaml").write_bytes("rules: []\n# \u00e9t\u00e9\n".encode("cp1252"))
    (tmp_path / "Promo.YAML").write_text("rules: []\n")
    loaded = RuleCache(tmp_path).load()
    assert loaded.ruleset.file_count == 3
    assert [e.source.name for e in loaded.errors] == ["Promo.YAML", "b.yaml"]


@pytest.mark.parametrize("make", [
    lambda d: (d / "Promo.YAML").write_text("rules: []\n"),
    lambda d: (d / "w.yaml").write_bytes(b"rules: []\n# caf\xe9\n"),
    lambda d: (d / "fragments" / "up").symlink_to(".."),
], ids=["name", "encoding", "link-loop"])
def test_a_file_that_could_not_be_read_removed_loads_again(
        tmp_path: Path, make: Callable[[Path], object]) -> None:
    # Such a file is no part of the version: removed, the version is the refused load's,
    # which was handed back as if nothing had changed.
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    make(directory)
    assert cache.load().errors
    for bad in ("Promo.YAML", "w.yaml", "fragments/up"):
        if (directory / bad).is_symlink() or (directory / bad).exists():
            (directory / bad).unlink()
    loaded = cache.load()
    assert not loaded.errors and loaded.read == 0   # the files read before are not read again


def test_a_directory_left_with_no_rule_file_is_refused(tmp_path: Path) -> None:
    # What a directory removed and made anew looks like until it is filled.
    directory = _directory(tmp_path)
    cache = RuleCache(directory)
    assert not cache.load().errors
    for path in directory.glob("*.yaml"):
        path.unlink()
    assert _errors(cache.load().errors) == [
        f"{directory}: the rules directory holds no rule file now, so it was not loaded (made "
        "anew and not filled yet?); to serve no rules, leave one file with `rules: []`"]
    (directory / "none.yaml").write_text("rules: []\n")
    loaded = cache.load()
    assert not loaded.errors and loaded.ruleset.rules == ()


def test_rules_showing_a_slot_in_error_are_compiled_again_once_it_is_gone(
        tmp_path: Path) -> None:
    # While the slot's own definition is wrong, rules showing it are dropped without an
    # error of their own; once it is removed, they must be told it is unknown, not reused.
    (tmp_path / "slots.yaml").write_text("slots: {hero: {tags: h1}}\n")
    (tmp_path / "rules.yaml").write_text("rules:\n  - {name: r, then: {hero: x}}\n")
    cache = RuleCache(tmp_path)
    assert [e.reason.split(";")[0] for e in cache.load().errors] == [
        "slot 'hero': unknown key 'tags'"]
    (tmp_path / "slots.yaml").write_text("slots: {banner: {}}\n")
    assert [e.reason.split(";")[0] for e in cache.load().errors] == [
        "rule 'r': unknown slot 'hero'"]


def test_errors_come_file_by_file_in_the_order_the_files_are_read(tmp_path: Path) -> None:
    # A folder is read before a file whose name sorts after it by character ("a" before
    # "a-b.yaml"), and a file's unreadable YAML takes its place among the others' errors.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - {name: 'r 1', then: {hero: x}}\n")
    (tmp_path / "a-b.yaml").write_text("rules:\n  - {name: r2, then: {hro: x}}\n")
    (tmp_path / "b.yaml").write_text("rules: [\n")
    (tmp_path / "c.yaml").write_text("rules:\n  - {name: r3, priority: high, then: {hero: x}}\n")
    _, errors = check_rules(tmp_path)
    assert [e.source.relative_to(tmp_path).as_posix() for e in errors] == [
        "a/x.yaml", "a-b.yaml", "b.yaml", "c.yaml"], errors
