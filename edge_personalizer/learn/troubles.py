"""What keeps the learning loop from doing part of its work, for the log and for health.

The trainer steps every second: a failure that comes back each step was logged each step
(a traceback a second, for good), while /__ep/health said nothing. Here each trouble is
held by what it stops ("updating bandit weights", "bandit hero-test"), told in the log
when it begins and when its cause changes, counted while it lasts, told again when it ends;
`report()` is what health shows meanwhile.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trouble:
    """One part of the work that fails: since when, how many times, and the last detail."""

    what: str
    cause: Hashable   # what tells one cause from another (the detail's numbers may vary)
    detail: str
    since: float
    times: int = 1


def cause_of(exc: BaseException) -> Hashable:
    """An exception's cause, alike each time the same code fails the same way: its type and
    where it was raised (its message may carry numbers that change every time)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = (frames[-1].filename, frames[-1].lineno) if frames else None
    return (type(exc).__name__, where)


class Troubles:
    """The troubles that last, by what they stop; each logged once per cause."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.time
                 ) -> None:
        self.logger = logger
        self.clock = clock
        self._held: dict[str, Trouble] = {}

    def failed(self, what: str, cause: Hashable, detail: str, *,
               exc: BaseException | None = None, level: int = logging.WARNING) -> None:
        """`what` failed (again): logged (with `exc`'s traceback) only when it begins or
        its cause is another than last time; it lasts until `cleared`."""
        held = self._held.get(what)
        if held is not None and held.cause == cause:
            self._held[what] = Trouble(what, cause, detail, held.since, held.times + 1)
            return
        self.logger.log(level, "%s: %s (told once while it lasts; see /__ep/health)", what,
                        detail, exc_info=exc)
        self._held[what] = (Trouble(what, cause, detail, self.clock()) if held is None
                            else Trouble(what, cause, detail, held.since, held.times + 1))

    def cleared(self, what: str) -> None:
        """`what` worked: its trouble, if it had one, ends (and the log says so)."""
        held = self._held.pop(what, None)
        if held is not None:
            self.logger.info("%s: works again (it failed %d times)", what, held.times)

    def clear_others(self, prefix: str, kept: set[str]) -> None:
        """The troubles of what starts with `prefix` but is not `kept` end (an experiment
        removed from the rules, paused or ended: nothing of it fails any more)."""
        for what in [what for what in self._held if what.startswith(prefix)]:
            if what not in kept:
                self.cleared(what)

    def __bool__(self) -> bool:
        return bool(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, what: object) -> bool:
        return what in self._held

    def report(self) -> list[dict[str, Any]]:
        """Each trouble, for /__ep/health: what fails, since when, how often, and why."""
        return [{"what": t.what, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                        time.gmtime(t.since)),
                 "times": t.times, "detail": t.detail}
                for t in sorted(self._held.values(), key=lambda t: t.since)]
