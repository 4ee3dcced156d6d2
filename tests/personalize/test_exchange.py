from __future__ import annotations

from edge_personalizer.personalize.exchange import Exchange
from edge_personalizer.rules.model import NO_DECISION, Decision

from ..factories import default_classifier, make_request


def test_the_decision_is_made_once_and_only_when_read() -> None:
    made: list[Decision] = []

    def decide(exchange: Exchange) -> Decision:
        made.append(NO_DECISION)
        return NO_DECISION

    visitor = default_classifier().visitor(make_request("/"), now=0.0)
    exchange = Exchange(visitor, {"type": "http"}, decide, debug=False, preview=False)
    assert made == []
    assert exchange.decision is NO_DECISION and exchange.decision is NO_DECISION
    assert len(made) == 1
