"""What reading a rule file gave, kept on disk by the file's digest: a restarted worker, or
a reload that must compile every file again (a segment changed), does not read the YAML
of an unchanged file again. Reading is most of loading a big rule set; compiling, with
every check and every mistake named at its file and line, runs as before (the line of
every value is kept with the values).

An entry is the file's values and marks in `marshal` form (about a fifth of the time
reading the YAML takes), signed with a key only the site has: marshal is not made to
read bytes someone else wrote, so an entry whose signature does not hold is never given
to it. An entry also names the Python that wrote it, PyYAML and the readers' code, so an
upgrade reads every file again. A file whose values marshal cannot hold (a date) or
that has a mistake is not kept.

Entries live in `<data_dir>/rule-cache/<rules directory>-<code and key>/`, one file
each, written whole and then renamed (workers of one server share them); after a load,
the entries of files no longer there are removed. (The folders of earlier versions stay
until removed by hand.) A cache that cannot be written or read costs
nothing but the reading it would have saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import logging
import marshal
import os
import tempfile
import time
from functools import cache
from pathlib import Path
from types import MappingProxyType

import yaml

from . import loader, quick_yaml, yaml_line, yaml_scalars
from .loader import RuleFile

__all__ = ["ParseCache"]

logger = logging.getLogger(__name__)

_SUFFIX = ".parse"
_UNFINISHED = ".tmp"          # an entry being written
_UNFINISHED_FOR = 600.0       # seconds after which one was cut off, and is removed
_SIGNATURE = hashlib.sha256().digest_size


@cache
def _format() -> bytes | None:
    """What an entry was written by: this Python (marshal's format goes with it), PyYAML
    and the code of the readers (what a file's values and marks are); None when the
    readers' code cannot be read (a frozen build): then nothing is kept."""
    readers = hashlib.sha256(yaml.__version__.encode())
    try:
        for module in (loader, quick_yaml, yaml_line, yaml_scalars):
            readers.update(Path(str(module.__file__)).read_bytes())
    except (OSError, TypeError) as exc:
        logger.warning("rule files' parses are not kept: the readers' code cannot be read "
                       "(%s)", exc)
        return None
    return b"ep-parse/1 " + importlib.util.MAGIC_NUMBER + readers.digest()


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
        self._failed = False   # writing failed once: said once, then tried quietly

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
            sections, marks = marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            return None
        if not isinstance(sections, dict) or not isinstance(marks, dict):
            return None
        return RuleFile(path, MappingProxyType(sections), MappingProxyType(marks))

    def put(self, digest: bytes, rule_file: RuleFile) -> None:
        """Keep a file's parse (one read without mistakes)."""
        if self._format is None:
            return
        try:
            body = marshal.dumps((dict(rule_file.sections), dict(rule_file.marks)))
        except ValueError:   # a value marshal cannot hold (a date): read again each time
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
        """Remove the entries of files that are no longer there, and what writes cut off
        (a process stopped while writing) left behind."""
        wanted = {digest.hex() + _SUFFIX for digest in digests}
        stale = time.time() - _UNFINISHED_FOR
        with contextlib.suppress(OSError):
            for entry in self.directory.iterdir():
                if entry.suffix == _SUFFIX and entry.name not in wanted or \
                        entry.suffix == _UNFINISHED and entry.stat().st_mtime < stale:
                    entry.unlink(missing_ok=True)

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

