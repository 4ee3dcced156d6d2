"""The one fail-open boundary: an error of ours in a stage is logged and counted, and the
request goes on as if personalization were not there."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from .exchange import Observer

logger = logging.getLogger("edge_personalizer.personalize")


class Outcome:
    """Whether the guarded stage failed."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False


class FailOpen:
    """Contains any error of a personalization stage (classify, decide, headers, rewrite)."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    @contextmanager
    def stage(self, name: str, path: str) -> Iterator[Outcome]:
        outcome = Outcome()
        try:
            yield outcome
        except Exception:
            # Never a 500 caused by personalization: the caller serves what it has.
            logger.exception("%s failed for %s; serving it unchanged", name, path)
            self.observer.stage_failed(name)
            outcome.failed = True
