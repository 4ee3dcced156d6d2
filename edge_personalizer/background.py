"""The lifespan's long-running tasks (the counts' flusher, the table readers, the trainer,
the rules watcher, the state publisher), each kept running on its own.

Started straight into the lifespan's task group, one task's exception cancelled the group:
the server went on answering pages with nothing counted, learned or reloaded, and said
nothing of it but granian's "ASGI Lifespan errored". Here a task that fails is logged with
its traceback (once per cause while it keeps failing), started again after a pause, and
shown by /__ep/health (`background`) until it has run a while without failing; the
others never notice, and startup never waits for a task that failed before it started.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .learn.troubles import Troubles, cause_of

logger = logging.getLogger(__name__)
PAUSE = 1.0     # seconds before a task that failed starts again
SETTLE = 60.0   # seconds a task started again runs without failing before health is ok


class BackgroundTasks:
    """Runs each background task of the lifespan in a task group, kept running.

    `start(group, name, run)` waits until `run(task_status=...)` says it has started (or
    until it failed); `start_soon(group, name, run)` does not wait for `run()`. Either
    returns of itself only when `run` does; cancelling the group cancels it.
    """

    def __init__(self, *, pause: float = PAUSE, settle: float = SETTLE,
                 clock: Callable[[], float] = time.time) -> None:
        self.pause = pause
        self.settle = settle
        self.troubles = Troubles(logger, clock)   # by task name

    async def start(self, group: TaskGroup, name: str,
                    run: Callable[..., Awaitable[None]]) -> None:
        await group.start(self._kept, name, run, True)

    def start_soon(self, group: TaskGroup, name: str,
                   run: Callable[[], Awaitable[None]]) -> None:
        group.start_soon(self._kept, name, run, False)

    def health(self) -> dict[str, Any]:
        """For /__ep/health: `ok`, or `restarting` with each task that failed lately."""
        if not self.troubles:
            return {"status": "ok"}
        return {"status": "restarting", "troubles": self.troubles.report(),
                "consequence": "pages are served as before; what a task does (counting, "
                "learning, reading what was learned, watching the rules) waits while it "
                "starts again"}

    async def _kept(self, name: str, run: Callable[..., Awaitable[None]], reports: bool, *,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        status = _StartedOnce(task_status)
        call = functools.partial(run, task_status=status) if reports else run
        while True:
            failure = await self._attempt(name, call)
            if failure is None:
                return
            self.troubles.failed(
                name, cause_of(failure), f"failed ({type(failure).__name__}: {failure}); "
                f"it starts again {self.pause:g} s after each failure", exc=failure,
                level=logging.ERROR)
            status.started()   # startup goes on without it
            await anyio.sleep(self.pause)

    async def _attempt(self, name: str, call: Callable[[], Awaitable[None]]
                       ) -> Exception | None:
        """Runs `call` once (in this task: its `task_status` is this task's); what it
        raised, or None when it returned."""
        failure: Exception | None = None
        async with anyio.create_task_group() as attempt:
            if name in self.troubles:
                attempt.start_soon(self._settles, name)
            try:
                await call()
            except Exception as exc:   # any fault: the other tasks and the server go on
                failure = exc
            attempt.cancel_scope.cancel()
        return failure

    async def _settles(self, name: str) -> None:
        await anyio.sleep(self.settle)
        self.troubles.cleared(name)


class _StartedOnce(TaskStatus[None]):
    """A task status that passes on the first `started` only: a task started again after a
    failure says it has started once more, and its starter stopped waiting long ago."""

    def __init__(self, status: TaskStatus[None]) -> None:
        self._status = status
        self._told = False

    def started(self, value: None = None) -> None:
        if not self._told:
            self._told = True
            self._status.started()
