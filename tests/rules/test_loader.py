from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_personalizer.errors import RuleError, RuleSetInvalid
from edge_personalizer.rules.loader import load_rule_directory, read_rule_directory

from .compile import told

ROOT = Path(__file__).resolve().parents[2]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_demo_rules_load() -> None:
    rule_files = load_rule_directory(ROOT / "rules")
    assert rule_files.rule_count >= 5
    assert {f.path.name for f in rule_files.files} >= {"audiences.yaml", "slots.yaml"}


def test_every_value_knows_its_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: x\n    when:\n      geo.country: GB\n")
    rule_file = load_rule_directory(tmp_path).files[0]
    assert rule_file.marks[("rules", 0, "when", "geo.country")] == (4, 20)
    error = rule_file.error("bad", ("rules", 0, "when", "geo.country"), owner="rule 'x'")
    assert str(error) == f"{tmp_path / 'a.yaml'}:4:20: rule 'x': bad"
    # A path that was not written points at its nearest written parent.
    assert rule_file.error("x", ("rules", 0, "then")).line == 2


def test_version_is_a_content_hash_of_rules_and_fragments(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: []\n")
    fragment = write(tmp_path, "fragments/hero.html", "<h1>a</h1>")
    first = load_rule_directory(tmp_path).version
    assert load_rule_directory(tmp_path).version == first
    fragment.write_text("<h1>b</h1>")
    second = load_rule_directory(tmp_path).version
    assert second != first
    write(tmp_path, "a.yaml", "rules: [] # changed\n")
    assert load_rule_directory(tmp_path).version not in (first, second)


def test_every_error_in_every_file_with_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: x\n    when: {referral.source: [facebook\n")
    write(tmp_path, "b.yaml", "rules: []\nsegmants: {}\n")
    write(tmp_path, "sub/c.yml", "- just a list\n")
    write(tmp_path, "d.yaml", "slots:\n  hero: {}\n  hero: {}\n")
    write(tmp_path, "ok.yaml", "segments: {}\n")
    write(tmp_path, ".hidden/ignored.yaml", "{{{{")
    _, errors = read_rule_directory(tmp_path)
    messages = [str(e) for e in errors]
    assert len(messages) == 4
    assert messages[0] == (f"{tmp_path / 'a.yaml'}:3:29: invalid YAML: a '[' opened here is "
                           "never closed")
    assert messages[1] == (f"{tmp_path / 'b.yaml'}:2:1: unknown section 'segmants'; expected one "
                           "of experiments, goals, interests, rules, segments, slots; did you "
                           "mean 'segments'?")
    assert messages[2] == f"{tmp_path / 'd.yaml'}:3:3: key 'hero' appears twice in the same mapping"
    assert messages[3].startswith(f"{tmp_path / 'sub' / 'c.yml'}:1:1: a rule file is a mapping")


def test_load_raises_with_all_errors(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "oops: 1\n")
    write(tmp_path, "b.yaml", "nope: 1\n")
    with pytest.raises(RuleSetInvalid) as raised:
        load_rule_directory(tmp_path)
    assert len(raised.value.errors) == 2
    assert "(and 1 more)" in str(raised.value)


def test_missing_directory_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="does not exist"):
        load_rule_directory(tmp_path / "nope")
    (tmp_path / "latin1.yaml").write_bytes(b"rules: []\n# caf\xe9\n")
    _, errors = read_rule_directory(tmp_path)
    assert "cannot read" in str(errors[0])


def test_empty_file_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    assert load_rule_directory(tmp_path).rule_count == 0


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "evil.yaml", "rules: !!python/object/apply:os.system ['true']\n")
    _, errors = read_rule_directory(tmp_path)
    assert errors and "invalid YAML" in str(errors[0])


@pytest.mark.parametrize("text", [
    # issue 18, bug 1: YAML reads these as dates and numbers it cannot make
    "rules:\n  - name: x\n    schedule: {start: 2026-11-31}\n",
    "rules:\n  - name: x\n    schedule:\n      start: 2026-11-31\n",
    "slots:\n  a: 2026-02-30 10:00:00\n",
    "slots:\n  a: " + "1" * 5000 + "\n",
])
def test_plain_values_yaml_cannot_make_stay_as_written(tmp_path: Path, text: str) -> None:
    # What reads them says what is wrong at their place, and the rest of the file is still
    # checked: a wrong date in a schedule hid every other mistake of its file.
    write(tmp_path, "a.yaml", text)
    files, errors = read_rule_directory(tmp_path)
    assert errors == []
    written = text.split(": ")[-1].strip().rstrip("}")
    assert written in repr(files.files[0].sections)


def test_a_wrong_date_is_told_with_the_other_mistakes_of_its_file(tmp_path: Path) -> None:
    mistakes = told(tmp_path, "slots: {hero: {}}\nrules:\n  - name: x\n"
                              "    schedule: {start: 2026-11-31, end: 2026-02-30}\n"
                              "    then: {hero: x}\n  - name: y\n"
                              "    when: {device.type: tablett, time.date: 2027-13-01}\n"
                              "    then: {hero: y}\n")
    assert [(line, said.split(": ", 1)[1]) for line, said in mistakes] == [
        (4, "'2026-11-31' is not a date (day is out of range for month); write a day as "
            "YYYY-MM-DD, e.g. 2026-12-24"),
        (4, "'2026-02-30' is not a date (day is out of range for month); write a day as "
            "YYYY-MM-DD, e.g. 2026-12-24"),
        (7, "unknown device.type 'tablett'; expected mobile, tablet, desktop, tv, bot, "
            "other; did you mean 'tablet'?"),
        (7, "time.date '2027-13-01' is no date (month must be in 1..12); write a day as "
            "YYYY-MM-DD, e.g. 2026-12-24")]


@pytest.mark.parametrize(("text", "line", "message"), [
    # a value tagged a kind it cannot be is an error, not text
    ("rules:\n  - name: x\n    priority: !!int abc\n", 3, "'abc' cannot be read"),
    ("a: &a [*a]\n", 1, "too large or nested too deeply"),
    ("a: &a\n  <<: *a\n", None, ""),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", None, "nested too deeply"),
    ("rules: !!binary notbase64===\n", 1, "invalid YAML"),
    ("rules: !!python/object:os.system {}\n", 1, "not allowed"),
])
def test_values_yaml_cannot_make_are_errors_at_their_line(
        tmp_path: Path, text: str, line: int | None, message: str) -> None:
    write(tmp_path, "a.yaml", text)
    _, errors = read_rule_directory(tmp_path)
    assert len(errors) == 1 and errors[0].source == tmp_path / "a.yaml"
    assert message in errors[0].reason and (line is None or errors[0].line == line)


def test_aliases_that_multiply_are_cut_short(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    write(tmp_path, "a.yaml", "\n".join(lines) + "\n")   # 10^9 values if expanded
    _, errors = read_rule_directory(tmp_path)
    # Refused at the alias that repeats the 100,000th value, before any value is built
    # (it used to build a million of them first: 263 MB for a 488-byte file).
    assert [(e.line, e.reason) for e in errors] == [
        (5, "invalid YAML: aliases repeat more than 100,000 values (aliases of aliases?)")]


def test_aliases_that_repeat_a_shared_condition_in_every_rule_are_read(tmp_path: Path) -> None:
    lines = ["slots: {hero: {}}", "rules:"]
    lines += [f"  - {{name: r{i}, when: {'&w ' if i == 0 else '*w'}"
              + ("{geo.country: DE, device.type: mobile}" if i == 0 else "")
              + ", then: {hero: x}}" for i in range(10_000)]
    write(tmp_path, "a.yaml", "\n".join(lines) + "\n")
    rule_files, errors = read_rule_directory(tmp_path)
    assert errors == [] and rule_files.rule_count == 10_000


def test_a_rule_file_larger_than_8_mib_is_refused_unread(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "slots: {hero: {}}\n")
    with (tmp_path / "big.yaml").open("wb") as big:
        big.truncate(50 * 1024 * 1024)   # a sparse file: reading it would take seconds
    write(tmp_path, "fits.yaml", "rules: []\n" + "#" * (8 * 1024 * 1024 - 12) + "\n")
    _, errors = read_rule_directory(tmp_path)
    assert [(e.source, e.reason) for e in errors] == [
        (tmp_path / "big.yaml", "the file is larger than 8 MiB, the most a rule file may hold "
                                "(10,000 rules take 2.5 MB): split it, or move large HTML to "
                                "fragment files")]


def test_a_long_quoted_value_takes_no_memory_for_each_character() -> None:
    # 5 MB in quotes took 760 MB to read (the regular expression engine's stack).
    # VmHWM, the peak of this process's own memory (ru_maxrss starts from the test
    # runner's, which a forked child inherits)
    code = ("import pathlib\n"
            "from edge_personalizer.rules.loader import parse_rule_file\n"
            "for q in ('\"', \"'\", ''):\n"
            "    text = 'slots: {hero: {default: ' + q + 'x' * 5_000_000 + q + '}}\\n'\n"
            "    f, errors = parse_rule_file(pathlib.Path('a.yaml'), text)\n"
            "    assert not errors and len(f.sections['slots']['hero']['default']) == 5_000_000\n"
            "status = pathlib.Path('/proc/self/status').read_text()\n"
            "print(int(status.split('VmHWM:')[1].split()[0]) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 200, f"{done.stdout} MB"


def test_an_emptied_file_is_an_empty_rule_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "# only a comment\n")
    rule_files, errors = read_rule_directory(tmp_path)
    assert errors == [] and rule_files.files[0].is_empty


def _big_rules(count: int, mistake_at: int | None = None, mistake: str = "") -> str:
    """`count` rules written as marketers write them; rule `mistake_at` gets `mistake` as an
    extra line of its `when`."""
    lines = ["slots:", "  hero: {tag: section}", "rules:"]
    for i in range(count):
        lines += [f"  - name: rule-{i}", "    when:", f"      geo.country: {['US', 'DE'][i % 2]}",
                  "      device.type: [mobile, tablet]"]
        if i == mistake_at:
            lines.append(mistake)
        lines += ["    then:", "      hero:", f"        html: \"<h1>Offer {i}</h1>\""]
    return "\n".join(lines) + "\n"


def test_a_big_file_keeps_the_line_of_every_value(tmp_path: Path) -> None:
    write(tmp_path, "big.yaml", _big_rules(10_000))
    rule_files = load_rule_directory(tmp_path)
    assert rule_files.rule_count == 10_000
    marks = rule_files.files[0].marks
    # rule i starts on line 4 + 7 i; its `html` value is 6 lines further, after `html: `
    assert marks[("rules", 7_000)] == (4 + 7 * 7_000, 5)
    assert marks[("rules", 7_000, "then", "hero", "html")] == (4 + 7 * 7_000 + 6, 15)
    assert marks[("rules", 9_999, "when", "device.type", 1)] == (4 + 7 * 9_999 + 3, 29)


@pytest.mark.parametrize(("mistake", "column", "message"), [
    ("      geo.country: FR", 7, "key 'geo.country' appears twice in the same mapping"),
    ("      device.type: [mobile, tablet", 7, "invalid YAML"),
    ("    when: {}", 5, "key 'when' appears twice in the same mapping"),
])
def test_a_mistake_deep_in_a_big_file_is_named_at_its_line(
        tmp_path: Path, mistake: str, column: int, message: str) -> None:
    # (a file with a mistake is read again by the YAML node reader, which is slower)
    write(tmp_path, "big.yaml", _big_rules(2_000, mistake_at=1_500, mistake=mistake))
    _, errors = read_rule_directory(tmp_path)
    assert len(errors) == 1
    error = errors[0]
    assert error.source == tmp_path / "big.yaml" and message in error.reason
    if message == "invalid YAML":   # found where the unclosed list meets the next key
        assert error.line is not None and 4 + 7 * 1_500 + 4 <= error.line <= 4 + 7 * 1_500 + 6
    else:
        assert (error.line, error.column) == (4 + 7 * 1_500 + 4, column)


# Reading a rules directory as an operator deploys it: odd names, folders that cannot be
# read, folder links, files in other encodings.

# chmod denies nothing to root, whose capabilities pass over file modes: as root the
# command runs without those two (util-linux setpriv), so it meets the modes as a deploy
# user would; as any other user it runs as that user.
UNPRIVILEGED = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
                if os.geteuid() == 0 else [])


def validate(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`edge-personalizer validate directory`, run as a user whom chmod denies."""
    assert not UNPRIVILEGED or shutil.which("setpriv"), \
        "running as root, these tests need util-linux's setpriv (else chmod denies nothing)"
    return subprocess.run([*UNPRIVILEGED, sys.executable, "-m", "edge_personalizer",
                           "validate", str(directory), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_rule_file_named_in_another_encoding_is_an_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "slots: {hero: {}}\n")
    (tmp_path / os.fsdecode(b"caf\xe9.yaml")).write_text("rules: []\n")
    (tmp_path / os.fsdecode(b"d\xe9j\xe0")).mkdir()
    (tmp_path / os.fsdecode(b"d\xe9j\xe0") / "b.yaml").write_text("rules: []\n")
    _, errors = read_rule_directory(tmp_path)
    assert [(str(e.source), e.reason) for e in errors] == [
        (f"{tmp_path}/caf\\xe9.yaml", "the name b'caf\\xe9.yaml' is not UTF-8, as rule "
                                      "files and their folders must be named: rename it"),
        (f"{tmp_path}/d\\xe9j\\xe0/b.yaml", "the name b'd\\xe9j\\xe0' is not UTF-8, as rule "
                                            "files and their folders must be named: rename it")]
    checked = validate(tmp_path)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert f"{tmp_path}/caf\\xe9.yaml: the name b'caf\\xe9.yaml' is not UTF-8" in checked.stdout
    assert "3 files: 2 errors (0 rules and 0 experiments compile without errors)" in checked.stdout


def test_a_fragment_named_in_another_encoding_is_part_of_the_version(tmp_path: Path) -> None:
    # No rule can name it (rule files are UTF-8), so it is no error: its bytes are hashed.
    write(tmp_path, "a.yaml", "rules: []\n")
    fragment = tmp_path / os.fsdecode(b"caf\xe9.html")
    fragment.write_text("<b>one</b>")
    first = load_rule_directory(tmp_path).version
    fragment.write_text("<b>two</b>")
    assert load_rule_directory(tmp_path).version != first


@pytest.mark.parametrize(("mode", "reason"), [
    (0o644, "the folder cannot be searched: Permission denied"),
    (0o000, "the folder cannot be read: Permission denied")])
def test_a_folder_that_cannot_be_read_is_an_error_naming_it(
        tmp_path: Path, mode: int, reason: str) -> None:
    write(tmp_path, "slots.yaml", "slots: {hero: {}}\n")
    folder = tmp_path / "campaigns"
    write(folder, "spring.yaml", "rules:\n  - {name: spring, then: {hero: x}}\n")
    folder.chmod(mode)
    try:
        checked = validate(tmp_path)
    finally:
        folder.chmod(0o755)
    assert checked.returncode == 1, checked.stdout
    assert "Traceback" not in checked.stderr
    assert checked.stdout.startswith(f"{folder}: {reason}")


def test_rules_in_a_linked_folder_are_read(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "slots.yaml", "slots: {hero: {}}\n")
    write(tmp_path / "shared", "spring.yaml", "rules:\n  - {name: spring, then: {hero: x}}\n")
    (rules / "shared").symlink_to(tmp_path / "shared")
    rule_files = load_rule_directory(rules)
    assert [f.path for f in rule_files.files] == [rules / "shared" / "spring.yaml",
                                                   rules / "slots.yaml"]
    assert rule_files.rule_count == 1


@pytest.mark.parametrize("target", ["..", ".", "../.."])
def test_a_folder_link_that_loops_is_an_error(tmp_path: Path, target: str) -> None:
    write(tmp_path, "a/b/r.yaml", "rules: []\n")
    (tmp_path / "a" / "b" / "loop").symlink_to(target)
    rule_files, errors = read_rule_directory(tmp_path)
    assert [(e.source, e.reason) for e in errors] == [
        (tmp_path / "a" / "b" / "loop",
         "the folder link leads back to a folder it is in (a loop): remove it")]
    assert [f.path for f in rule_files.files] == [tmp_path / "a" / "b" / "r.yaml"]


def test_the_version_follows_a_relinked_fragments_folder(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: []\n")
    write(tmp_path, "assets/v1/hero.html", "<b>one</b>")
    write(tmp_path, "assets/v2/hero.html", "<b>two</b>")
    (tmp_path / "fragments").symlink_to("assets/v1")
    first = load_rule_directory(tmp_path).version
    (tmp_path / "fragments").unlink()
    (tmp_path / "fragments").symlink_to("assets/v2")
    assert load_rule_directory(tmp_path).version != first


@pytest.mark.parametrize("name", ["Promo.YAML", "promo.Yml", "promo.yAml"])
def test_a_rule_file_with_an_upper_case_suffix_is_an_error(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, "rules: []\n")
    _, errors = read_rule_directory(tmp_path)
    renamed = name[:-len(Path(name).suffix)] + Path(name).suffix.lower()
    assert [(e.source, e.reason) for e in errors] == [
        (tmp_path / name, f"rule files end in .yaml or .yml in lower case: rename it to "
                          f"{renamed!r}")]


def test_a_windows_1252_file_is_named_at_the_line_of_its_first_bad_byte(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes("rules:\n  - name: caf\u00e9\n    then: {hero: \u20ac}\n"
                                      .encode("cp1252"))
    _, errors = read_rule_directory(tmp_path)
    assert len(errors) == 1 and (errors[0].line, errors[0].column) == (2, 14)
    assert errors[0].reason == ("cannot read it as UTF-8: byte 0xe9 is not UTF-8 "
                                "(Windows-1252 or Latin-1?); save the file as UTF-8")
    (tmp_path / "a.yaml").write_bytes("rules: []\n# \u00e9t\u00e9 \u00e0 \u20ac\n".encode()
                                      + b"# \x80\n")
    _, errors = read_rule_directory(tmp_path)
    assert (errors[0].line, errors[0].column) == (3, 3)


def test_a_rule_file_that_cannot_be_read_says_why_and_counts(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "slots: {hero: {}}\n")
    write(tmp_path, "b.yaml", "rules: []\n").chmod(0)
    checked = validate(tmp_path)
    assert checked.stdout == (f"{tmp_path / 'b.yaml'}: cannot be read: Permission denied\n"
                              "2 files: 1 error (0 rules and 0 experiments compile without "
                              "errors)\n")


@pytest.mark.parametrize(("make", "kind"), [
    (lambda path: path.symlink_to("/dev/zero"), "a device"),
    (os.mkfifo, "a FIFO"),
])
def test_a_rule_file_that_is_no_regular_file_is_an_error_never_read(
        tmp_path: Path, make: Callable[[Path], None], kind: str) -> None:
    # It was left out without a word: "1 file ... valid", its rules silently not served.
    write(tmp_path, "a.yaml", "slots: {hero: {}}\n")
    make(tmp_path / "z.yaml")
    checked = validate(tmp_path)   # (a FIFO opened to read waits for a writer for good)
    assert checked.stdout == (f"{tmp_path / 'z.yaml'}: cannot be read: not a regular file "
                              f"({kind})\n2 files: 1 error (0 rules and 0 experiments "
                              "compile without errors)\n")
    assert checked.returncode == 1
    _, errors = read_rule_directory(tmp_path)
    assert [(e.source, e.reason) for e in errors] == [
        (tmp_path / "z.yaml", f"cannot be read: not a regular file ({kind})")]


def test_a_fifo_that_is_no_rule_file_is_never_read(tmp_path: Path) -> None:
    # Every other file's bytes make the rules' version: a FIFO's are never asked for (a
    # fragment naming it is an error, tests/rules/compile/test_actions.py).
    write(tmp_path, "a.yaml", "slots: {hero: {}}\n")
    version = read_rule_directory(tmp_path)[0].version
    os.mkfifo(tmp_path / "notes.txt")
    rule_files, errors = read_rule_directory(tmp_path)
    assert (rule_files.version, errors) == (version, [])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_rule_file_saved_as_utf_16_is_called_so(tmp_path: Path, encoding: str) -> None:
    # It was called "Windows-1252 or Latin-1?" (byte 0xff at 1:1), Notepad's "Unicode".
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-32": b""}[encoding]
    (tmp_path / "a.yaml").write_bytes(bom + "rules: []\n".encode(encoding))
    wide = "UTF-32" if encoding == "utf-32" else "UTF-16"
    _, errors = read_rule_directory(tmp_path)
    assert [(e.line, e.column, e.reason) for e in errors] == [
        (1, 1, f"cannot read it as UTF-8: it is saved as {wide} (it starts with a {wide} byte "
               "order mark); save the file as UTF-8")]


def test_a_missing_relative_rules_directory_says_where_it_was_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A config file's rules_dir = "rules" is the working directory's: under systemd that is
    # /, and "rules: rules directory does not exist" did not say so.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuleError, match=f"looked for at {tmp_path}/rules\\)"):
        load_rule_directory(Path("rules"))
