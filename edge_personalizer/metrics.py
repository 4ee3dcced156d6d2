"""Metrics: one Prometheus registry per app instance (no module-level collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .rules.model import Decision

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_ADDED_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


class Metrics:
    """The counters an operator scrapes from /__ep/metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ep_requests", "Requests answered, by status code",
                                ["status"], registry=r)
        self._by_status: dict[int, Counter] = {}
        self._by_decision: dict[tuple[str, str], Counter] = {}
        self.request_seconds = Histogram("ep_request_duration_seconds",
                                         "Time from request to the last body byte",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.origin_seconds = Histogram("ep_origin_latency_seconds",
                                        "Time until the origin's response headers arrived",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.origin_errors = Counter("ep_origin_errors", "Origin failures, by kind",
                                     ["kind"], registry=r)
        self.personalization_seconds = Histogram(
            "ep_personalization_seconds", "Time personalization added to a request",
            buckets=_ADDED_BUCKETS, registry=r)
        self.errors = Counter("ep_errors", "Errors inside edge-personalizer, by stage",
                              ["stage"], registry=r)
        self.decisions = Counter("ep_decisions", "Variants served, by rule and variant",
                                 ["rule", "variant"], registry=r)
        self.rules_loaded = Gauge("ep_rules_loaded_timestamp_seconds",
                                  "When the serving rule set was loaded", registry=r)
        self.profile_rejections = Counter(
            "ep_profile_cookies_rejected", "Profile cookies ignored, by reason "
            "(malformed, signature, oversized, expired, version)", ["reason"], registry=r)
        self.bots = Counter("ep_bot_requests", "Requests from bots, by category (search, ai, "
                            "social, monitor, other)", ["category"], registry=r)
        self.rule_reload_failures = Counter("ep_rule_reload_failures",
                                            "Rule reloads rejected as invalid", registry=r)

    # ProxyObserver
    def origin_responded(self, seconds: float) -> None:
        self.origin_seconds.observe(seconds)

    def origin_failed(self, kind: str) -> None:
        self.origin_errors.labels(kind=kind).inc()
        self.errors.labels(stage="origin").inc()

    # PipelineObserver
    def personalization_took(self, seconds: float) -> None:
        self.personalization_seconds.observe(seconds)

    def stage_failed(self, stage: str) -> None:
        self.errors.labels(stage=stage).inc()

    def decided(self, decision: Decision) -> None:
        for choice in decision.slots.values():
            self._decision(choice.by, choice.variant).inc()
        if decision.redirect_rule is not None:
            self._decision(decision.redirect_rule, "redirect").inc()

    def _decision(self, rule: str, variant: str) -> Counter:
        child = self._by_decision.get((rule, variant))
        if child is None:
            if len(self._by_decision) > 10_000:   # rules come and go with reloads
                self._by_decision.clear()
            child = self._by_decision[(rule, variant)] = self.decisions.labels(
                rule=rule, variant=variant)
        return child

    def bot_seen(self, category: str) -> None:
        self.bots.labels(category=category).inc()

    def profile_rejected(self, reason: str) -> None:
        self.profile_rejections.labels(reason=reason).inc()

    def request_finished(self, status: int, seconds: float) -> None:
        # labels() builds its key on every call; the status codes seen are few.
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(status=str(status))
        child.inc()
        self.request_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
