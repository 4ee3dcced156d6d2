"""RuleBook: the rule set being served, swapped whole on reload, the last good one kept."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import anyio

from ..errors import RuleError, RuleSetInvalid
from .compiler import compile_rules
from .loader import read_rule_directory
from .model import RuleSet

logger = logging.getLogger(__name__)


def check_rules(directory: Path) -> tuple[RuleSet, list[RuleError]]:
    """Load and compile a rules directory, with every error in every file."""
    rule_files, errors = read_rule_directory(directory)
    ruleset, compile_errors = compile_rules(rule_files)
    return ruleset, [*errors, *compile_errors]


def load_rules(directory: Path) -> RuleSet:
    """The compiled rule set, or RuleSetInvalid with every error."""
    ruleset, errors = check_rules(directory)
    if errors:
        raise RuleSetInvalid(errors)
    return ruleset


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of everything under the directory: cheap to
    take every second, and any edit changes it."""
    out = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            out.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(out))


class RuleBook:
    """Holds the serving rule set of one directory.

    Construction loads the directory and raises RuleError when it is invalid (startup
    fails fast). `reload()` never raises: an invalid change is logged, kept as
    `last_error`, and the previous set goes on serving.
    """

    def __init__(self, directory: Path, *,
                 on_reload: Callable[[bool], None] | None = None) -> None:
        self.directory = directory
        self._fingerprint = _fingerprint(directory)
        self.current: RuleSet = load_rules(directory)
        self.last_error: str | None = None
        self._on_reload = on_reload

    def reload(self) -> bool:
        """Load the directory again; True when the served set is now the directory's."""
        self._fingerprint = _fingerprint(self.directory)
        try:
            fresh = load_rules(self.directory)
        except RuleError as exc:
            errors = exc.errors if isinstance(exc, RuleSetInvalid) else [exc]
            self.last_error = "; ".join(str(e) for e in errors[:20])
            logger.error("rules not reloaded, version %s keeps serving:\n%s",
                         self.current.version, "\n".join(str(e) for e in errors))
            if self._on_reload:
                self._on_reload(False)
            return False
        self.last_error = None
        if fresh.version != self.current.version:
            logger.info("rules reloaded: version %s -> %s (%d rules in %d files)",
                        self.current.version, fresh.version, len(fresh.rules), fresh.file_count)
            self.current = fresh   # one reference swap: a request sees the old set or the new
        if self._on_reload:
            self._on_reload(True)
        return True

    def changed_on_disk(self) -> bool:
        return _fingerprint(self.directory) != self._fingerprint

    async def watch(self, interval: float) -> None:
        """Reload whenever the directory changes; runs until cancelled. Compiling happens
        in a worker thread so requests keep flowing meanwhile."""
        while True:
            await anyio.sleep(interval)
            if await anyio.to_thread.run_sync(self.changed_on_disk):
                await anyio.to_thread.run_sync(self.reload)
