"""RuleBook: the rule set being served, swapped whole on reload, the last good one kept."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import RuleError
from .loader import RuleFiles, load_rule_directory

logger = logging.getLogger(__name__)


class RuleBook:
    """Holds the serving rule set of one directory.

    Construction loads the directory and raises RuleError when it is invalid (startup
    fails fast). `reload()` never raises: an invalid change is logged, kept as
    `last_error`, and the previous set goes on serving.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.current: RuleFiles = load_rule_directory(directory)
        self.last_error: str | None = None

    def reload(self) -> bool:
        """Load the directory again; True when a new set is now serving."""
        try:
            fresh = load_rule_directory(self.directory)
        except RuleError as exc:
            self.last_error = str(exc)
            logger.error("rules not reloaded, version %s keeps serving: %s",
                         self.current.version, exc)
            return False
        self.last_error = None
        if fresh.version != self.current.version:
            logger.info("rules reloaded: version %s -> %s (%d rules in %d files)",
                        self.current.version, fresh.version, fresh.rule_count, len(fresh.files))
        self.current = fresh   # one reference swap: readers see the old set or the new one
        return True
