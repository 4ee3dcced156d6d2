from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest

from edge_personalizer.rules import file_cache, parse_cache
from edge_personalizer.rules.file_cache import Loaded, RuleCache
from edge_personalizer.rules.loader import parse_rule_file
from edge_personalizer.rules.parse_cache import ParseCache

from ..servers import start_origin, start_proxy

ROOT = Path(__file__).resolve().parents[2]
KEY = b"k" * 32


def load(rules: Path, data: Path, key: bytes = KEY) -> Loaded:
    return RuleCache(rules, parses=ParseCache(data, rules, key)).load()


def entries(data: Path) -> list[Path]:
    return sorted(data.glob("rule-cache/*/*.parse"))


def demo_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    return rules


def no_yaml_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(path: Path, text: str) -> None:
        raise AssertionError(f"{path} was read again")
    monkeypatch.setattr(file_cache, "parse_rule_file", refused)


def test_a_load_reads_from_disk_only_the_files_no_load_read_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules, data = demo_rules(tmp_path), tmp_path / "data"
    first = load(rules, data)
    files = sorted(rules.rglob("*.yaml"))
    assert first.read == len(files) and not first.errors
    assert [e.name for e in entries(data)] == sorted(
        hashlib.sha256(f.read_bytes()).hexdigest() + ".parse" for f in files)
    with monkeypatch.context() as patch:    # a new worker: every parse is kept
        no_yaml_read(patch)
        again = load(rules, data)
    assert again.read == 0 and not again.errors
    assert again.ruleset.version == first.ruleset.version
    assert [(r.name, r.source) for r in again.ruleset.rules] == \
        [(r.name, r.source) for r in first.ruleset.rules]        # lines kept with values
    changed = files[0]
    changed.write_text(changed.read_text() + "\n# edited\n")
    after = load(rules, data)
    assert after.read == 1                                        # only the edited file
    assert len(entries(data)) == len(files)                       # its old entry removed


def test_mistakes_are_still_named_at_their_line_when_parses_are_kept(tmp_path: Path) -> None:
    rules, data = tmp_path / "rules", tmp_path / "data"
    rules.mkdir()
    (rules / "r.yaml").write_text("slots: {hero: {}}\nrules:\n  - name: a\n    when:\n"
                                  "      geo.countri: GB\n    then: {hero: x}\n")
    for _ in range(2):
        loaded = load(rules, data)
        assert [str(e) for e in loaded.errors] == [
            str(e) for e in load(rules, tmp_path / "other").errors]
        assert re.search(r"r\.yaml:5:\d+: .*geo\.countri", str(loaded.errors[0]))
    assert load(rules, data).read == 0     # a mistake in the rules, not in the YAML: kept


def test_an_entry_not_signed_with_the_sites_key_is_never_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules, data = demo_rules(tmp_path), tmp_path / "data"
    count = load(rules, data).read
    assert load(rules, data, key=b"another site's key").read == count
    # Bytes changed on disk (or written by someone else): read again, and written anew.
    for entry in entries(data):
        body = bytearray(entry.read_bytes())
        body[-1] ^= 1
        entry.write_bytes(bytes(body))
    assert load(rules, data).read == count
    assert load(rules, data).read == 0
    for entry in entries(data):
        entry.write_bytes(entry.read_bytes()[:40])    # cut short
    assert load(rules, data).read == count


def test_dates_are_kept_and_files_with_yaml_mistakes_read_every_time(
        tmp_path: Path) -> None:
    rules, data = tmp_path / "rules", tmp_path / "data"
    rules.mkdir()
    (rules / "bad.yaml").write_text("rules:\n  - name: a\n    when: {geo.country: GB\n")
    (rules / "dated.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - name: d\n    schedule: {from: 2026-12-24, "
        "until: '2026-12-31'}\n    then: {hero: x}\n"
        "  - name: t\n    schedule: {from: 2026-12-24T08:00:00+01:00}\n"
        "    then: {hero: y}\n")
    fresh, _ = parse_rule_file(rules / "dated.yaml", (rules / "dated.yaml").read_text())
    schedules = [rule["schedule"] for rule in fresh.sections["rules"]]
    assert isinstance(schedules[0]["from"], date) and isinstance(schedules[1]["from"], datetime)
    assert [load(rules, data).read for _ in range(2)] == [2, 1]   # the mistake, again
    kept = ParseCache(data, rules, KEY).get(rules / "dated.yaml", hashlib.sha256(
        (rules / "dated.yaml").read_bytes()).digest())
    assert kept is not None and kept.sections == fresh.sections
    assert [type(rule["schedule"]["from"]) for rule in kept.sections["rules"]] == \
        [date, datetime]
    assert kept.marks == fresh.marks
    assert len(entries(data)) == 1


def test_sites_and_versions_sharing_a_data_dir_keep_their_parses_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules, data = demo_rules(tmp_path), tmp_path / "data"
    count = load(rules, data).read
    assert load(rules, data, key=b"staging's key").read == count
    assert load(rules, data).read == load(rules, data, key=b"staging's key").read == 0
    monkeypatch.setattr(parse_cache, "_format", lambda: b"another version of the readers")
    assert load(rules, data).read == count
    assert len({entry.parent for entry in entries(data)}) == 3


def test_another_build_of_the_same_sources_keeps_parses_of_its_own(tmp_path: Path) -> None:
    build = parse_cache._compiled_build()
    assert build is not None and build.exists()   # the tests run the compiled build
    assert parse_cache._format() == parse_cache._format(build)
    stale = tmp_path / build.name
    stale.write_bytes(b"a build made before the sources were edited")
    before = parse_cache._format(stale)
    stale.write_bytes(b"the build `make` made of them since")
    assert None is not before != parse_cache._format(stale) != parse_cache._format()


def test_folders_of_other_versions_are_removed_once_unused_for_a_day(tmp_path: Path) -> None:
    rules, data = demo_rules(tmp_path), tmp_path / "data"
    load(rules, data, key=b"yesterday's random key")
    load(rules, data, key=b"this morning's random key")
    (old, recent) = sorted({entry.parent for entry in entries(data)},
                           key=lambda folder: folder.name)
    day_ago = time.time() - 2 * 86_400
    os.utime(old, (day_ago, day_ago))
    other_site = data / "rule-cache" / "0123456789abcdef-01234567"
    other_site.mkdir()
    os.utime(other_site, (day_ago, day_ago))
    load(rules, data)
    assert not old.exists() and recent.exists() and other_site.exists()


def test_without_the_readers_code_to_name_them_no_parse_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules, data = demo_rules(tmp_path), tmp_path / "data"
    monkeypatch.setattr(parse_cache, "_format", lambda: None)   # a frozen build
    assert load(rules, data).read == load(rules, data).read > 0
    assert entries(data) == []


def test_what_a_write_cut_off_left_behind_is_removed(tmp_path: Path) -> None:
    rules, data = demo_rules(tmp_path), tmp_path / "data"
    load(rules, data)
    (folder,) = {entry.parent for entry in entries(data)}
    old, fresh = folder / ".cut-off.tmp", folder / ".being-written.tmp"
    old.write_bytes(b"half an entry")
    fresh.write_bytes(b"half an entry")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (rules / "extra.yaml").write_text("slots: {extra: {}}\n")
    load(rules, data)
    assert not old.exists() and fresh.exists()


def test_a_data_dir_that_cannot_be_written_costs_only_the_reading(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rules = demo_rules(tmp_path)
    data = tmp_path / "data"
    data.write_text("a file, not a directory")
    with caplog.at_level(logging.WARNING):
        first, second = load(rules, data), load(rules, data)
    assert first.read == second.read > 0 and not first.errors
    assert first.ruleset.version == second.ruleset.version
    assert sum("cannot be kept" in r.message for r in caplog.records) == 2   # once a cache


def test_a_servers_workers_read_no_rule_file_a_worker_read_before(tmp_path: Path) -> None:
    rules = demo_rules(tmp_path)
    files = len(list(rules.rglob("*.yaml")))
    env = {"EP_DATA_DIR": str(tmp_path / "data"), "EP_PROFILE_KEYS": "p" * 32}
    origin = start_origin(tmp_path)
    try:
        logs = []
        for _ in range(2):
            proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules), env=env)
            try:
                assert httpx.get(proxy.url + "/page/home", timeout=10).status_code == 200
            finally:
                proxy.stop()
            logs.append(proxy.log())
    finally:
        origin.stop()
    # The server checks the app before it starts its worker: that check reads the files,
    # and the worker (then every worker after a restart) reads none of them again.
    assert len(entries(tmp_path / "data")) == files
    for log in logs:
        assert f"{files} files; files read anew 0, " in log
