"""Rule files -> plain data. The only module that imports the YAML library."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import RuleError, RuleSetInvalid

RULE_FILE_SUFFIXES = (".yaml", ".yml")
# The sections a rule file may have (docs/rules.md describes each).
SECTIONS = frozenset({"rules", "segments", "interests", "slots", "experiments"})


@dataclass(frozen=True)
class RuleFile:
    """One parsed rule file: its path and its top-level sections."""

    path: Path
    sections: Mapping[str, Any]

    @property
    def rule_count(self) -> int:
        rules = self.sections.get("rules")
        return len(rules) if isinstance(rules, list) else 0


@dataclass(frozen=True)
class RuleFiles:
    """Every rule file of a directory, as loaded at one moment."""

    directory: Path
    files: tuple[RuleFile, ...]
    version: str                      # content hash: the same files give the same version
    loaded_at: float = field(default_factory=time.time)

    @property
    def rule_count(self) -> int:
        return sum(f.rule_count for f in self.files)

    def interests(self) -> dict[str, list[str]]:
        """Interest category -> path patterns, from every file's `interests` section."""
        out: dict[str, list[str]] = {}
        for rule_file in self.files:
            section = rule_file.sections.get("interests")
            if isinstance(section, dict):
                for name, patterns in section.items():
                    if isinstance(patterns, list):
                        out.setdefault(str(name), []).extend(str(p) for p in patterns)
        return out


def _rule_paths(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise RuleError("rules directory does not exist or is not a directory", source=directory)
    return sorted(p for p in directory.rglob("*")
                  if p.suffix in RULE_FILE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def parse_rule_file(path: Path, text: str) -> tuple[RuleFile, list[RuleError]]:
    """Parse one file; YAML and section errors come back as a list, not raised."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        return RuleFile(path, MappingProxyType({})), [
            RuleError(f"invalid YAML: {reason}", source=path, line=line, column=column)]
    except yaml.YAMLError as exc:
        return RuleFile(path, MappingProxyType({})), [
            RuleError(f"invalid YAML: {exc}", source=path)]
    if data is None:
        return RuleFile(path, MappingProxyType({})), []
    if not isinstance(data, dict):
        return RuleFile(path, MappingProxyType({})), [RuleError(
            f"a rule file is a mapping of sections ({', '.join(sorted(SECTIONS))}), "
            f"got {type(data).__name__}", source=path, line=1, column=1)]
    errors = [
        RuleError(f"unknown section {key!r}; expected one of {', '.join(sorted(SECTIONS))}",
                  source=path, line=_key_line(text, str(key)), column=1)
        for key in data if key not in SECTIONS
    ]
    return RuleFile(path, MappingProxyType(dict(data))), errors


def _key_line(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return None


def check_rule_directory(directory: Path) -> tuple[RuleFiles, list[RuleError]]:
    """Load every rule file, collecting every error in every file."""
    paths = _rule_paths(directory)
    digest = hashlib.sha256()
    files: list[RuleFile] = []
    errors: list[RuleError] = []
    for path in paths:
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(RuleError(f"cannot read: {exc}", source=path))
            continue
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + raw + b"\0")
        parsed, file_errors = parse_rule_file(path, text)
        files.append(parsed)
        errors.extend(file_errors)
    return RuleFiles(directory, tuple(files), digest.hexdigest()[:16]), errors


def load_rule_directory(directory: Path) -> RuleFiles:
    """Load a rules directory or raise the first error (all of them are in .errors)."""
    rule_files, errors = check_rule_directory(directory)
    if errors:
        raise RuleSetInvalid(errors)
    return rule_files

