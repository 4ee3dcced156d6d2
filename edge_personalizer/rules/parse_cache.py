"""What reading a rule file gave, kept on disk by the file's digest: a restarted worker, or
a reload that must compile every file again (a segment changed), does not read the YAML
of an unchanged file again. Reading is most of loading a big rule set; compiling, with
every check and every mistake named at its file and line, runs as before (the line of
every value is kept with the values).

An entry is the file's values and marks in `marshal` form (about a fifth of the time
reading the YAML takes), signed with a key only the site has: marshal is not made to
read bytes someone else wrote, so an entry whose signature does not hold is never given
to it. An entry also names the Python that wrote it, PyYAML, the readers' code and the
compiled build that ran it, so an upgrade or a rebuild reads every file again. Dates
are kept as their text and read back; a file with a mistake is not kept.

The cache also marks data_dir (rules/tree.py DATA_MARKER) as the server starts.
Entries live in `<data_dir>/rule-cache/<rules directory>-<code and key>/`, one file
each, written whole and then renamed (workers of one server share them); after a load,
the entries of files no longer there are removed, and the folders of other versions and
keys once no one wrote to them for a day. A cache that cannot be written or read costs
nothing but the reading it would have saved.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import importlib.util
import logging
import marshal
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .loader import KeyPath, RuleFile
from .tree import mark_data_dir

__all__ = ["ParseCache"]

logger = logging.getLogger(__name__)

_SUFFIX = ".parse"
_UNFINISHED = ".tmp"          # an entry being written
_UNFINISHED_FOR = 600.0       # seconds after which one was cut off, and is removed
_UNUSED_FOR = 86_400.0        # seconds after which another version's folder is removed
_SIGNATURE = hashlib.sha256().digest_size
# The code an entry's content depends on: the readers and this module.
_READERS = ("loader.py", "quick_yaml.py", "yaml_line.py", "yaml_scalars.py",
            "parse_cache.py")


def _format(build: Path | None = None) -> bytes | None:
    """What an entry was written by: this Python (marshal's format goes with it), PyYAML,
    the code of the readers and of this module (what an entry holds) and the compiled
    build that runs them; None when the readers' code or the build cannot be read (a
    frozen build): then nothing is kept."""
    readers = hashlib.sha256(yaml.__version__.encode())
    try:
        # The sources beside this module: the line readers are compiled (setup.py), and
        # a compiled module's __file__ does not name its source.
        for source in _READERS:
            readers.update((Path(__file__).parent / source).read_bytes())
        # A build older than its sources (a tree edited since `make`) reads files the way
        # the old sources did: its entries are its own. The library's name, size and
        # modification time name it (hashing its 9 MB would cost each worker's start).
        build = build or _compiled_build()
        if build is not None:
            built = build.stat()
            readers.update(f"{build.name} {built.st_size} {built.st_mtime_ns}".encode())
    except (OSError, TypeError) as exc:
        logger.warning("rule files' parses are not kept: the readers' code or their build "
                       "cannot be read (%s)", exc)
        return None
    return b"ep-parse/1 " + importlib.util.MAGIC_NUMBER + readers.digest()


def _compiled_build() -> Path | None:
    """The library the compiled modules live in (setup.py), None when nothing is."""
    spec = importlib.util.find_spec("edge_personalizer.compiled__mypyc")
    return None if spec is None or spec.origin is None else Path(spec.origin)


class ParseCache:
    """Parsed rule files of one rules directory, by the digest of their bytes."""

    def __init__(self, data_dir: Path, rules_dir: Path, key: bytes) -> None:
        self._key = hmac.new(key, b"edge-personalizer rule parse cache", "sha256").digest()
        self._format = _format()
        # One folder per rules directory, code version and key: servers of two versions
        # (a rolling deploy), or staging and production, sharing a data dir keep apart.
        name = hashlib.sha256(str(rules_dir.absolute()).encode()).hexdigest()[:16]
        kind = hmac.new(self._key, self._format or b"", "sha256").hexdigest()[:8]
        self.directory = data_dir / "rule-cache" / f"{name}-{kind}"
        self._earlier = f"{name}-"   # the folders of this rules directory's other versions
        self._failed = False   # writing failed once: said once, then tried quietly
        mark_data_dir(data_dir)

    def get(self, path: Path, digest: bytes) -> RuleFile | None:
        """The parse of the file `path` whose bytes have `digest`, if kept and sound."""
        if self._format is None:
            return None
        try:
            entry = (self.directory / (digest.hex() + _SUFFIX)).read_bytes()
        except OSError:
            return None
        signature, body = entry[:_SIGNATURE], entry[_SIGNATURE:]
        if not hmac.compare_digest(signature, self._sign(digest, body)):
            return None
        try:
            sections, marks, dated = marshal.loads(body)
            _with_dates(sections, dated)
        except (EOFError, ValueError, TypeError, LookupError):
            return None
        if not isinstance(sections, dict) or not isinstance(marks, dict):
            return None
        return RuleFile(path, MappingProxyType(sections), MappingProxyType(marks))

    def put(self, digest: bytes, rule_file: RuleFile) -> None:
        """Keep a file's parse (one read without mistakes)."""
        if self._format is None:
            return
        dated: list[tuple[KeyPath, bool]] = []
        sections = _without_dates(dict(rule_file.sections), (), dated)
        try:
            body = marshal.dumps((sections, dict(rule_file.marks), tuple(dated)))
        except ValueError:   # a value marshal cannot hold (a date as a key): not kept
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write(self.directory / (digest.hex() + _SUFFIX),
                        self._sign(digest, body) + body)
        except OSError as exc:
            if not self._failed:
                logger.warning("rule files' parses cannot be kept in %s (%s): each load "
                               "reads them again", self.directory, exc)
            self._failed = True

    def keep_only(self, digests: set[bytes]) -> None:
        """Remove the entries of files that are no longer there, what writes cut off (a
        process stopped while writing) left behind, and the folders this rules directory
        had under other versions or keys that no one wrote to for a day (a server without
        configured profile keys has a new key at each start)."""
        wanted = {digest.hex() + _SUFFIX for digest in digests}
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in self.directory.iterdir():
                if entry.suffix == _SUFFIX and entry.name not in wanted or \
                        entry.suffix == _UNFINISHED and \
                        entry.stat().st_mtime < now - _UNFINISHED_FOR:
                    entry.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            for folder in self.directory.parent.iterdir():
                if folder.name.startswith(self._earlier) and folder != self.directory \
                        and folder.stat().st_mtime < now - _UNUSED_FOR:
                    shutil.rmtree(folder, ignore_errors=True)

    def _sign(self, digest: bytes, body: bytes) -> bytes:
        signer = hmac.new(self._key, self._format, "sha256")
        signer.update(digest)
        signer.update(body)
        return signer.digest()

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".",
                                             suffix=_UNFINISHED)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _without_dates(value: Any, at: KeyPath, dated: list[tuple[KeyPath, bool]]) -> Any:
    """`value` with each date (a schedule's `from: 2026-12-24`) as its ISO text, and where
    each was (and whether it had a time) in `dated`: marshal holds no dates."""
    if isinstance(value, dict):
        return {key: _without_dates(item, (*at, key), dated) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_dates(item, (*at, index), dated) for index, item in enumerate(value)]
    if isinstance(value, datetime.date):
        dated.append((at, isinstance(value, datetime.datetime)))
        return value.isoformat()
    return value


def _with_dates(sections: dict[str, Any], dated: tuple[tuple[KeyPath, bool], ...]) -> None:
    """The dates `_without_dates` wrote as text, read back in place."""
    for at, with_time in dated:
        holder: Any = sections
        for part in at[:-1]:
            holder = holder[part]
        text = holder[at[-1]]
        holder[at[-1]] = (datetime.datetime.fromisoformat(text) if with_time
                          else datetime.date.fromisoformat(text))

