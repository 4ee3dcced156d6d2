"""Each background task of the lifespan is kept running on its own: one that fails is
logged, starts again after a pause, is shown by health, and stops no other."""

from __future__ import annotations

import logging

import anyio
import pytest
from anyio.abc import TaskStatus

from edge_personalizer.background import BackgroundTasks

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_task_that_fails_starts_again_and_is_logged_once_per_cause(
        caplog: pytest.LogCaptureFixture) -> None:
    # A fault in the rules watcher or the state publisher used to end the lifespan's task
    # group: every background task of the worker stopped, and nothing said so but a line.
    runs = 0

    async def fails_twice() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise FileNotFoundError(2, "No such file or directory")

    kept = BackgroundTasks(pause=0.01)
    async with anyio.create_task_group() as tasks:
        kept.start_soon(tasks, "the rules watcher", fails_twice)
    assert runs == 3
    told = [r for r in caplog.records if r.name == "edge_personalizer.background"]
    assert len(told) == 1 and told[0].levelno == logging.ERROR
    assert told[0].getMessage().startswith(
        "the rules watcher: failed (FileNotFoundError: [Errno 2] No such file or directory); "
        "it starts again 0.01 s after each failure")
    assert told[0].exc_info is not None   # with its traceback


async def test_one_task_failing_stops_no_other_and_health_says_it_restarts() -> None:
    # The readers, the flusher and the trainer were started straight into the lifespan's
    # task group: a table that did not decode ended the group, and counting with it.
    ticks = 0

    async def counts() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def breaks() -> None:
        raise OverflowError("cannot convert float infinity to integer")

    kept = BackgroundTasks(pause=0.05, settle=3600)
    assert kept.health() == {"status": "ok"}
    async with anyio.create_task_group() as tasks:
        kept.start_soon(tasks, "the counts' flusher", counts)
        kept.start_soon(tasks, "the bandit-weights reader", breaks)
        await anyio.sleep(0.3)
        tasks.cancel_scope.cancel()
    assert ticks > 10
    health = kept.health()
    assert health["status"] == "restarting"
    (trouble,) = health["troubles"]
    assert trouble["what"] == "the bandit-weights reader" and trouble["times"] > 2
    assert "OverflowError: cannot convert float infinity to integer" in trouble["detail"]


async def test_health_is_ok_again_once_a_restarted_task_has_run_a_while(
        caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def fails_once() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("payload")
        await anyio.sleep(3600)

    caplog.set_level(logging.INFO, "edge_personalizer.background")
    kept = BackgroundTasks(pause=0.01, settle=0.1)
    async with anyio.create_task_group() as tasks:
        kept.start_soon(tasks, "the trainer", fails_once)
        await anyio.sleep(0.05)
        assert kept.health()["status"] == "restarting"
        await anyio.sleep(0.2)
        assert kept.health() == {"status": "ok"}
        tasks.cancel_scope.cancel()
    assert "the trainer: works again (it failed 1 times)" in caplog.text


async def test_startup_goes_on_when_a_task_fails_before_it_has_started() -> None:
    # A reader whose first poll met a bad table raised out of `tasks.start`: the lifespan
    # errored and the server served with no flusher, trainer, readers or rules watcher.
    runs = 0

    async def first_poll(*, task_status: TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RecursionError("maximum recursion depth exceeded")
        task_status.started()
        await anyio.sleep(3600)

    kept = BackgroundTasks(pause=0.01)
    async with anyio.create_task_group() as tasks:
        with anyio.fail_after(2):
            await kept.start(tasks, "the affinity-model reader", first_poll)
        await anyio.sleep(0.1)
        assert runs == 2   # started again, and its second `started` troubles no one
        tasks.cancel_scope.cancel()
