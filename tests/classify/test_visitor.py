from __future__ import annotations

from edge_personalizer.classify.visitor import (
    DIRECT,
    FIELD_ROOTS,
    UNKNOWN_GEO,
    Device,
    LocalTime,
    Referral,
    field_getter,
)
from edge_personalizer.rules.fields import FIELDS

from ..factories import make_visitor, unset_fields_take_their_declared_defaults


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


def test_every_field_reads_the_same_directly_as_step_by_step() -> None:
    visitor = make_visitor(
        "/x", query="utm_source=news&q=shoes",
        headers={"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) "
                               "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
                 "referer": "https://www.google.com/", "accept-language": "de-CH,de;q=0.9",
                 "cookie": "plan=pro"})
    paths = [*FIELDS, "request.header.referer", "request.query.q", "request.cookie.plan",
             "request.header.missing", "request.path", "request.client_ip", "request.header",
             "geo.nowhere", "device.type.deeper", "nonsense.field", "referral"]
    for path in paths:
        head, _, rest = path.partition(".")
        parts = tuple(rest.split(".")) if rest else ()
        walked = visitor.walk(head if head in FIELD_ROOTS else None, parts)
        assert field_getter(path)(visitor) == walked, path
        assert visitor.field(path) == walked, path
    assert visitor.field("request.header.referer") == "https://www.google.com/"
    assert visitor.field("request.cookie.plan") == "pro"
    assert visitor.field("device.type") == "mobile"


def test_a_local_time_left_unset_takes_the_defaults_its_fields_declare() -> None:
    assert unset_fields_take_their_declared_defaults(
        LocalTime(hour=18, weekday="mon", daypart="evening", date="2026-11-23",
                  time_zone="UTC")) == []
