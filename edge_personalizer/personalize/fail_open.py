"""The one fail-open boundary: an error of ours in a stage is logged and counted, and the
request goes on as if personalization were not there."""

from __future__ import annotations

import logging
from types import TracebackType

from ..observability.logs import escaped
from .exchange import Observer

logger = logging.getLogger("edge_personalizer.personalize")


class Stage:
    """One guarded stage of one request: `failed` tells whether it raised."""

    __slots__ = ("name", "path", "observer", "failed")

    def __init__(self, name: str, path: str, observer: Observer) -> None:
        self.name = name
        self.path = path
        self.observer = observer
        self.failed = False

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        if kind is None or not issubclass(kind, Exception):
            return False   # success, or cancellation and exits: never contained
        # Never a 500 caused by personalization: the caller serves what it has.
        logger.error("%s failed for %s; serving it unchanged", self.name, escaped(self.path),
                     exc_info=error)
        self.observer.stage_failed(self.name)
        self.failed = True
        return True


class FailOpen:
    """Contains any error of a personalization stage (classify, decide, headers, rewrite).
    A class, not a generator context manager: it guards several stages of every request."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def stage(self, name: str, path: str) -> Stage:
        return Stage(name, path, self.observer)

    def edit_failed(self, exc: Exception) -> None:
        """A page edit failed (the rewriter logged it and left its element as it was):
        counted as a failure of the rewrite stage. (The rewriter holds this method, not
        one of its response's: that would be a reference cycle.)"""
        self.observer.stage_failed("rewrite")
