"""The workers of one server, seen from any of them: each publishes its state (rules
version, metrics) to a file beside the others', so an answer about the server (health,
metrics, a reload) covers every worker, whichever one a request reached."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

# Gauges that are not summed across workers: how they combine instead.
_GAUGES: Mapping[str, Callable[[Iterable[float]], float]] = MappingProxyType({
    "ep_store_up": min, "ep_rules_loaded_timestamp_seconds": max})


class WorkerBoard:
    """Worker states in `directory` (one JSON file a worker, replaced atomically)."""

    def __init__(self, directory: Path, *, stale_after: float = 10.0) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.stale_after = stale_after

    @property
    def _own(self) -> Path:
        return self.directory / f"{self.pid}.json"

    def publish(self, state: dict[str, Any]) -> None:
        """Replace this worker's state; raises OSError when it cannot be written. Safe from
        several threads at once (the reload thread publishes too): each writes its own
        temporary file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{self.pid}.{threading.get_ident()}.tmp"
        temporary.write_text(json.dumps({**state, "pid": self.pid, "at": time.time()}))
        os.replace(temporary, self._own)

    def states(self) -> list[dict[str, Any]]:
        """Every live worker's last state, this one's included, by pid."""
        found = []
        now = time.time()
        for path in sorted(self.directory.glob("*.json")) if self.directory.exists() else ():
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue   # being replaced, or gone
            pid = state.get("pid")
            if not isinstance(pid, int) or now - float(state.get("at", 0)) > self.stale_after \
                    or not _alive(pid):
                continue
            found.append(state)
        return sorted(found, key=lambda s: s["pid"])

    def leave(self) -> None:
        self._own.unlink(missing_ok=True)


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
    gauges summed unless they say something else (the store is up only if it is for all)."""
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
        combine = _GAUGES.get(name, sum) if families[name].type == "gauge" else sum
        families[name].add_sample(sample_name, dict(labels), combine(seen))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
