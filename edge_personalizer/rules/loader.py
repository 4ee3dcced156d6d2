"""Rule files -> plain data, with the line and column of every value.

Files in the usual shapes (block mappings and lists of one-line values) are read by
quick_yaml, line by line. Any other file, and any file with a mistake, is read here from
the YAML node graph (safe types only): each value keeps where it was written, a repeated
key is an error, not an overwrite, and every mistake is named at its line and column.
Both give the same values and the same marks."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import RuleError, RuleSetInvalid
from . import quick_yaml
from .fields import suggest
from .tree import is_regular, read_at_most, reason, shown
from .tree import walk as walk  # the rules' files, for the watcher too
from .yaml_errors import yaml_error
from .yaml_scalars import RuleFileLoader, implicit_tag

RULE_FILE_SUFFIXES = (".yaml", ".yml")
# A rule file larger than this is refused unread: reading takes ~100 times its size in
# memory, in every worker (10,000 rules in one file take 2.5 MB).
MAX_RULE_FILE_BYTES = 8 * 1024 * 1024
# Values that aliases (*name) may repeat in one file, counted once for each use: enough
# for a shared `when` in every rule, never the billion values of aliases of aliases.
MAX_ALIASED_VALUES = 100_000
SECTIONS = frozenset({"rules", "segments", "interests", "slots", "experiments", "goals"})

KEY = quick_yaml.KEY   # marks[(*path, KEY)] is where the key of the value at `path` was written
# Where a value sits in a file: ("rules", 0, "when", "geo.country").
KeyPath = tuple[str | int, ...]
Marks = Mapping[KeyPath, tuple[int, int]]   # key path -> (line, column), both from 1


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

    @property
    def is_empty(self) -> bool:
        """Nothing written in it: an empty file, or only comments."""
        return not self.sections

    def line_of(self, at: KeyPath) -> int:
        """The line the value at `at` starts on (0 when unknown)."""
        return self.marks.get(at, (0, 0))[0]

    def error(self, message: str, at: KeyPath = (), *, owner: str | None = None,
              on_key: bool = False) -> RuleError:
        """A RuleError pointing at the value at `at` (or its key, or its nearest written
        parent); `owner` names what it belongs to: "rule 'x'", "segment 'y'"."""
        mark = self.mark_of(at, on_key=on_key)
        text = f"{owner}: {message}" if owner else message
        return RuleError(text, source=self.path, line=mark[0] if mark else None,
                         column=mark[1] if mark else None)

    def mark_of(self, at: KeyPath, *, on_key: bool = False) -> tuple[int, int] | None:
        """Where an error about the value at `at` points: the value (or its key), or its
        nearest written parent."""
        if on_key and (*at, KEY) in self.marks:
            at = (*at, KEY)
        for length in range(len(at), -1, -1):
            mark = self.marks.get(at[:length])
            if mark is not None:
                return mark
        return None

    def marks_along(self, at: KeyPath) -> dict[KeyPath, tuple[int, int]]:
        """The marks an error about the value at `at` may use: its own and its parents'
        (to keep where a later error would point without keeping the whole file)."""
        found = {at[:length]: self.marks[at[:length]] for length in range(len(at) + 1)
                 if at[:length] in self.marks}
        if (*at, KEY) in self.marks:
            found[(*at, KEY)] = self.marks[(*at, KEY)]
        return found


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
        self.key, self.mark = key, mark


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
# Values a file may hold, each use of an alias counted again (aliases of aliases, a
# "billion laughs", would grow without end), and how deep they may nest.
_MAX_VALUES, _MAX_DEPTH = quick_yaml.MAX_VALUES, quick_yaml.MAX_DEPTH


class _PlainBuilder:
    """Builds plain values from a YAML node graph, noting where each one was written."""

    def __init__(self) -> None:
        self.marks: dict[KeyPath, tuple[int, int]] = {}
        self._constructor = yaml.constructor.SafeConstructor()
        self._left = _MAX_VALUES

    def build(self, node: yaml.Node, at: KeyPath) -> Any:
        self._left -= 1
        if self._left < 0 or len(at) > _MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, "the file is too large or nested too deeply (do aliases "
                "repeat each other?)", node.start_mark)
        self.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) \
                and node.tag not in _PLAIN_TAGS:
            raise yaml.constructor.ConstructorError(
                None, None, f"the tag {node.tag} is not allowed in rule files", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, at)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*at, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, at: KeyPath) -> dict[Any, Any]:
        try:
            self._constructor.flatten_mapping(node)   # YAML merge keys (<<)
        except RecursionError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, "merge keys (<<) refer to each other", node.start_mark) from exc
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) \
                else f"<{key_node.id}>"
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if key in out:
                raise _DuplicateKey(str(key), key_node.start_mark)
            self.marks[(*at, str(key), KEY)] = (key_node.start_mark.line + 1,
                                                key_node.start_mark.column + 1)
            out[key] = self.build(value_node, (*at, str(key)))
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        """One value; a plain one YAML cannot make (2026-11-31, an int of 5000 digits) is
        the text written (what reads it tells the mistake, and the file's others), any
        other an error at its place in the file (a tag on a value it cannot read)."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError, TypeError, AttributeError, LookupError,
                RecursionError) as exc:
            if isinstance(node, yaml.ScalarNode) and node.style is None \
                    and node.tag == implicit_tag(node.value):   # (not tagged so)
                return node.value
            shown = str(node.value)[:40]
            raise yaml.constructor.ConstructorError(
                None, None, f"{shown!r} cannot be read: {exc}", node.start_mark) from exc


class _AliasCountingLoader(RuleFileLoader):
    """Composes YAML nodes, counting the values each alias repeats: past
    MAX_ALIASED_VALUES the file is refused at that alias, before anything is built of it
    (a 488-byte file of aliases of aliases otherwise stands for a billion values)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}   # values under a node, by its id
        self._aliased = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event() if self.check_event(  # type: ignore[no-untyped-call]
            yaml.AliasEvent) else None
        node = super().compose_node(parent, index)
        if event is not None and node is not None:
            self._aliased += self._size(node)
            if self._aliased > MAX_ALIASED_VALUES:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases repeat more than {MAX_ALIASED_VALUES:,} values "
                    "(aliases of aliases?)", event.start_mark)
        return node

    def _size(self, node: yaml.Node) -> int:
        """How many values the node stands for, each alias under it counted again."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        self._sizes[id(node)] = 1   # an alias of a node it is in counts once
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._size(key) + self._size(value) for key, value in node.value)
        size = min(size, MAX_ALIASED_VALUES + 1)
        self._sizes[id(node)] = size
        return size


def parse_rule_file(path: Path, text: str) -> tuple[RuleFile, list[RuleError]]:
    """Parse one file; YAML and section errors come back as a list, not raised."""
    empty = RuleFile(path, MappingProxyType({}))
    quick = quick_yaml.read(text)
    if isinstance(quick, quick_yaml.Repeated):
        return empty, [RuleError(f"key {quick.key!r} appears twice in the same mapping",
                                 source=path, line=quick.line, column=quick.column)]
    if quick is not None:
        data, marks = quick
        return _sections(path, data, marks)
    builder = _PlainBuilder()
    try:
        node = yaml.compose(text, Loader=_AliasCountingLoader)
        data = None if node is None else builder.build(node, ())
    except _DuplicateKey as dup:
        return empty, [RuleError(f"key {dup.key!r} appears twice in the same mapping",
                                 source=path, line=dup.mark.line + 1,
                                 column=dup.mark.column + 1)]
    except yaml.MarkedYAMLError as exc:
        return empty, [yaml_error(exc, path, text)]
    except yaml.YAMLError as exc:
        return empty, [RuleError(f"invalid YAML: {exc}", source=path)]
    except RecursionError:   # the YAML parser itself recurses: brackets nested thousands deep
        return empty, [RuleError("invalid YAML: nested too deeply", source=path)]
    return _sections(path, data, builder.marks)


def _sections(path: Path, data: Any, marks: dict[KeyPath, tuple[int, int]]
              ) -> tuple[RuleFile, list[RuleError]]:
    if data is None:
        return RuleFile(path, MappingProxyType({})), []
    if not isinstance(data, dict):
        return RuleFile(path, MappingProxyType({})), [RuleError(
            f"a rule file is a mapping of sections ({', '.join(sorted(SECTIONS))}), "
            f"got {type(data).__name__}", source=path, line=1, column=1)]
    rule_file = RuleFile(path, MappingProxyType(dict(data)), MappingProxyType(marks))
    errors = [rule_file.error(f"unknown section {key!r}; expected one of "
                              f"{', '.join(sorted(SECTIONS))}" + suggest(str(key), SECTIONS),
                              (str(key),), on_key=True)
              for key in data if key not in SECTIONS]
    return rule_file, errors


def _rule_file_error(path: Path) -> RuleError | None:
    """Why a file named like a rule file cannot be one, if it cannot."""
    if path.suffix not in RULE_FILE_SUFFIXES:
        return RuleError(f"rule files end in .yaml or .yml in lower case: rename it to "
                         f"{path.stem + path.suffix.lower()!r}", source=shown(path))
    if shown(path) is not path:
        name = next(part for part in reversed(path.parts) if shown(Path(part)) != Path(part))
        return RuleError(f"the name {os.fsencode(name)!r} is not UTF-8, as rule files and "
                         "their folders must be named: rename it", source=shown(path))
    return None


def wide_encoding(raw: bytes) -> str | None:
    """'UTF-16' (or 'UTF-32') for bytes that start with that byte order mark, as Windows
    Notepad's "Unicode" saves them: every other byte is 0, and no byte names the mistake."""
    for bom, name in ((b"\xff\xfe\0\0", "UTF-32"), (b"\0\0\xfe\xff", "UTF-32"),
                      (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if raw.startswith(bom):
            return name
    return None


def undecodable(raw: bytes, exc: UnicodeDecodeError) -> tuple[int, int, str]:
    """The line and column (from 1) of the first byte that is not UTF-8, and that byte."""
    line_start = raw.rfind(b"\n", 0, exc.start) + 1
    column = len(raw[line_start:exc.start].decode("utf-8", "replace")) + 1
    return raw.count(b"\n", 0, exc.start) + 1, column, f"byte 0x{raw[exc.start]:02x}"


@dataclass(frozen=True)
class Source:
    """One rule file's bytes as read, and their digest."""

    path: Path
    text: str
    digest: bytes     # sha256 of the file's bytes


@dataclass(frozen=True)
class Sources:
    """Every rule file of a directory, read but not parsed."""

    directory: Path
    files: tuple[Source | RuleError, ...]   # in path order; an error: it cannot be read
    version: str                      # content hash of everything under the directory
    errors: tuple[RuleError, ...] = ()   # folders that cannot be read, loops


def read_sources(directory: Path) -> Sources:
    """Read every rule file (not parsing it yet).

    The version hashes every file under the directory (fragments included), so a change
    to an HTML fragment is a new version too.
    """
    if not directory.is_dir():   # (a relative path is the working directory's: / under systemd)
        where = "" if directory.is_absolute() else f" (looked for at {directory.absolute()})"
        raise RuleError(f"rules directory does not exist or is not a directory{where}",
                        source=directory)
    tree = walk(directory)
    digest = hashlib.sha256()
    paths = []
    for name, stat in tree.files:
        other = Path(name)
        if other.suffix.lower() in RULE_FILE_SUFFIXES:
            paths.append(other)
            continue
        if not is_regular(stat):   # (never read: a fragment naming it says why)
            continue
        try:
            content = other.read_bytes()
        except OSError:   # removed meanwhile, or unreadable: a fragment naming it says why
            continue
        digest.update(os.fsencode(other.relative_to(directory)) + b"\0" + content)
    files: list[Source | RuleError] = []
    for path in paths:
        error = _rule_file_error(path)
        if error is not None:
            files.append(error)
            continue
        try:
            raw = read_at_most(path, MAX_RULE_FILE_BYTES)
        except OSError as exc:
            files.append(RuleError(f"cannot be read: {reason(exc)}", source=path))
            continue
        if raw is None:
            files.append(RuleError(f"the file is larger than {MAX_RULE_FILE_BYTES >> 20} MiB, "
                                   "the most a rule file may hold (10,000 rules take 2.5 MB): "
                                   "split it, or move large HTML to fragment files",
                                   source=path))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            wide = wide_encoding(raw)
            if wide is not None:
                files.append(RuleError(f"cannot read it as UTF-8: it is saved as {wide} (it "
                                       f"starts with a {wide} byte order mark); save the file "
                                       "as UTF-8", source=path, line=1, column=1))
                continue
            line, column, byte = undecodable(raw, exc)
            files.append(RuleError(f"cannot read it as UTF-8: {byte} is not UTF-8 (Windows-1252 "
                                   "or Latin-1?); save the file as UTF-8", source=path,
                                   line=line, column=column))
            continue
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + raw + b"\0")
        files.append(Source(path, text, hashlib.sha256(raw).digest()))
    return Sources(directory, tuple(files), digest.hexdigest()[:16], tree.errors)


def read_rule_directory(directory: Path) -> tuple[RuleFiles, list[RuleError]]:
    """Parse every rule file, collecting every error in every file."""
    sources = read_sources(directory)
    files: list[RuleFile] = []
    errors: list[RuleError] = list(sources.errors)
    for source in sources.files:
        if isinstance(source, RuleError):
            errors.append(source)
            continue
        parsed, file_errors = parse_rule_file(source.path, source.text)
        files.append(parsed)
        errors.extend(file_errors)
    return RuleFiles(directory, tuple(files), sources.version), errors


def load_rule_directory(directory: Path) -> RuleFiles:
    """Parse a rules directory or raise RuleSetInvalid with every error."""
    rule_files, errors = read_rule_directory(directory)
    if errors:
        raise RuleSetInvalid(errors)
    return rule_files
