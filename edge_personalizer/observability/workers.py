"""The workers of one server, seen from any of them: each publishes its state (rules
version, metrics) to a file beside the others', so an answer about the server (health,
metrics, a reload) covers every worker, whichever one a request reached.

A worker that is gone (killed outright, or stopped) leaves its counts behind: the counters
it last published are folded into the board's retired counts, which the server's metrics
keep adding, so a whole-server counter does not go backwards when a worker is replaced
(Prometheus would read a reset, and a rate over it would be wrong).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

# Gauges that are not summed across workers: how they combine instead.
# (A worker that cannot publish tells only when it answers: 1 if it, or another whose
# last state got through, cannot.)
_GAUGES: Mapping[str, Callable[[Iterable[float]], float]] = MappingProxyType({
    "ep_store_up": min, "ep_rules_loaded_timestamp_seconds": max,
    "ep_worker_state_unpublished": max, "ep_learning_troubles": max})
_CREATED = "_created"      # a counter's creation time: the earliest is the server's
_RETIRED = "retired.prom"  # the counts of workers gone, in the Prometheus text format
_LOCK = ".lock"
logger = logging.getLogger(__name__)


def board_directory(data_dir: Path, server_pid: int) -> Path:
    """Where the workers of the server `server_pid` publish their states."""
    return data_dir / "workers" / str(server_pid)


def start_afresh(directory: Path) -> None:
    """Empties a server's board before its workers start: a server given the pid of an
    earlier one (pid 1 in a container, on a kept volume) must not count that one's
    workers as its own. The boards of servers gone go too (one a restart, else): those of
    no process here, untouched for a minute (a server of another pid namespace sharing
    data_dir, or the workers of a server killed outright, write theirs every second)."""
    shutil.rmtree(directory, ignore_errors=True)
    for board in directory.parent.glob("*") if directory.parent.is_dir() else ():
        if board.name.isdigit() and board.is_dir() and not _alive(int(board.name)) \
                and time.time() - _last_written(board) > _IDLE_BOARD:
            shutil.rmtree(board, ignore_errors=True)


_IDLE_BOARD = 60.0   # seconds


def _last_written(board: Path) -> float:
    """When anything in a board was last written (its states, its lock, its retired)."""
    try:
        return max((path.stat().st_mtime for path in board.iterdir()),
                   default=board.stat().st_mtime)
    except OSError:
        return time.time()   # (going away, or unreadable: kept)


class WorkerBoard:
    """Worker states in `directory` (one JSON file a worker, replaced atomically)."""

    def __init__(self, directory: Path, *, stale_after: float = 10.0) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.stale_after = stale_after
        self._published = False
        self._left = False   # once its counts are handed on, a worker publishes no more
        self._publishing = threading.Lock()   # the reload thread publishes too
        self.error: str | None = None   # why this worker's last state could not be written

    @property
    def _own(self) -> Path:
        return self.directory / f"{self.pid}.json"

    def publish(self, state: dict[str, Any]) -> None:
        """Replace this worker's state; raises OSError when it cannot be written (and
        `error` says why until it can). Safe from several threads at once (the reload
        thread publishes too): each writes its own temporary file."""
        try:
            self._publish(state)
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        self.error = None

    def _publish(self, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._publishing:
            if self._left:
                return
            if not self._published:   # a state left under this pid is a dead worker's
                self._published = True
                with self._locked():
                    self._retire([self._own])
        temporary = self.directory / f".{self.pid}.{threading.get_ident()}.tmp"
        temporary.write_text(json.dumps({**state, "pid": self.pid, "at": time.time()}))
        with self._publishing:
            if not self._left:
                os.replace(temporary, self._own)
                return
        temporary.unlink(missing_ok=True)

    def states(self) -> list[dict[str, Any]]:
        """Every live worker's last state, this one's included, by pid."""
        return [state for _, state in self._read(live=True)]

    def others_metrics(self) -> list[str]:
        """The metrics of the other live workers and the retired counts of the workers gone
        (the ones found dead now folded in first), read at one moment: a worker that
        leaves meanwhile counts once."""
        if not self.directory.exists():
            return []
        try:
            with self._locked():
                self._retire([path for path, _ in self._read(live=False)])
                return self._others_metrics()
        except OSError:   # the board cannot be written (a full disk): read as it stands
            return self._others_metrics()

    def _others_metrics(self) -> list[str]:
        others = [state["metrics"] for _, state in self._read(live=True)
                  if state["pid"] != self.pid and isinstance(state.get("metrics"), str)]
        retired = self._retired_text()
        return [*others, retired] if retired else others

    def leave(self) -> None:
        """This worker stops: the counts it last published are handed on to the retired,
        and it publishes no more (a reload still under way would count them twice)."""
        with self._publishing:
            self._left = True
            if not self._own.exists():
                return
            try:
                with self._locked():
                    self._retire([self._own])
            except OSError:   # (a full disk: its counts stay in its own state, retired
                pass          # by the next worker that reads the board)

    def _read(self, *, live: bool) -> list[tuple[Path, dict[str, Any]]]:
        """The states of the live workers (fresh, their process running), or of the dead."""
        found = []
        now = time.time()
        for path in sorted(self.directory.glob("*.json")) if self.directory.exists() else ():
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue   # being replaced, or gone
            pid = state.get("pid")
            if not isinstance(pid, int):
                continue
            if live and now - float(state.get("at", 0)) <= self.stale_after and _alive(pid):
                found.append((path, state))
            elif not live and not _alive(pid):
                found.append((path, state))
        return sorted(found, key=lambda found: int(found[1]["pid"]))

    def _retire(self, paths: list[Path]) -> None:
        """Folds the counters of the states at `paths` into the retired counts and removes
        the states (the board's lock held)."""
        gone = []
        for path in paths:
            try:
                gone.append(json.loads(path.read_text()).get("metrics"))
            except (OSError, ValueError):
                continue
        texts = [text for text in gone if isinstance(text, str)]
        if texts:
            folded = cumulative(combined_metrics([self._retired_text(), *texts]).decode())
            temporary = self.directory / f".{_RETIRED}.{self.pid}.tmp"
            temporary.write_text(folded)
            os.replace(temporary, self.directory / _RETIRED)
        for path in paths:
            path.unlink(missing_ok=True)

    def _retired_text(self) -> str:
        try:
            return (self.directory / _RETIRED).read_text()
        except OSError:   # none yet, or the board unreadable
            return ""

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The board's lock, across the server's processes (folding a worker's counts
        twice would count them twice)."""
        with open(self.directory / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class Publisher:
    """Publishes this worker's `state()` to its board every second (and when asked: after
    a reload), telling when it cannot (the log, and `unpublished(1)` for the metrics) and
    when it can again; hands its counts on when it stops."""

    def __init__(self, board: WorkerBoard, state: Callable[[], dict[str, Any]],
                 unpublished: Callable[[int], None]) -> None:
        self.board = board
        self.state = state
        self.unpublished = unpublished
        self._published = True   # the last publishing worked

    def publish(self) -> None:
        self.unpublished(0)   # (what the state tells, once published)
        try:
            self.board.publish(self.state())
        except OSError as exc:   # a full disk: this worker's answers for the server go stale
            if self._published:
                logger.warning("this worker's state cannot be published to %s: %s",
                               self.board.directory, exc)
            self._published = False
            self.unpublished(1)
            return
        if not self._published:
            logger.warning("this worker's state is published to %s again",
                           self.board.directory)
        self._published = True

    async def run(self) -> None:
        try:
            while True:
                self.publish()
                await anyio.sleep(1.0)
        finally:
            self.board.leave()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def combined_metrics(expositions: Iterable[str]) -> bytes:
    """Prometheus text of several workers as one server's: counters and histograms summed,
    gauges summed unless they say something else (the store is up only if it is for all;
    a counter was created when its first worker's was)."""
    families: dict[str, Metric] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[float]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            known = families.setdefault(family.name, Metric(family.name, family.documentation,
                                                            family.type))
            for point in family.samples:
                key = (known.name, point.name, tuple(sorted(point.labels.items())))
                values.setdefault(key, []).append(point.value)
    for (name, sample_name, labels), seen in values.items():
        families[name].add_sample(sample_name, dict(labels), _combine(families[name])(seen))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


def _combine(family: Metric) -> Callable[[Iterable[float]], float]:
    if family.type != "gauge":
        return sum
    if family.name.endswith(_CREATED):
        return min
    return _GAUGES.get(family.name, sum)


def cumulative(text: str) -> str:
    """The families of a Prometheus text that count from the start (counters, histograms,
    summaries, and when each was created), without the gauges of a moment."""
    kept = [family for family in text_string_to_metric_families(text)
            if family.type != "gauge" or family.name.endswith(_CREATED)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(kept))
    return generate_latest(registry).decode()


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
