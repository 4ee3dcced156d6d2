from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_personalizer.errors import RuleError
from edge_personalizer.rules import book as book_module
from edge_personalizer.rules.book import RuleBook, check_rules
from edge_personalizer.rules.evaluator import decide, explain
from edge_personalizer.rules.file_cache import Loaded, RuleCache
from edge_personalizer.rules.model import RuleSet

from ..factories import make_visitor
from ..servers import Server, start_proxy

SLOTS = "slots:\n  hero: {}\n"
RULE = "  - name: {name}\n    then: {{hero: '<b>{name}</b>'}}\n"


def write_rules(directory: Path, *names: str, extra: str = "") -> None:
    text = SLOTS + "rules:\n" + "".join(RULE.format(name=n) for n in names) + extra
    (directory / "rules.yaml").write_text(text)


def test_invalid_reload_keeps_the_last_good_set(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    outcomes: list[bool] = []
    book = RuleBook(tmp_path, on_reload=outcomes.append)
    good = book.current
    (tmp_path / "rules.yaml").write_text(SLOTS + "rules:\n  - name: a\n    then: {heor: x}\n")
    assert book.reload() is False
    assert book.current is good
    assert book.last_error is not None and "rules.yaml:5:12" in book.last_error
    assert "did you mean 'hero'" in book.last_error
    (tmp_path / "rules.yaml").write_text(
        SLOTS + "rules:\n  - name: a\n    then: {heor: x}\n  - name: b\n    then: {hro: x}\n")
    assert book.reload() is False
    assert [line.split(": ", 1)[0].rsplit(":", 2)[1] for line in book.last_error.splitlines()] \
        == ["5", "7"]   # each error on a line of its own (health, dashboard, log alike)
    write_rules(tmp_path, "a", "b")
    assert book.reload() is True
    assert [r.name for r in book.current.rules] == ["a", "b"] and book.last_error is None
    assert outcomes == [False, False, True]


def test_a_rule_setting_a_cookie_of_the_servers_own_is_refused(tmp_path: Path) -> None:
    # The consent cookie says yes before a profile is kept: a rule setting it would give
    # every visitor it matches a consent they never gave.
    own = {"visitor": "profile_cookie", "cc_consent": "consent_cookie"}
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path, own_cookies=own)
    good = book.current
    write_rules(tmp_path, "a", extra="  - name: b\n    then: {cookies: {cc_consent: yes}}\n")
    assert book.reload() is False and book.current is good
    # Named at the cookie, where it was written.
    assert book.last_error == (f"{tmp_path / 'rules.yaml'}:7:22: rule 'b': cookies: "
                               "'cc_consent' is the cookie this server names in "
                               "consent_cookie; choose another name")
    with pytest.raises(RuleError, match="'visitor' is the cookie this server names in "
                                        "profile_cookie"):
        write_rules(tmp_path, "a", extra="  - name: b\n    then: {cookies: {visitor: x}}\n")
        RuleBook(tmp_path, own_cookies=own)
    # A rule whose slots go by a field is one mistake, told once.
    write_rules(tmp_path, "a", extra="  - name: b\n    then:\n      cookies: {visitor: x}\n"
                                     "      hero:\n        by: device.type\n"
                                     "        variants: {mobile: m, desktop: d}\n")
    with pytest.raises(RuleError) as refused:
        RuleBook(tmp_path, own_cookies=own)
    assert str(refused.value).count("'visitor' is the cookie") == 1
    # Cookie names are told apart by case, and only the server's own are refused.
    write_rules(tmp_path, "a", extra="  - name: b\n    then: {cookies: {Visitor: x}}\n")
    assert [r.name for r in RuleBook(tmp_path, own_cookies=own).current.rules] == ["a", "b"]


def test_a_rule_showing_a_hidden_fragment_keeps_the_last_good_set(tmp_path: Path) -> None:
    # An edit to a hidden file changes neither the rules' version nor what is served, so
    # a rule that would show one is refused and what served before goes on serving.
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    good = book.current
    (tmp_path / ".drafts").mkdir()
    (tmp_path / ".drafts" / "hero.html").write_text("<b>draft</b>")
    write_rules(tmp_path, "a", extra="  - name: b\n    then: {hero: .drafts/hero.html}\n")
    assert book.reload() is False
    assert book.current is good
    assert book.last_error is not None and "rules.yaml:7:18" in book.last_error
    assert "'.drafts/hero.html' is hidden" in book.last_error


def test_an_older_load_is_never_swapped_in_over_a_newer_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The watcher's thread reads version "a, b" and is slow to compile it; meanwhile the
    # file changes again and a SIGHUP reload loads "a, b, c". The newer set is served.
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    compile_files = book_module._read_and_compile
    first_read, finish_first = threading.Event(), threading.Event()

    def slow_first(cache: RuleCache) -> Loaded:
        loaded = compile_files(cache)
        if not first_read.is_set():
            first_read.set()
            finish_first.wait(5)
        return loaded

    monkeypatch.setattr(book_module, "_read_and_compile", slow_first)
    write_rules(tmp_path, "a", "b")
    watcher = threading.Thread(target=book.reload)
    watcher.start()
    assert first_read.wait(5)
    write_rules(tmp_path, "a", "b", "c")
    hangup = threading.Thread(target=book.reload)
    hangup.start()
    hangup.join(1)   # (it would be done by now if it did not wait for the watcher)
    finish_first.set()
    watcher.join(5)
    hangup.join(5)
    assert [r.name for r in book.current.rules] == ["a", "b", "c"]
    assert not book.changed_on_disk()


def test_changes_on_disk_are_noticed(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    assert not book.changed_on_disk()
    write_rules(tmp_path, "a", "b")
    assert book.changed_on_disk()
    book.reload()
    assert not book.changed_on_disk()


def test_hidden_files_and_folders_are_not_watched(tmp_path: Path) -> None:
    # A rules directory that is a checkout: fetching into .git, or an editor's swap file,
    # is no edit of the rules (and a big .git is not walked every second).
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "ab12").write_bytes(b"x")
    (tmp_path / ".rules.yaml.swp").write_bytes(b"x")
    assert not book.changed_on_disk()
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hero.html").write_text("<b>new</b>")
    assert book.changed_on_disk()


def test_invalid_rules_at_startup_fail_fast(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: {\n")
    with pytest.raises(RuleError, match="bad.yaml"):
        RuleBook(tmp_path)


def test_files_still_being_written_are_not_loaded(tmp_path: Path) -> None:
    # issue 20, item 16: reload only once two looks agree
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    assert book.look() is False                          # nothing changed
    write_rules(tmp_path, "a", "b")                      # half-way through a save...
    assert book.look() is False
    write_rules(tmp_path, "a", "b", "c")                 # ...still writing
    assert book.look() is False and [r.name for r in book.current.rules] == ["a"]
    assert book.look() is True                           # two looks agree: load it
    assert [r.name for r in book.current.rules] == ["a", "b", "c"]
    assert book.look() is False


def test_a_file_emptied_by_a_save_under_way_keeps_the_last_good_rules(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    (tmp_path / "more.yaml").write_text("rules:\n  - {name: m, then: {hero: x}}\n")
    book = RuleBook(tmp_path)
    good = book.current
    (tmp_path / "more.yaml").write_text("")
    assert book.reload() is False and book.current is good
    assert book.last_error is not None and "more.yaml" in book.last_error
    assert "empty but held rules" in book.last_error
    (tmp_path / "more.yaml").write_text("rules: []\n")   # emptied on purpose
    assert book.reload() is True and [r.name for r in book.current.rules] == ["a"]
    (tmp_path / "more.yaml").write_text("")              # it held nothing: empty is fine
    assert book.reload() is True


def test_any_broken_file_keeps_the_last_good_rules_and_the_error(tmp_path: Path) -> None:
    # issue 18, bug 1: a date YAML cannot make used to escape as a ValueError
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    good = book.current
    write_rules(tmp_path, "a", extra="    schedule: {start: 2026-11-31}\n")
    assert book.reload() is False and book.current is good
    assert book.last_error is not None and "rules.yaml:6:" in book.last_error
    write_rules(tmp_path, "b")
    assert book.reload() is True and book.last_error is None


@pytest.mark.anyio
async def test_the_watcher_loads_a_settled_change_and_survives_a_broken_one(
        tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(book.watch, 0.02)
        write_rules(tmp_path, "a", extra="    schedule: {start: 2026-11-31}\n")
        with anyio.fail_after(10):
            while book.last_error is None:
                await anyio.sleep(0.01)
        write_rules(tmp_path, "b")
        with anyio.fail_after(10):
            while [r.name for r in book.current.rules] != ["b"]:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()


def test_a_fault_of_the_loader_keeps_the_last_good_rules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever fails while loading (the disk, a bug), the served set stays and says why.
    write_rules(tmp_path, "a")
    outcomes: list[bool] = []
    book = RuleBook(tmp_path, on_reload=outcomes.append)
    good = book.current

    def broken(cache: RuleCache) -> Loaded:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(book_module, "_read_and_compile", broken)
        assert book.reload() is False
    assert book.current is good and outcomes == [False]
    assert book.last_error is not None and "the loader failed" in book.last_error
    assert "Input/output error" in book.last_error
    write_rules(tmp_path, "b")
    assert book.reload() is True and book.last_error is None


def test_a_syntax_error_is_not_also_called_an_emptied_file(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    (tmp_path / "rules.yaml").write_text("rules: [{name: a\n")
    assert book.reload() is False
    assert book.last_error is not None and "rules.yaml:" in book.last_error
    assert "empty but held rules" not in book.last_error


def test_a_worker_starting_while_the_directory_is_refused_serves_its_servers_rules(
        tmp_path: Path) -> None:
    # A worker forked from its server (one replaced after a crash) starts from the server's
    # book: while the directory holds a refused edit, what the server serves serves there
    # too, and the error is reported, instead of the worker failing to start again and
    # again or serving older rules than the others.
    write_rules(tmp_path, "a")
    server = RuleBook(tmp_path)
    write_rules(tmp_path, "a", "b")
    assert server.reload() is True
    write_rules(tmp_path, "a", extra="    then: {heor: x}\n")
    assert server.reload() is False
    with pytest.raises(RuleError):
        RuleBook(tmp_path)   # a server itself still refuses to start on it
    worker = RuleBook(tmp_path, inherited=server)
    assert worker.current is server.current
    assert [r.name for r in worker.current.rules] == ["a", "b"]
    assert worker.last_error is not None and "rules.yaml:6:5: key 'then' appears twice" \
        in worker.last_error
    write_rules(tmp_path, "c")
    assert worker.reload() is True and worker.last_error is None
    assert [r.name for r in worker.current.rules] == ["c"]


def test_a_server_book_follows_the_directory_in_its_own_thread(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    stop = book.watch_in_thread(0.02)
    try:
        write_rules(tmp_path, "b")
        deadline = time.monotonic() + 10
        while [r.name for r in book.current.rules] != ["b"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        stop.set()


@pytest.mark.anyio
async def test_the_watcher_survives_a_fault_in_a_look(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    looks = 0
    look = book.look

    def faulty_once() -> bool:
        nonlocal looks
        looks += 1
        if looks == 1:
            raise PermissionError(13, "Permission denied")
        return look()

    monkeypatch.setattr(book, "look", faulty_once)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(book.watch, 0.02)
        write_rules(tmp_path, "b")
        with anyio.fail_after(10):
            while [r.name for r in book.current.rules] != ["b"]:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert looks > 1


# Fuzzing (issue 18, bug 1): whatever is in the rule files, checking them gives our own
# errors, each naming its file, and whatever loads can decide for a visitor.

DEMO = Path(__file__).resolve().parents[2] / "rules"
WORDS = ["slots", "rules", "segments", "interests", "experiments", "name", "when", "then",
         "priority", "schedule", "traffic", "start", "end", "days", "hours", "hero", "banner",
         "redirect", "headers", "cookies", "head", "body_end", "html", "text", "file",
         "action", "attribute", "value", "class", "set_attribute", "remove", "variants",
         "weight", "holdout", "audience", "slot", "segment", "all", "any", "not", "in",
         "equals", "between", "matches", "exists", "gte", "contains", "prefix", "geo.country",
         "request.path", "profile.visits", "time.time_zone", "device.type", "GB", "mobile",
         "2026-11-31", "2026-02-28", "{{ geo.city }}", "{{ request.query.q }}", "<script>",
         "href", "onclick", "javascript:", "/landing/a", "fragments/hero-running.html",
         "&a", "*a", "<<:", "!!binary", "!!str", "? ", "- ", ": ", "{", "}", "[", "]", "'",
         '"', "#", "|", ">", "\n", "\n  ", "\n    ", "\t", "\x00", "\ud800", "1e999", ".nan",
         "-1", "0x1F", "true", "null", "~", "%"]

# Values YAML reads in ways of its own, written into the dumped text as they are.
RAW = ["2026-11-31", "2026-02-29 10:00:00", "9" * 5000, "1e999", ".nan", "!!binary x==",
       "&a [*a]", "!!set {a}", "0o17", "-.inf", "{a: 1, a: 2}", '"\\ud800"', "!!timestamp x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.sampled_from(WORDS), st.text(max_size=12), st.dates(),
                    st.integers(0, len(RAW) - 1).map(lambda i: f"RAWVALUE{i}Z"))
values = st.one_of(scalars, st.lists(scalars, max_size=3))
names = st.one_of(st.sampled_from(["a", "b", "hero", "x y", "-bad", ""]), scalars)
fields = st.sampled_from(["geo.country", "geo.contry", "device.type", "request.path",
                          "request.query.q", "request.header.X-A", "profile.visits",
                          "profile.interests.running", "profile.interests.nope",
                          "time.time_zone", "language.tags", "equals", "segment", "nope"])
operators = st.dictionaries(st.sampled_from(["equals", "in", "not", "gt", "between", "contains",
                                             "prefix", "matches", "exists", "is"]),
                            values, max_size=3)
conditions = st.recursive(
    st.dictionaries(fields, st.one_of(values, operators), min_size=0, max_size=3),
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(["all", "any"]), st.lists(inner, max_size=3),
                        max_size=2),
        st.dictionaries(st.just("not"), inner, max_size=1), inner),
    max_leaves=8)
template_text = st.lists(st.sampled_from(
    ["<b>", "</b>", "<a href=\"", "\">", "{{ geo.city }}", "{{ request.query.q | default: "
     "'x' }}", "{{ nope }}", "<script>", "onclick=\"", "javascript:", "x", "'", "\"", "<",
     "{{", "fragments/hero-running.html", "missing.html"]), max_size=6).map("".join)
variant = st.one_of(template_text, st.dictionaries(
    st.sampled_from(["action", "html", "text", "file", "attribute", "value", "class", "nope"]),
    st.one_of(template_text, st.sampled_from(["set_attribute", "text", "remove", "href",
                                              "onload", "style", "add_class"]), scalars),
    max_size=4))
then = st.dictionaries(
    st.sampled_from(["hero", "banner", "head", "body_end", "nope", "redirect", "headers",
                     "cookies"]),
    st.one_of(variant, st.sampled_from(["/landing/a", "/landing/b", "//x", "http://x/a"]),
              st.dictionaries(st.sampled_from(["to", "status", "keep_query", "X-A", "promo",
                                               "Set-Cookie", "a b"]), scalars, max_size=3)),
    max_size=4)
rule = st.fixed_dictionaries({"name": names}, optional={
    "when": conditions, "then": then, "priority": scalars, "traffic": scalars,
    "schedule": st.dictionaries(st.sampled_from(["start", "end", "days", "hours", "nope"]),
                                values, max_size=3),
    "nope": scalars})
experiment = st.fixed_dictionaries({"name": names, "slot": st.sampled_from(["hero", "nope"]),
                                    "variants": st.dictionaries(names, st.one_of(
                                        st.dictionaries(st.sampled_from(["weight", "html",
                                                                         "hero"]),
                                                        st.one_of(scalars, template_text),
                                                        max_size=2), scalars), max_size=3)},
                                   optional={"audience": conditions, "holdout": scalars})
rule_documents = st.fixed_dictionaries(
    {"slots": st.just({"hero": None, "banner": {"tag": "div"}})},
    optional={"rules": st.lists(rule, max_size=4), "experiments": st.lists(experiment,
                                                                          max_size=2),
              "segments": st.dictionaries(names, st.fixed_dictionaries({"when": conditions}),
                                          max_size=2),
              "interests": st.dictionaries(names, values, max_size=2)})
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(WORDS), inner, max_size=4)),
    max_leaves=30)
SLOW = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _dumped(document: object) -> str:
    text = yaml.safe_dump(document, allow_unicode=True)
    for i, raw in enumerate(RAW):
        text = text.replace(f"RAWVALUE{i}Z", raw)
    return text


def _check_only_our_errors(files: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        shutil.copytree(DEMO / "fragments", directory / "fragments")
        for file_name, text in files.items():
            (directory / file_name).write_text(text, encoding="utf-8", errors="surrogatepass")
        ruleset, errors = check_rules(directory)   # raises nothing of its own accord
        assert all(isinstance(e, RuleError) and e.source is not None for e in errors)
        if not errors:
            for path in ("/", "/landing/a", "/running"):
                visitor = make_visitor(path, ip="81.2.69.142", query="q=x")
                decide(ruleset, visitor)
                explain(ruleset, visitor)


@SLOW
@given(rule_documents)
def test_random_rule_files_give_our_errors_only(document: object) -> None:
    _check_only_our_errors({"random.yaml": _dumped(document)})


@SLOW
@given(documents)
def test_random_documents_give_our_errors_only(document: object) -> None:
    _check_only_our_errors({"random.yaml": _dumped(document)})


@SLOW
@given(st.lists(st.sampled_from(WORDS), max_size=40).map("".join))
def test_random_text_gives_our_errors_only(text: str) -> None:
    _check_only_our_errors({"random.yaml": text})


@SLOW
@given(st.data())
def test_random_edits_of_the_demo_rules_give_our_errors_only(data: st.DataObject) -> None:
    files = {path.name: path.read_text() for path in sorted(DEMO.glob("*.yaml"))}
    for _ in range(data.draw(st.integers(1, 4))):
        name = data.draw(st.sampled_from(sorted(files)))
        text = files[name]
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 40)))
        kind = data.draw(st.sampled_from(["cut", "insert", "replace", "copy"]))
        word = data.draw(st.sampled_from(WORDS))
        if kind == "cut":
            text = text[:start] + text[end:]
        elif kind == "insert":
            text = text[:start] + word + text[start:]
        elif kind == "replace":
            text = text[:start] + word + text[end:]
        else:
            text = text[:end] + text[start:end] + text[end:]
        files[name] = text
    _check_only_our_errors(files)


def test_validate_prints_a_broken_date_as_file_and_line(tmp_path: Path) -> None:
    # issue 18, bug 1, through the real command: a message, exit 1, no traceback
    import subprocess
    import sys

    (tmp_path / "a.yaml").write_text(SLOTS + "rules:\n  - name: x\n"
                                     "    schedule: {start: 2026-11-31}\n    then: {hero: hi}\n")
    done = subprocess.run([sys.executable, "-m", "edge_personalizer", "validate", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output
    assert f"{tmp_path / 'a.yaml'}:5:23:" in output and "2026-11-31" in output


def test_a_compile_mistake_deep_in_a_big_file_is_named_at_its_line(tmp_path: Path) -> None:
    lines = ["slots: {hero: {}}", "rules:"]
    for i in range(3_000):
        field = "geo.countyr" if i == 2_500 else "geo.country"
        lines += [f"  - name: rule-{i}", "    when:", f"      {field}: DE",
                  "    then:", f"      hero: \"<b>{i}</b>\""]
    (tmp_path / "big.yaml").write_text("\n".join(lines) + "\n")
    _, errors = check_rules(tmp_path)
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'big.yaml'}:{3 + 5 * 2_500 + 2}:7: rule 'rule-2500': unknown field "
        "'geo.countyr'; did you mean 'geo.country'?"]


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_cycle_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    (tmp_path / "r.yaml").write_text("slots: {hero: {}}\nrules: [{name: a, then: {hero: x}}]\n")
    (gc.enable if enabled else gc.disable)()
    try:
        check_rules(tmp_path)
        (tmp_path / "r.yaml").write_text("rules: [oops\n")
        assert check_rules(tmp_path)[1]
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


# Deploys that swap files without changing what the watcher used to look at: a folder link
# pointed elsewhere, files unpacked with the sizes and times they had.

def _hero_text(book: RuleBook) -> str:
    template = book.current.rules[0].slots["hero"].template
    assert template is not None
    return "".join(part for part in template.parts if isinstance(part, str))


def _relinked_deploy(rules: Path) -> None:
    """Rules in a linked folder; fragments -> assets/v1, whose hero has the size and
    modification time of assets/v2's."""
    (rules / "assets" / "v1").mkdir(parents=True)
    (rules / "assets" / "v2").mkdir()
    (rules / "assets" / "v1" / "hero.html").write_text("<b>one</b>")
    (rules / "assets" / "v2" / "hero.html").write_text("<b>two</b>")
    os.utime(rules / "assets" / "v2" / "hero.html", ns=(10**18, 10**18))
    os.utime(rules / "assets" / "v1" / "hero.html", ns=(10**18, 10**18))
    (rules / "fragments").symlink_to("assets/v1")
    (rules.parent / "campaigns").mkdir()
    (rules.parent / "campaigns" / "hero.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - {name: hero, then: {hero: fragments/hero.html}}\n")
    (rules / "campaigns").symlink_to(rules.parent / "campaigns")


def _relink(link: Path, target: str) -> None:
    """Point the link elsewhere at once, as a deploy does (a new link renamed over it)."""
    (link.parent / "new-link").symlink_to(target)
    os.replace(link.parent / "new-link", link)


def test_a_relinked_fragments_folder_is_served(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    _relinked_deploy(rules)
    book = RuleBook(rules)
    assert _hero_text(book) == "<b>one</b>"
    _relink(rules / "fragments", "assets/v2")
    assert book.look() is False   # not settled yet
    assert book.look() is True and book.last_error is None
    assert _hero_text(book) == "<b>two</b>"


@pytest.mark.parametrize("in_place", [True, False])
def test_an_edit_that_keeps_size_and_modification_time_is_reloaded(
        tmp_path: Path, in_place: bool) -> None:
    write_rules(tmp_path, "a")
    path = tmp_path / "rules.yaml"
    was = path.stat()
    book = RuleBook(tmp_path)
    time.sleep(0.05)   # past the file system clock's tick: the change time differs
    if in_place:   # an editor, then `touch -r` of the old file
        path.write_text(path.read_text().replace("<b>a</b>", "<b>z</b>"))
    else:          # unpacked from a reproducible tarball: a new file, the same times
        (tmp_path / "new").write_text(path.read_text().replace("<b>a</b>", "<b>z</b>"))
        os.replace(tmp_path / "new", path)
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (was.st_size, was.st_mtime_ns)
    assert book.changed_on_disk()
    book.look()
    assert book.look() is True and _hero_text(book) == "<b>z</b>"


def test_a_folder_link_loop_is_looked_at_once_and_refused(tmp_path: Path) -> None:
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("..")
    book.look()
    assert book.look() is True
    assert book.last_error == (f"{tmp_path / 'sub' / 'up'}: the folder link leads back to a "
                               "folder it is in (a loop): remove it")
    assert [r.name for r in book.current.rules] == ["a"]


def test_the_server_serves_a_relinked_fragments_folder(origin: Server, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    _relinked_deploy(rules)
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        env={"EP_RULES_WATCH_INTERVAL": "0.1"})
    try:
        def hero() -> str:
            page = httpx.get(proxy.url + "/slotted/x", headers={"accept": "text/html"},
                             timeout=10).text
            return page.split('data-ep-slot="hero">')[1].split("</section>")[0]

        assert hero() == "<b>one</b>"
        _relink(rules / "fragments", "assets/v2")
        deadline = time.monotonic() + 20
        while hero() != "<b>two</b>":
            assert time.monotonic() < deadline, proxy.log()[-3000:]
            time.sleep(0.1)
        while "rules reloaded" not in proxy.log():
            assert time.monotonic() < deadline, proxy.log()[-3000:]
            time.sleep(0.1)
    finally:
        proxy.stop()


class _SavedDuringLoad(RuleBook):
    """A rule book whose directory gets `bad` saved between a reload's look and its read
    (what a deploy copying files while a worker reloads does)."""

    bad: Path | None = None

    def _load(self) -> RuleSet:
        if self.bad is not None:
            self.bad.write_bytes(b"rules: []\n# caf\xe9\n")
            self.bad = None
        return super()._load()


def test_a_file_saved_while_rules_load_is_looked_at_again_once_removed(
        tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("slots: {hero: {}}\nrules:\n"
                                        "  - {name: a, then: {hero: one}}\n")
    book = _SavedDuringLoad(tmp_path)
    first = book.current.version
    (tmp_path / "site.yaml").write_text("slots: {hero: {}}\nrules:\n"
                                        "  - {name: a, then: {hero: two}}\n")
    book.bad = tmp_path / "w.yaml"
    assert book.reload() is False and book.last_error is not None   # it read w.yaml
    (tmp_path / "w.yaml").unlink()   # the directory is now what the reload's look saw
    book.look()
    assert book.look() is True
    assert book.last_error is None and book.current.version != first   # "two" serves


def test_a_reload_that_changes_nothing_says_so_and_an_undone_refusal_says_it_is_gone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A SIGHUP with nothing changed logged nothing, and an edit undone after a refusal left
    # the refusal's ERROR as the log's last word about the rules.
    write_rules(tmp_path, "a")
    book = RuleBook(tmp_path)
    caplog.set_level(logging.INFO, logger="edge_personalizer.rules.book")
    assert book.reload() is True
    assert f"rules unchanged: version {book.current.version} keeps serving" in caplog.text
    assert "error is gone" not in caplog.text
    good = (tmp_path / "rules.yaml").read_text()
    write_rules(tmp_path, "a", extra="    then: {heor: x}\n")
    assert book.reload() is False
    (tmp_path / "rules.yaml").write_text(good)
    caplog.clear()
    assert book.reload() is True and book.last_error is None
    assert "keeps serving; the last reload's error is gone" in caplog.text
