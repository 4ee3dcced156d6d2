"""Rule files -> plain data, with the line and column of every value.

The only module that imports the YAML library. Values are built from the YAML node graph
(safe types only), so each one keeps where it was written, and a mapping that repeats a
key is an error rather than a silent overwrite.
"""

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
SECTIONS = frozenset({"rules", "segments", "interests", "slots", "experiments", "goals"})

KEY = "\0key"   # marks[(*path, KEY)] is where the key of the value at `path` was written
Path_ = tuple[str | int, ...]          # where a value sits: ("rules", 0, "when", "geo.country")
Marks = Mapping[Path_, tuple[int, int]]  # path -> (line, column), both from 1


@dataclass(frozen=True)
class RuleFile:
    """One parsed rule file: its path, its top-level sections, and where each value is."""

    path: Path
    sections: Mapping[str, Any]
    marks: Marks = field(default_factory=lambda: MappingProxyType({}))

    @property
    def rule_count(self) -> int:
        rules = self.sections.get("rules")
        return len(rules) if isinstance(rules, list) else 0

    def error(self, message: str, at: Path_ = (), *, owner: str | None = None,
              on_key: bool = False) -> RuleError:
        """A RuleError pointing at the value at `at` (or its key, or its nearest written
        parent); `owner` names what it belongs to: "rule 'x'", "segment 'y'"."""
        if on_key and (*at, KEY) in self.marks:
            at = (*at, KEY)
        for length in range(len(at), -1, -1):
            mark = self.marks.get(at[:length])
            if mark is not None:
                break
        else:
            mark = None
        text = f"{owner}: {message}" if owner else message
        return RuleError(text, source=self.path, line=mark[0] if mark else None,
                         column=mark[1] if mark else None)


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


class _DuplicateKey(Exception):
    def __init__(self, key: str, mark: yaml.Mark) -> None:
        self.key = key
        self.mark = mark


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


def _plain(node: yaml.Node, at: Path_, marks: dict[Path_, tuple[int, int]],
           constructor: yaml.constructor.SafeConstructor) -> Any:
    marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"the tag {node.tag} is not allowed in rule files", node.start_mark)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)   # YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if key in out:
                raise _DuplicateKey(str(key), key_node.start_mark)
            marks[(*at, str(key), KEY)] = (key_node.start_mark.line + 1,
                                           key_node.start_mark.column + 1)
            out[key] = _plain(value_node, (*at, str(key)), marks, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*at, i), marks, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def parse_rule_file(path: Path, text: str) -> tuple[RuleFile, list[RuleError]]:
    """Parse one file; YAML and section errors come back as a list, not raised."""
    empty = RuleFile(path, MappingProxyType({}))
    marks: dict[Path_, tuple[int, int]] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = None if node is None else _plain(node, (), marks,
                                                yaml.constructor.SafeConstructor())
    except _DuplicateKey as dup:
        return empty, [RuleError(f"key {dup.key!r} appears twice in the same mapping",
                                 source=path, line=dup.mark.line + 1,
                                 column=dup.mark.column + 1)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        return empty, [RuleError(f"invalid YAML: {reason}", source=path,
                                 line=mark.line + 1 if mark else None,
                                 column=mark.column + 1 if mark else None)]
    except yaml.YAMLError as exc:
        return empty, [RuleError(f"invalid YAML: {exc}", source=path)]
    if data is None:
        return empty, []
    if not isinstance(data, dict):
        return empty, [RuleError(
            f"a rule file is a mapping of sections ({', '.join(sorted(SECTIONS))}), "
            f"got {type(data).__name__}", source=path, line=1, column=1)]
    rule_file = RuleFile(path, MappingProxyType(dict(data)), MappingProxyType(marks))
    errors = [rule_file.error(f"unknown section {key!r}; expected one of "
                              f"{', '.join(sorted(SECTIONS))}", (str(key),), on_key=True)
              for key in data if key not in SECTIONS]
    return rule_file, errors


def _rule_paths(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise RuleError("rules directory does not exist or is not a directory", source=directory)
    return sorted(p for p in directory.rglob("*")
                  if p.suffix in RULE_FILE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def read_rule_directory(directory: Path) -> tuple[RuleFiles, list[RuleError]]:
    """Parse every rule file, collecting every error in every file.

    The version hashes every file under the directory (fragments included), so a change
    to an HTML fragment is a new version too.
    """
    paths = _rule_paths(directory)
    digest = hashlib.sha256()
    for other in sorted(p for p in directory.rglob("*") if p.is_file()
                        and p.suffix not in RULE_FILE_SUFFIXES
                        and not any(part.startswith(".")
                                    for part in p.relative_to(directory).parts)):
        digest.update(str(other.relative_to(directory)).encode() + b"\0" + other.read_bytes())
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
    """Parse a rules directory or raise RuleSetInvalid with every error."""
    rule_files, errors = read_rule_directory(directory)
    if errors:
        raise RuleSetInvalid(errors)
    return rule_files
