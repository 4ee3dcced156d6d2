"""Metrics: one Prometheus registry per app instance (no module-level collectors)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:   # the decisions counted are the rules', not a dependency
    from ..rules.model import Decision

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                           30)
_ADDED_BUCKETS: Final = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


class _Histogram:
    """A histogram observed on every request: plain counts, no lock (one event loop
    writes it; the scrape reads it on the same loop), exposed by _RequestMetrics."""

    __slots__ = ("name", "help", "bounds", "counts", "sum")

    def __init__(self, name: str, help: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.help = help
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)   # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def family(self) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)),
                            cumulative))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets,
                                     sum_value=self.sum)


class _LabeledCounter:
    """A counter with labels bumped on every request, lock-free like _Histogram."""

    __slots__ = ("name", "help", "labels", "values")

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, key: tuple[str, ...]) -> None:
        values = self.values
        values[key] = values.get(key, 0) + 1

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.help, labels=list(self.labels))
        for key, value in self.values.items():
            family.add_metric(list(key), value)
        return family


class _RequestMetrics:
    """Collector for what every request updates."""

    def __init__(self, *parts: _Histogram | _LabeledCounter) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield part.family()


class _Counting(Protocol):
    exposures: int
    conversions: int


class LearningState(Protocol):
    @property
    def attribution(self) -> _Counting: ...
    @property
    def counters(self) -> _Held: ...


class _Held(Protocol):
    dropped: int

    @property
    def held_keys(self) -> int: ...


class FlushState(Protocol):
    @property
    def healthy(self) -> bool: ...


class _Sized(Protocol):
    def __len__(self) -> int: ...


class TrainerState(Protocol):
    failures: int

    @property
    def troubles(self) -> _Sized: ...


class _LearningMetrics:
    """Exposures and conversions counted by this worker, the store's state, and what of
    the learning loop's work fails."""

    def __init__(self, learning: LearningState, flusher: FlushState,
                 trainer: TrainerState | None) -> None:
        self.learning = learning
        self.flusher = flusher
        self.trainer = trainer

    def collect(self) -> Iterator[Metric]:
        attribution, counters = self.learning.attribution, self.learning.counters
        yield CounterMetricFamily("ep_exposures", "Visitors counted as exposed to a rule or "
                                  "experiment variant", value=attribution.exposures)
        yield CounterMetricFamily("ep_conversions", "Conversions counted for a rule or "
                                  "experiment variant", value=attribution.conversions)
        yield CounterMetricFamily("ep_counts_dropped", "Counts dropped because too many "
                                  "waited for the store", value=counters.dropped)
        yield GaugeMetricFamily("ep_counts_waiting", "Count keys waiting for the store",
                                value=counters.held_keys)
        yield GaugeMetricFamily("ep_store_up", "1 when the store answered the last write (or, "
                                "with nothing to write, the last ping)",
                                value=1 if self.flusher.healthy else 0)
        if self.trainer is not None:
            yield CounterMetricFamily("ep_learning_failures", "Learning steps, or one bandit "
                                      "experiment's weights, that failed",
                                      value=self.trainer.failures)
            yield GaugeMetricFamily("ep_learning_troubles", "Parts of the learning loop failing "
                                    "now (a bandit experiment's weights, a learning task; see "
                                    "/__ep/health learning); 0 when all learn",
                                    value=len(self.trainer.troubles))


class _LogMetrics:
    """The log lines this worker dropped, and its background tasks started again after
    failing, read at scrape time."""

    def __init__(self, dropped: Callable[[], int], restarting: Callable[[], int]) -> None:
        self.dropped = dropped
        self.restarting = restarting

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("ep_log_lines_dropped", "Log lines dropped because the "
                                  "log stream (stderr) did not take them in time",
                                  value=self.dropped())
        yield GaugeMetricFamily("ep_background_restarting", "Background tasks (the counts' "
                                "flusher, a table reader, the trainer, the rules watcher) "
                                "that failed and start again (see /__ep/health background); "
                                "0 when all run", value=self.restarting())


class Metrics:
    """The counters an operator scrapes from /__ep/metrics.

    What every request touches (requests, latencies, decisions) is counted in plain
    Python objects read at scrape time; prometheus_client's own metrics take a lock per
    update, which cost ~8 us a request. The rare ones use prometheus_client directly.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = _LabeledCounter("ep_requests", "Requests answered, by status code",
                                        ("status",))
        self._statuses: dict[int, tuple[str]] = {}
        self.request_seconds = _Histogram("ep_request_duration_seconds",
                                          "Time from request to the last body byte",
                                          _LATENCY_BUCKETS)
        self.origin_seconds = _Histogram("ep_origin_latency_seconds",
                                         "Time until the origin's response headers arrived",
                                         _LATENCY_BUCKETS)
        self.origin_errors = Counter("ep_origin_errors", "Origin failures, by kind",
                                     ["kind"], registry=r)
        self.personalization_seconds = _Histogram(
            "ep_personalization_seconds", "Time personalization added to a request",
            _ADDED_BUCKETS)
        self.errors = Counter("ep_errors", "Errors inside edge-personalizer, by stage",
                              ["stage"], registry=r)
        self.decisions = _LabeledCounter("ep_decisions", "Variants served, by rule and variant",
                                         ("rule", "variant"))
        self.rules_loaded = Gauge("ep_rules_loaded_timestamp_seconds",
                                  "When the serving rule set was loaded", registry=r)
        self.profile_rejections = Counter(
            "ep_profile_cookies_rejected", "Profile cookies ignored, by reason "
            "(malformed, signature, oversized, expired, version)", ["reason"], registry=r)
        self.bots = Counter("ep_bot_requests", "Requests from bots, by category (search, ai, "
                            "social, monitor, other)", ["category"], registry=r)
        self.origin_busy_answers = Counter(
            "ep_origin_busy", "Requests answered 503 because the origin was busy, by reason "
            "(pool: no origin connection free in time; long_lived: too many long-lived "
            "responses; uploading: too many request bodies being sent)", ["reason"],
            registry=r)
        self.invalid_goals = Counter(
            "ep_goal_signals_invalid", "Goal headers, beacons or values ignored as invalid, by "
            "kind (header, beacon, value)", ["kind"], registry=r)
        self.rule_reload_failures = Counter("ep_rule_reload_failures",
                                            "Rule reloads rejected as invalid", registry=r)
        self._serving: str | None = None   # the version rules_serving tells
        self.rules_serving = Gauge(
            "ep_rules_serving", "Workers serving each version of the rules (one series "
            "while they agree)", ["version"], registry=r)
        self.reload_failing = Gauge(
            "ep_rules_reload_failing", "Workers whose last reload of the rules was refused "
            "(an edit on disk they do not serve)", registry=r)
        self.state_unpublished = Gauge(
            "ep_worker_state_unpublished", "1 when a worker's state cannot be written to "
            "the workers' board in data_dir (a full disk): the server's metrics, health and "
            "reload answers leave it out but when it answers", registry=r)
        r.register(_RequestMetrics(self.requests, self.request_seconds, self.origin_seconds,
                                   self.personalization_seconds, self.decisions))

    def serving(self, version: str) -> None:
        """This worker serves `version` of the rules now (the new series set before the
        old one goes: a scrape meanwhile never finds the worker in none)."""
        self.rules_serving.labels(version=version).set(1)
        if self._serving not in (None, version):
            self.rules_serving.remove(self._serving)
        self._serving = version

    # ProxyObserver
    def origin_responded(self, seconds: float) -> None:
        self.origin_seconds.observe(seconds)

    def origin_failed(self, kind: str) -> None:
        self.origin_errors.labels(kind=kind).inc()
        self.errors.labels(stage="origin").inc()

    def goal_invalid(self, kind: str) -> None:
        self.invalid_goals.labels(kind=kind).inc()

    def watch_learning(self, learning: LearningState, flusher: FlushState,
                       trainer: TrainerState | None = None) -> None:
        """Counts of the learning loop, read at scrape time."""
        self.registry.register(_LearningMetrics(learning, flusher, trainer))

    def watch_log(self, dropped: Callable[[], int],
                  restarting: Callable[[], int] = lambda: 0) -> None:
        """The log lines dropped (`dropped()`) and the background tasks failing and started
        again (`restarting()`), read at scrape time."""
        self.registry.register(_LogMetrics(dropped, restarting))

    def origin_busy(self, reason: str) -> None:
        self.origin_busy_answers.labels(reason=reason).inc()

    # personalize's Observer
    def personalization_took(self, seconds: float) -> None:
        self.personalization_seconds.observe(seconds)

    def stage_failed(self, stage: str) -> None:
        self.errors.labels(stage=stage).inc()

    def decided(self, decision: Decision) -> None:
        for choice in decision.slots.values():
            self.decisions.inc((choice.by, choice.variant))
        if decision.redirect_rule is not None:
            self.decisions.inc((decision.redirect_rule, "redirect"))
        if len(self.decisions.values) > 10_000:   # rules come and go with reloads
            self.decisions.values.clear()

    def bot_seen(self, category: str) -> None:
        self.bots.labels(category=category).inc()

    def profile_rejected(self, reason: str) -> None:
        self.profile_rejections.labels(reason=reason).inc()

    def request_finished(self, status: int, seconds: float) -> None:
        key = self._statuses.get(status)
        if key is None:
            key = self._statuses[status] = (str(status),)
        self.requests.inc(key)
        self.request_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
