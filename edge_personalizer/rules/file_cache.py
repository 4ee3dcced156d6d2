"""Loading a rules directory again reuses what the load before made of each file that did
not change, so a reload of thousands of rules costs what the changed files cost.

Each file is known by the digest of its bytes. What is kept of it:

- its parse errors, whether it is empty or holds something (the book's check for a file
  emptied by a save under way);
- the compiled rules of its `rules` section (rules/compile/rules.py FileRules: the rules
  before ranking, their errors with file and line, the few marks later checks point at),
  with what they were compiled under: compile/context.py `rules_read` (slot and interest
  names, segments as written) and each fragment file they show, read again every load.
  Any of those different, and the file's rules are compiled again;
- for a file that declares slots, interests, segments, goals or experiments: those
  sections, parsed (they are compiled again every load: they are small, and experiments
  and goals hold what rules do not).

Not kept: the parse of a `rules` section (plain values and the line of each: about 57 MB for
10,000 rules, three times the compiled rules), so a file whose rules compile again is read
again. Only the current files' entries are kept, one each; a file removed is forgotten.

One cache for each RuleBook, which lives as long as its worker: a reload by the watcher,
SIGHUP or the admin endpoint all go through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from ..errors import RuleError
from .compile import (
    FileRules,
    build_ruleset,
    compile_declarations,
    compile_file_rules,
    in_written_order,
)
from .compile.actions import fragment
from .compile.context import CompileContext, rules_read
from .loader import RuleFile, RuleFiles, Sources, parse_rule_file, read_sources
from .model import RuleSet
from .parse_cache import ParseCache


@dataclass(frozen=True)
class Loaded:
    """One load of the directory: the rule set (to serve only without errors)."""

    ruleset: RuleSet
    errors: list[RuleError]
    empty: tuple[Path, ...]          # files with nothing written in them
    holding: frozenset[Path]         # files whose sections hold something
    read: int = 0                    # files whose YAML was read (the others' parses kept)
    compiled: int = 0                # files whose rules were compiled (the others' reused)


@dataclass(frozen=True)
class _Entry:
    digest: bytes                     # sha256 of the file's bytes
    errors: tuple[RuleError, ...]     # found reading it
    is_empty: bool
    holding: bool
    has_rules: bool
    declares: RuleFile | None         # its sections other than `rules`, if any
    rules: FileRules | None = None    # its `rules` section compiled, under `read`
    read: Hashable = None


class RuleCache:
    """Loads one rules directory, reusing the last load's work for unchanged files."""

    def __init__(self, directory: Path, *, parses: ParseCache | None = None,
                 own_cookies: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        # The cookies the server sets or reads itself (name -> the setting naming it): a
        # rule that set one would overwrite a visitor's profile, or fake their consent.
        self.own_cookies: Mapping[str, str] = MappingProxyType(dict(own_cookies or {}))
        self._parses = parses   # the files' parses kept on disk, for every worker
        self._entries: dict[Path, _Entry] = {}
        # The last load, and every fragment file it read (as read): while no file changed
        # and those read the same, loading again gives the same.
        self._last: tuple[Loaded, Mapping[str, tuple[str, str] | str]] | None = None
        # Whether it found a file or folder it could not read (a name, encoding or link
        # loop): those are no part of the version, so one removed leaves the version as
        # it was, and only loading again tells the rules are now whole.
        self._last_unread = False
        self._held_files = False   # a load found rule files in the directory
        self._lock = threading.Lock()   # the watcher and SIGHUP may reload at once
        self._read = 0   # files whose YAML the load under way read
        self._compiled = 0   # files whose rules it compiled

    def __len__(self) -> int:
        return len(self._entries)

    def load(self) -> Loaded:
        with self._lock:
            return self._load()

    def _load(self) -> Loaded:
        sources = read_sources(self.directory)
        if self._last is not None and self._unchanged(sources, self._last[1]):
            return replace(self._last[0], read=0, compiled=0)
        loaded_at = time.time()
        self._read = self._compiled = 0
        errors: list[RuleError] = list(sources.errors)   # folders that cannot be read
        if not sources.files and self._held_files:
            errors.append(RuleError(
                "the rules directory holds no rule file now, so it was not loaded (made anew "
                "and not filled yet?); to serve no rules, leave one file with `rules: []`",
                source=self.directory))
        self._held_files = self._held_files or bool(sources.files)
        entries: dict[Path, _Entry] = {}
        texts: dict[Path, str] = {}
        parsed: dict[Path, RuleFile] = {}   # parsed by this load
        for source in sources.files:
            if isinstance(source, RuleError):   # cannot be read
                errors.append(source)
                continue
            texts[source.path] = source.text
            entry = self._entries.get(source.path)
            if entry is None or entry.digest != source.digest:
                rule_file, file_errors = self._parse(source.path, source.text, source.digest)
                parsed[source.path] = rule_file
                entry = _Entry(source.digest, tuple(file_errors), rule_file.is_empty,
                               any(rule_file.sections.values()),
                               "rules" in rule_file.sections, _declarations(rule_file))
            errors.extend(entry.errors)
            entries[source.path] = entry
        declared = RuleFiles(self.directory, tuple(e.declares for e in entries.values()
                                                   if e.declares is not None),
                             sources.version, loaded_at)
        ctx = CompileContext(self.directory, own_cookies=self.own_cookies)
        compile_declarations(ctx, declared)
        read = rules_read(ctx)
        files: list[FileRules] = []
        for path, entry in entries.items():
            if not entry.has_rules:
                continue
            rules = entry.rules
            if rules is None or entry.read != read or not _same_fragments(ctx, rules):
                rule_file = parsed.get(path) or self._parse(path, texts[path], entry.digest)[0]
                rules = compile_file_rules(ctx, rule_file)
                self._compiled += 1
                entries[path] = replace(entry, rules=rules, read=read)
            files.append(rules)
        ruleset, compile_errors = build_ruleset(ctx, declared, files,   # unreadable ones too
                                                file_count=len(sources.files))
        self._entries = entries
        loaded = Loaded(ruleset, in_written_order([*errors, *compile_errors], entries),
                        tuple(path for path, e in entries.items() if e.is_empty),
                        frozenset(path for path, e in entries.items() if e.holding),
                        self._read, self._compiled)
        self._last = loaded, MappingProxyType(ctx.fragments)
        self._last_unread = bool(sources.errors) or any(
            isinstance(source, RuleError) for source in sources.files)
        if self._parses is not None:
            self._parses.keep_only({entry.digest for entry in entries.values()})
        return loaded

    def _parse(self, path: Path, text: str, digest: bytes) -> tuple[RuleFile, list[RuleError]]:
        """The file's parse: kept on disk from an earlier read of the same bytes, or read
        now (and kept, when it has no mistake)."""
        kept = self._parses.get(path, digest) if self._parses is not None else None
        if kept is not None:
            return kept, []
        self._read += 1
        rule_file, errors = parse_rule_file(path, text)
        if self._parses is None:
            return rule_file, errors
        if not errors:
            self._parses.put(digest, rule_file)
        return rule_file, errors

    def _unchanged(self, sources: Sources, fragments: Mapping[str, tuple[str, str] | str]
                   ) -> bool:
        """Every file as the last load read it (the version hashes the other files under
        the directory too), and every fragment file it read reads the same; and the last
        load could read every file and folder, as this one can."""
        if self._last is None or sources.version != self._last[0].ruleset.version \
                or len(sources.files) != len(self._entries) or sources.errors \
                or self._last_unread:
            return False
        for source in sources.files:
            if isinstance(source, RuleError):
                return False
            entry = self._entries.get(source.path)
            if entry is None or entry.digest != source.digest:
                return False
        ctx = CompileContext(self.directory, own_cookies=self.own_cookies)
        return all(fragment(ctx, path) == was for path, was in fragments.items())


def _declarations(rule_file: RuleFile) -> RuleFile | None:
    """The file without its `rules` section (and that section's marks), or None when it
    has no other section."""
    if not set(rule_file.sections) - {"rules"}:
        return None
    if "rules" not in rule_file.sections:
        return rule_file
    sections = {k: v for k, v in rule_file.sections.items() if k != "rules"}
    marks = {at: mark for at, mark in rule_file.marks.items() if not at or at[0] != "rules"}
    return RuleFile(rule_file.path, MappingProxyType(sections), MappingProxyType(marks))


def _same_fragments(ctx: CompileContext, rules: FileRules) -> bool:
    """Every fragment file the compiled rules show reads as it did."""
    shown: Mapping[str, tuple[str, str] | str] = rules.fragments
    return all(fragment(ctx, path) == was for path, was in shown.items())
