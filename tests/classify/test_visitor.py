from __future__ import annotations

from edge_personalizer.classify.visitor import DIRECT, UNKNOWN_GEO, Device, Referral

from ..factories import make_visitor


def test_values_are_immutable_and_defaults_sane() -> None:
    assert DIRECT == Referral("direct", "direct")
    assert UNKNOWN_GEO.country is None and UNKNOWN_GEO.source == "none"
    assert Device("bot").bot and not Device("mobile").bot


def test_field_paths_reach_mappings_and_properties() -> None:
    visitor = make_visitor("/x", query="a=1")
    assert visitor.field("request.query.a") == "1"
    assert visitor.field("profile.days_since_first") == 0
    assert visitor.field("referral") == DIRECT
    assert visitor.field("request.query.a.deeper") is None
