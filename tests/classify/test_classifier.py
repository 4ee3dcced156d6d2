from __future__ import annotations

import random
import time
from typing import Any, cast
from urllib.parse import parse_qsl

import httpx

from edge_personalizer.classify.classifier import (
    Classifier,
    merge_headers,
    parse_query,
    request_info,
)
from edge_personalizer.classify.profile_codec import ProfileCodec
from edge_personalizer.classify.visitor import Resolvers, Visitor

from ..conftest import PROFILE_KEY
from ..factories import IPHONE, NOW, make_classifier, make_request, make_visitor
from ..servers import Server


class Asked:
    """The classifier, noting each part a visitor asks it to work out."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.parts: list[str] = []

    def __getattr__(self, part: str) -> Any:
        self.parts.append(part)
        return getattr(self.classifier, part)


def test_visitor_has_every_dimension() -> None:
    visitor = make_visitor(
        "/running/trail-shoe", query="utm_source=newsletter&utm_medium=email",
        headers={"user-agent": IPHONE, "accept-language": "de-CH,de;q=0.9",
                 "cookie": "crm_segment=vip; other=1", "x-cdn-pop": "FRA"},
        ip="81.2.69.142")
    assert visitor.field("referral.medium") == "email"
    assert visitor.field("referral.source") == "newsletter"
    assert visitor.field("geo.country") == "GB"
    assert visitor.field("geo.city") == "London"
    assert visitor.field("device.type") == "mobile"
    assert visitor.field("device.os") == "iOS"
    assert visitor.field("language.primary") == "de"
    assert visitor.field("time.time_zone") == "Europe/London"
    assert visitor.field("profile.visits") == 1
    assert visitor.field("profile.new") is True
    assert visitor.field("profile.interests.running") == 0.25
    assert visitor.field("request.path") == "/running/trail-shoe"
    assert visitor.field("request.query.utm_source") == "newsletter"
    assert visitor.field("request.cookie.crm_segment") == "vip"
    assert visitor.field("request.header.x-cdn-pop") == "FRA"
    assert visitor.field("request.header.X-CDN-Pop") is None   # header names are lower-case
    assert visitor.field("nonsense.path") is None
    assert visitor.field("geo.nonsense") is None


def test_a_bot_is_kept_no_profile() -> None:
    # It is never sent a profile cookie: `profile.stored` says so to rules and explain.
    bot = make_visitor("/", headers={"user-agent": "curl/8.5.0"})
    assert bot.device.type == "bot"
    assert bot.field("profile.stored") is False and bot.field("profile.visits") == 1
    assert make_visitor("/", headers={"user-agent": IPHONE}).field("profile.stored") is True
    # Its id comes from the tracker's maker of ids, as every visitor's (a replayed log
    # gives the same ids every time).
    classifier = make_classifier()
    assert classifier.profiles is not None
    classifier.profiles.new_id = lambda: "fixed-id"
    curl = classifier.visitor(make_request(headers={"user-agent": "curl/8.5.0"}), now=NOW)
    assert curl.profile.visitor_id == "fixed-id"


def test_parts_are_computed_only_when_read_and_once() -> None:
    asked = Asked(make_classifier())
    visitor = Visitor(make_request(ip="81.2.69.142"), resolve=cast(Resolvers, asked), now=NOW)
    assert asked.parts == []
    assert visitor.geo.country == "GB"
    assert visitor.geo.city == "London"
    assert asked.parts == ["geo"]
    assert visitor.time.time_zone == "Europe/London"   # from the geo already worked out
    assert visitor.device.type == visitor.device.type
    assert asked.parts == ["geo", "time", "device"]


def test_without_geo_database_geo_is_unknown_and_time_uses_site_zone() -> None:
    visitor = make_visitor(classifier=make_classifier(geo=False, time_zone="Asia/Tokyo"),
                           ip="81.2.69.142")
    assert visitor.geo.country is None
    assert visitor.time.time_zone == "Asia/Tokyo"


def test_to_dict_leaves_out_headers_cookies_and_internals() -> None:
    data = make_visitor(headers={"cookie": "session=secret", "user-agent": IPHONE}).to_dict()
    assert set(data) == {"referral", "geo", "device", "language", "time", "profile", "request"}
    assert "secret" not in repr(data)
    assert "scores" not in data["profile"] and data["profile"]["interests"] == {}


def test_queries_read_as_parse_qsl_reads_them() -> None:
    # Most queries need no decoding and are split directly: the same values either way.
    alphabet = "ab=&;%+2C é"
    rng = random.Random(7)
    queries = ["a", "a=", "=x", "a=1&&b=2", "a=b=c", "&", "a=1;b=2", "q=%C3%A9+x&q=2",
               "x=" + "&x=".join(map(str, range(100)))]
    queries += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
                for _ in range(3000)]
    for query in queries:
        expected: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True)[:64]:
            expected.setdefault(key, value)
        assert parse_query(query) == expected, query


def test_request_parsing() -> None:
    assert parse_query("q=shoes&q=boots&empty=") == {"q": "shoes", "empty": ""}
    request = request_info(method="get", path="/caf%C3%A9", query_string="", host="h",
                           headers=[("Cookie", "a=1"), ("cookie", "b=2"), ("X-A", "1"),
                                    ("x-a", "2")], client_ip=None)
    assert request.method == "GET" and request.path == "/café"
    assert request.cookies == {"a": "1", "b": "2"}
    assert request.headers["x-a"] == "1, 2"


def test_accept_is_read_case_folded() -> None:
    # media types are case-insensitive: every test of what a client asks for reads one case
    merged = merge_headers([(b"accept", b"TEXT/HTML"), (b"accept", b"Application/XHTML+XML"),
                            (b"user-agent", b"Curl/8")])
    assert merged["accept"] == "text/html, application/xhtml+xml"
    assert merged["user-agent"] == "Curl/8"
    assert request_info(method="GET", path="/", query_string="", host="h", client_ip=None,
                        headers=[("Accept", "Text/Html")]).headers["accept"] == "text/html"


def test_the_profile_is_read_behind_as_many_cookies_as_a_browser_sends(proxy: Server) -> None:
    # Past the 64th cookie it was not read: a site whose visitors carry many marketing
    # cookies (the profile, set last, comes last) made each view a new visitor.
    page = {"accept": "text/html", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) "
            "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
    first = httpx.get(f"{proxy.url}/slotted/a", headers=page).cookies["ep_profile"]
    others = "; ".join(f"_mkt{n}=GA1.1.{n}" for n in range(200))
    again = httpx.get(f"{proxy.url}/slotted/a",
                      headers={**page, "cookie": f"{others}; ep_profile={first}"})
    codec = ProfileCodec([PROFILE_KEY.encode()])
    before, _ = codec.decode(first, time.time())
    after, _ = codec.decode(again.cookies["ep_profile"], time.time())
    assert before is not None and after is not None
    assert after[0] == before[0] and after[4] == before[4] + 1   # the same visitor, one view on
