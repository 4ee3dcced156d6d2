"""Segment keys: bounded by the rules, read back into the decision they stand for, and
through the real server the page an edge asks for under a key is rendered for that key."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.personalize.segments import SegmentBook, _tag, segment_of
from edge_personalizer.rules.book import RuleBook
from edge_personalizer.rules.evaluator import decide
from edge_personalizer.rules.template import Template

from ..conftest import PROFILE_KEY, ROOT
from ..factories import make_classifier, make_request
from ..servers import Server, start_proxy
from . import keyed_get

RULES = """
slots:
  hero: {}
  banner: {}
rules:
  - name: echo-name
    when: {request.query.name: {exists: true}}
    then:
      banner: {html: "<p>Hi {{ request.query.name }}</p>"}
  - name: city
    when: {request.query.city: "1"}
    then:
      banner: {html: "<p>Deals in {{ geo.city | default: 'your town' }}</p>"}
  - name: greet
    when: {request.query.greet: "1"}
    then:
      banner: {html: "<p>{{ language.primary }} / {{ device.browser }} / {{ device.os }}</p>"}
  - name: welcome
    when: {request.query.welcome: "1"}
    then:
      banner: {html: "<p>Welcome, {{ referral.source }} reader</p>"}
experiments:
  - name: hero-test
    slot: hero
    audience: {request.query.exp: "on"}
    holdout: 0
    variants:
      control: {weight: 50}
      bold: {weight: 50, html: "<h1>Bold</h1>"}
"""


@pytest.fixture
def book(tmp_path: Path) -> RuleBook:
    (tmp_path / "site.yaml").write_text(RULES)
    return RuleBook(tmp_path)


CLASSIFIER = make_classifier()
BROWSER = {"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0",
           "accept": "text/html"}


def visitor(query: str, ip: str | None = None):  # type: ignore[no-untyped-def]
    return CLASSIFIER.visitor(make_request("/", query=query, headers=BROWSER, ip=ip),
                              now=1_795_000_000.0, page_view=True)


def test_raw_request_data_never_enters_the_key(book: RuleBook) -> None:
    keys = set()
    for name in ("alice", "bob", "<script>"):
        seen = visitor(f"name={name}")
        segment = segment_of(decide(book.current, seen), seen)
        assert not segment.shareable
        keys.add(segment.key)
    assert len(keys) == 1


def test_bounded_fields_key_the_page_per_value(book: RuleBook) -> None:
    london, sweden = visitor("city=1", "81.2.69.142"), visitor("city=1", "89.160.20.112")
    one = segment_of(decide(book.current, london), london)
    other = segment_of(decide(book.current, sweden), sweden)
    assert one.shareable and other.shareable and one.key != other.key
    again = visitor("city=1", "81.2.69.142")
    assert segment_of(decide(book.current, again), again) == one


# Names a visitor writes: any 1-8 letters of Accept-Language, the product a User-Agent
# names (a CFNetwork agent's app is its browser, and Darwin its OS), any utm_source.
MADE_UP = [("greet=1", {"accept-language": "qqqqqqqq"}, "qqqqqqqq"),
           ("greet=1", {"accept-language": "zzzzzzzz"}, "zzzzzzzz"),
           ("greet=1", {"user-agent": "Whatever123/1.0 CFNetwork/1.0 Darwin/1.0"}, "Whatever123"),
           ("greet=1", {"user-agent": "Whatever456/1.0 CFNetwork/1.0 Darwin/1.0"}, "Whatever456"),
           ("welcome=1&utm_source=ATTACKER-1", {}, "attacker-1"),
           ("welcome=1&utm_source=ATTACKER-2", {}, "attacker-2")]


def test_names_a_visitor_makes_up_never_enter_the_key(book: RuleBook) -> None:
    keys = set()
    for query, headers, made_up in MADE_UP:
        seen = CLASSIFIER.visitor(make_request("/", query=query, headers={**BROWSER, **headers}),
                                  now=1_795_000_000.0, page_view=True)
        decision = decide(book.current, seen)
        segment = segment_of(decision, seen)
        assert not segment.shareable, made_up
        keys.add(segment.key)
        content = decision.slots["banner"].content
        assert content is not None and content.template is not None
        assert made_up in content.template.render(seen)   # the visitor's own page
    assert len(keys) == 2   # one for greet's pages, one for welcome's


def test_a_key_reads_back_into_its_variants_for_any_new_visitor(book: RuleBook) -> None:
    segments = SegmentBook(book)
    variants = set()
    for _ in range(20):
        first, second = visitor("exp=on"), visitor("exp=on")   # two fresh visitor ids
        asked = decide(book.current, first)
        key = segment_of(asked, first).key
        rendered = segments.decision_for(key, decide(book.current, second), second)
        assert rendered is not None
        assert rendered.slots == asked.slots
        assert segment_of(rendered, second).key == key
        variants.add(asked.slots["hero"].variant)
    assert variants == {"control", "bold"}


@pytest.mark.parametrize("key", ["s-00000000", "s-zz", "s-", "nonsense", "s-" + "0" * 9])
def test_unknown_or_malformed_keys_are_not_read(book: RuleBook, key: str) -> None:
    seen = visitor("exp=on")
    assert SegmentBook(book).decision_for(key, decide(book.current, seen), seen) is None


def test_default_key_leaves_every_slot_as_it_is(book: RuleBook) -> None:
    seen = visitor("exp=on")
    rendered = SegmentBook(book).decision_for("default", decide(book.current, seen), seen)
    assert rendered is not None and dict(rendered.slots) == {}


ACTION_RULES = """
slots:
  hero: {}
rules:
  - name: italy-promo
    when: {language.primary: it}
    then:
      headers: {X-Promo: italy}
  - name: french-landing
    when: {language.primary: fr}
    then:
      redirect: {to: /landing, status: 302}
  - name: german-cookie
    when: {language.primary: de}
    then:
      cookies: {seen_de: "1"}
  - name: german-hero
    when: {language.primary: de}
    then:
      hero: {html: "<h1>Hallo</h1>"}
"""


def speaking(language: str):  # type: ignore[no-untyped-def]
    return CLASSIFIER.visitor(make_request("/", headers={**BROWSER, "accept-language": language}),
                              now=1_795_000_000.0, page_view=True)


def test_names_a_tag_cannot_hold_as_they_are_get_tags_of_their_own() -> None:
    # Variant names may hold spaces and any letter: `big sale` and `big_sale` were both
    # ep-variant-hero-big_sale, so purging one purged the other.
    names = ("big sale", "big_sale", "café", "cafè", "x" * 64, "x" * 65, "x" * 66)
    tags = {name: _tag(name) for name in names}
    assert tags["big_sale"] == "big_sale" and tags["x" * 64] == "x" * 64
    assert len(set(tags.values())) == len(tags), tags
    assert all(len(tag) <= 64 for tag in tags.values())
    assert tags["big sale"].startswith("big_sale~") and tags["café"].startswith("caf_~")
    # a name written as another's tag keeps a tag of its own
    assert _tag(tags["big sale"]) != tags["big sale"]


def test_every_purge_tag_fits_akamai_s_128_characters(tmp_path: Path) -> None:
    long = "x" * 64
    (tmp_path / "site.yaml").write_text(f"""
slots:
  {long}: {{}}
rules:
  - name: {long}
    when: {{language.primary: de}}
    then:
      {long}: {{html: "<h1>Hallo</h1>"}}
""")
    decision = decide(RuleBook(tmp_path).current, speaking("de"))
    tags = segment_of(decision, speaking("de")).tags
    assert f"ep-rule-{long}" in tags
    assert all(len(tag) <= 128 for tag in tags), sorted(tags)


def test_a_rules_page_actions_are_in_the_key_and_read_back_only_where_they_hold(
        tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(ACTION_RULES)
    rules = RuleBook(tmp_path)
    visitors = {language: speaking(language) for language in ("en", "it", "fr", "de")}
    decisions = {language: decide(rules.current, seen) for language, seen in visitors.items()}
    keys = {language: segment_of(decisions[language], visitors[language]).key
            for language in visitors}
    assert keys["en"] == "default"
    assert len(set(keys.values())) == 4, keys   # headers, a redirect, cookies: each its own
    assert keys["it"].startswith("s-p") and keys["de"].count("_") == 1
    assert "ep-rule-italy-promo" in segment_of(decisions["it"], visitors["it"]).tags
    segments = SegmentBook(rules)
    for language, key in keys.items():
        assert segments.decision_for(key, decisions[language], visitors[language]) \
            == decisions[language]
        for other in visitors:   # a key for other actions is never read for this visitor
            if other != language:
                assert segments.decision_for(keys[other], decisions[language],
                                             visitors[language]) is None, (language, other)


def test_an_edited_variant_gets_new_keys_and_its_old_keys_are_not_read(
        tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(RULES)
    rules = RuleBook(tmp_path)
    segments = SegmentBook(rules)
    seen = visitor("city=1")
    before = segment_of(decide(rules.current, seen), seen).key
    assert segments.decision_for(before, decide(rules.current, seen), seen) is not None
    (tmp_path / "site.yaml").write_text(RULES.replace("Deals in", "Offers in"))
    assert rules.reload()
    after = segment_of(decide(rules.current, seen), seen).key
    assert after != before
    assert segments.decision_for(before, decide(rules.current, seen), seen) is None
    assert segments.decision_for(after, decide(rules.current, seen), seen) is not None
    # An edit elsewhere (another rule's variant) keeps this page's key.
    (tmp_path / "site.yaml").write_text(RULES.replace("<h1>Bold</h1>", "<h1>Bolder</h1>"))
    assert rules.reload()
    assert segment_of(decide(rules.current, seen), seen).key == before


def test_a_reload_lets_go_of_the_old_rules_variants(tmp_path: Path) -> None:
    """Keys made and read back remember tokens for the serving rules only: once the rules
    are reloaded nothing keeps the old rule set's variants alive."""
    (tmp_path / "site.yaml").write_text(RULES)
    rules = RuleBook(tmp_path)
    segments = SegmentBook(rules)
    seen = visitor("city=1")
    before = decide(rules.current, seen)
    key = segments.segment_of(before, seen).key
    assert segments.decision_for(key, decide(rules.current, seen), seen) is not None
    content = before.slots["banner"].content
    assert content is not None and content.template is not None
    gc.collect()   # (templates of earlier tests gone)
    assert _live_templates_printing("<p>Deals in ") == 1   # (what the variant prints)
    del content
    del before
    (tmp_path / "site.yaml").write_text(RULES.replace("Deals in", "Offers in"))
    assert rules.reload()
    after = segments.segment_of(decide(rules.current, seen), seen).key
    assert after != key
    assert segments.decision_for(after, decide(rules.current, seen), seen) is not None
    gc.collect()
    assert _live_templates_printing("<p>Deals in ") == 0


def _live_templates_printing(text: str) -> int:
    """How many templates alive print `text` (compiled templates take no weak reference,
    so the collector's list of objects is searched)."""
    return sum(1 for each in gc.get_objects()
               if isinstance(each, Template) and text in each.parts)


# Through the real server: an edge at 127.0.0.2 (trusted) asks /__ep/decide, then the page
# with X-EP-Segment, without the cookie decide handed out (the nginx flow of docs/cdn.md).
CDN = httpx.HTTPTransport(local_address="127.0.0.2")


@pytest.fixture(scope="module")
def keyed(origin: Server, server_logs: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    rules = tmp_path_factory.mktemp("keyed-rules")
    (rules / "site.yaml").write_text(RULES)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         "--trusted-proxy", "127.0.0.2",
                         "--geo-db", str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"),
                         env={"EP_KEYED_CACHING": "true", "EP_PROFILE_KEYS": PROFILE_KEY})
    yield server
    server.stop()


def test_a_first_visit_page_is_rendered_for_the_key_decide_gave(keyed: Server) -> None:
    variants = set()
    with httpx.Client(transport=CDN) as edge:
        for attempt in range(16):
            uri = f"/slotted/first-{attempt}?exp=on"
            decided = edge.get(f"{keyed.url}/__ep/decide", headers={**BROWSER,
                                                                     "x-original-uri": uri})
            variant = decided.json()["slots"]["hero"]["variant"]
            variants.add(variant)
            page = edge.get(f"{keyed.url}{uri}",
                            headers={**BROWSER, "x-ep-segment": decided.json()["segment"]})
            assert (b"<h1>Bold</h1>" in page.content) == (variant == "bold"), attempt
            assert page.headers["x-ep-segment"] == decided.json()["segment"]
            assert page.headers["cache-control"].startswith("public"), attempt
    assert variants == {"control", "bold"}


def test_a_page_never_goes_public_under_a_key_it_was_not_made_for(keyed: Server) -> None:
    with httpx.Client(transport=CDN) as edge:
        page = edge.get(f"{keyed.url}/slotted/k?exp=on",
                        headers={**BROWSER, "x-ep-segment": "s-00000000"})
    assert page.status_code == 200
    assert page.headers["cache-control"].startswith("private")
    assert "surrogate-key" not in page.headers and "cache-tag" not in page.headers
    # From an untrusted address the header names nothing: the visitor's own decision.
    direct = httpx.get(f"{keyed.url}/slotted/k?exp=on",
                       headers={**BROWSER, "x-ep-segment": "default"})
    assert direct.headers["cache-control"].startswith("private")


def test_variants_printing_raw_request_data_stay_private_under_one_key(keyed: Server) -> None:
    pages = [httpx.get(f"{keyed.url}/slotted/n?name={name}", headers=BROWSER)
             for name in ("alice", "bob")]
    assert b"<p>Hi alice</p>" in pages[0].content and b"<p>Hi bob</p>" in pages[1].content
    assert pages[0].headers["x-ep-segment"] == pages[1].headers["x-ep-segment"]
    for page in pages:
        assert page.headers["cache-control"].startswith("private")
        assert "cache-tag" not in page.headers
    city = keyed_get(keyed, "/slotted/n", {"city": "1"}, BROWSER)
    assert city.headers["cache-control"].startswith("public")
    assert "ep-rule-city" in city.headers["cache-tag"].split(",")


def test_names_a_visitor_makes_up_mint_no_public_keys(keyed: Server) -> None:
    asked = [("/slotted/g?greet=1", {"accept-language": "qqqqqqqq"}, "qqqqqqqq"),
             ("/slotted/g?greet=1", {"accept-language": "zzzzzzzz"}, "zzzzzzzz"),
             ("/slotted/g?greet=1",
              {"user-agent": "Whatever123/1.0 CFNetwork/1.0 Darwin/1.0"}, "Whatever123"),
             ("/slotted/w?welcome=1&utm_source=ATTACKER-1", {}, "attacker-1"),
             ("/slotted/w?welcome=1&utm_source=ATTACKER-2", {}, "attacker-2")]
    keys = set()
    with httpx.Client(transport=CDN) as edge:
        for uri, headers, made_up in asked:
            decided = edge.get(f"{keyed.url}/__ep/decide",
                               headers={**BROWSER, **headers, "x-original-uri": uri}).json()
            keys.add(decided["segment"])
            page = edge.get(f"{keyed.url}{uri}", headers={
                **BROWSER, **headers, "x-ep-segment": decided["segment"]})
            assert made_up.encode() in page.content, uri   # each visitor's own page...
            assert page.headers["x-ep-segment"] == decided["segment"]
            assert page.headers["cache-control"].startswith("private"), made_up
            assert "cache-tag" not in page.headers and "surrogate-key" not in page.headers
    assert len(keys) == 2   # ...under one key a page of greet, one of welcome: none shared


def test_a_page_setting_a_cookie_is_never_shared(keyed: Server) -> None:
    shared = keyed_get(keyed, "/slotted/c", {"city": "1"}, BROWSER)
    assert shared.headers["cache-control"].startswith("public")
    with_session = keyed_get(keyed, "/slotted/c", {"city": "1", "session": "1"}, BROWSER)
    assert "sessionid=s3cr3t; Path=/; HttpOnly" in with_session.headers.get_list("set-cookie")
    cache_control = with_session.headers["cache-control"]
    assert cache_control.startswith("private") and "s-maxage" not in cache_control
    assert "surrogate-key" not in with_session.headers


def test_a_fragment_printing_raw_request_data_is_never_shared(keyed: Server) -> None:
    raw = httpx.get(f"{keyed.url}/__ep/fragment/banner?url=%2Fslotted%2Fn%3Fname%3Dalice",
                    headers=BROWSER)
    assert raw.text == "<p>Hi alice</p>"
    assert raw.headers["cache-control"] == "private, no-store"
    city = keyed_get(keyed, "/__ep/fragment/banner", {"url": "/slotted/n?city=1"}, BROWSER)
    assert city.status_code == 200 and city.headers["cache-control"].startswith("public")


def test_a_fragment_of_a_page_named_by_a_header_varies_on_that_header(keyed: Server) -> None:
    # A fragment is for one page (which may lack or hide its slot): a cache keying
    # fragments by their URL and segment alone would hand one page's answer to another.
    asked = {**BROWSER, "x-original-uri": "/slotted/n?city=1"}
    first = httpx.get(f"{keyed.url}/__ep/fragment/banner", headers=asked)
    shared = httpx.get(f"{keyed.url}/__ep/fragment/banner",
                       headers={**asked, "x-ep-segment": first.headers["x-ep-segment"]})
    assert shared.headers["cache-control"].startswith("public")
    # every header that may name the page, absent ones too: a fragment of none (the home
    # page's) must not be handed to a request naming one
    every = ["X-EP-Segment, X-Original-URI, X-Original-URL, X-EP-URL"]
    assert shared.headers.get_list("vary") == every
    unnamed = keyed_get(keyed, "/__ep/fragment/banner", {}, BROWSER)
    assert unnamed.headers.get_list("vary") == every
    by_url = keyed_get(keyed, "/__ep/fragment/banner", {"url": "/slotted/n?city=1"}, BROWSER)
    assert by_url.headers.get_list("vary") == ["X-EP-Segment"]


def test_a_segment_header_the_visitor_sends_to_decide_chooses_nothing(keyed: Server) -> None:
    # An edge forwards the visitor's headers to /__ep/decide: a visitor's own X-EP-Segment
    # must not pick their experiment variant.
    with httpx.Client(transport=CDN) as edge:
        control = edge.get(f"{keyed.url}/__ep/decide", headers={
            **BROWSER, "x-original-uri": "/slotted/d?exp=on"}).json()
        for _ in range(12):
            decided = edge.get(f"{keyed.url}/__ep/decide", headers={
                **BROWSER, "x-original-uri": "/slotted/d?exp=on",
                "x-ep-segment": control["segment"]}).json()
            if decided["segment"] != control["segment"]:
                return
    raise AssertionError("every visitor got the segment they named")


def test_without_keyed_caching_a_segment_header_forces_nothing(proxy: Server) -> None:
    # The shared proxy (tests/conftest.py) keeps pages private and trusts 127.0.0.2: an
    # X-EP-Segment passed on by an edge names no page there.
    seen = set()
    with httpx.Client(transport=CDN) as edge:
        for _ in range(16):
            page = edge.get(f"{proxy.url}/slotted/p?exp=on",
                            headers={**BROWSER, "x-ep-segment": "default"})
            seen.add(b"<h1>Bold</h1>" in page.content)
    assert seen == {True, False}
