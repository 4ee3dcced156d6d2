"""Which slots a page has, learned per path: the memo itself, and through the real server
a page without its slots (kept whole, naming nothing it did not show), a page that gains
its slot later, and a reload of the rules."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.classify.profile_codec import ProfileCodec
from edge_personalizer.personalize.slot_presence import (
    SlotPresence,
    nesting,
    page_key,
    page_query,
    slots_not_found,
)
from edge_personalizer.rules.book import RuleBook
from edge_personalizer.rules.model import Content, Decision, SlotChoice

from ..conftest import ADMIN_TOKEN, PROFILE_KEY
from ..servers import Server, free_port, start, start_proxy

HEAD = {b"etag": '"v1"', b"content-length": "1000"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _decision(*slots: str) -> Decision:
    """Variants that add to their slots (none hides another: see hidden)."""
    return Decision(slots={name: SlotChoice(name, "v", "rule", f"rule-{name}",
                                            Content(action="append"))
                           for name in slots}, headers=(("x-a", "1"),))


def test_slots_a_page_lacks_are_known_after_one_view() -> None:
    presence = SlotPresence(None)
    assert presence.absent("/a", HEAD) is None          # never seen: looked at
    presence.learned("/a", HEAD, {"hero": False, "banner": True})
    assert presence.absent("/a", HEAD) == frozenset({"hero"})
    assert presence.absent("/b", HEAD) is None
    decision = _decision("hero", "banner", "head")
    assert presence.lacks_all("/a", _decision("hero"))
    assert not presence.lacks_all("/a", decision)
    trimmed = presence.trim(decision, frozenset({"hero", "head"}))
    assert set(trimmed.slots) == {"banner", "head"}      # injections always stay
    assert trimmed.headers == decision.headers and trimmed.variants == "banner=v,head=v"
    assert presence.trim(decision, frozenset({"hero", "head"})) is trimmed   # remembered
    assert presence.trim(decision, frozenset({"promo"})) is decision


def test_a_slot_never_looked_for_on_a_page_is_not_known_by_the_others() -> None:
    # A view that looked for the banner alone says nothing of the hero: a decision with a
    # hero has the page looked at (its head held), not the hero taken as there.
    presence = SlotPresence(None)
    presence.learned("/a", HEAD, {"banner": False})
    assert presence.absent("/a", HEAD, _decision("banner", "head").slots) == frozenset({"banner"})
    assert presence.absent("/a", HEAD, _decision("hero", "banner").slots) is None
    presence.learned("/a", HEAD, {"hero": False})
    assert presence.absent("/a", HEAD, _decision("hero", "banner").slots) \
        == frozenset({"banner", "hero"})


def test_a_page_read_again_as_it_was_learned_changes_nothing() -> None:
    presence = SlotPresence(None)
    presence.learned("/a", HEAD, {"hero": True, "banner": False})
    known = presence.absent("/a", HEAD)
    presence.learned("/a", HEAD, {"hero": True})
    assert presence.absent("/a", HEAD) is known            # (not worked out again)
    presence.learned("/a", HEAD, {"side": False})          # a slot not looked for before
    assert presence.absent("/a", HEAD) == frozenset({"banner", "side"})
    presence.learned("/a", HEAD, {"hero": False})          # the page lost its hero
    assert presence.absent("/a", HEAD) == frozenset({"banner", "side", "hero"})


def test_a_changed_page_is_looked_at_again() -> None:
    presence = SlotPresence(None)
    presence.learned("/a", HEAD, {"hero": False})
    assert presence.absent("/a", {**HEAD, b"content-length": "1001"}) is None
    assert presence.absent("/a", HEAD) is None           # forgotten: learned anew
    # One set of validators per content coding: the gzip answer has its own.
    presence.learned("/a", HEAD, {"hero": False})
    gzip = {b"etag": 'W/"v1"', b"content-encoding": "gzip"}
    assert presence.absent("/a", gzip) == frozenset({"hero"})
    assert presence.absent("/a", gzip) == frozenset({"hero"})
    assert presence.absent("/a", {**gzip, b"etag": 'W/"v2"'}) is None


def test_a_page_is_looked_at_again_after_many_views_or_a_while() -> None:
    clock = Clock()
    presence = SlotPresence(None, relearn_views=3, relearn_seconds=60, clock=clock)
    presence.learned("/a", {}, {"hero": False})          # no validators at all
    assert [presence.absent("/a", {}) for _ in range(4)] == [frozenset({"hero"})] * 3 + [None]
    presence.learned("/a", {}, {"hero": False})
    clock.now += 61
    assert presence.absent("/a", {}) is None


def test_the_memo_is_bounded_and_reset_when_the_rules_reload(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("slots: {hero: {}}\n")
    book = RuleBook(tmp_path)
    presence = SlotPresence(book, max_paths=2)
    for path in ("/a", "/b", "/c"):
        presence.learned(path, HEAD, {"hero": False})
    assert len(presence) == 2 and presence.absent("/a", HEAD) is None
    assert presence.absent("/c", HEAD) == frozenset({"hero"})
    (tmp_path / "site.yaml").write_text("slots: {hero: {selector: 'main h1'}}\n")
    assert book.reload()
    assert presence.absent("/c", HEAD) is None and len(presence) == 0


def test_which_slot_is_inside_which_hides_a_slot_only_under_a_variant_that_empties_it(
        ) -> None:
    presence = SlotPresence(None)
    # The view looked for three slots and could probe two ("list" is a selector list).
    inside = nesting(("hero", "cta", "list"), ("hero", "cta"), frozenset({(0, 1)}))
    assert inside == {("hero", "cta"): True, ("cta", "hero"): False, ("hero", "list"): False,
                      ("list", "hero"): False, ("cta", "list"): False, ("list", "cta"): False}
    presence.learned("/p", HEAD, {"hero": True, "cta": True}, inside)
    emptying = Decision(slots={
        "hero": SlotChoice("hero", "big", "rule", "big", Content(action="inner")),
        "cta": SlotChoice("cta", "v", "rule", "cta-rule", Content())})
    assert presence.known_gone("/p", emptying) == frozenset({"cta"})
    for kept in ("append", "set_attribute"):   # the hero keeps what it held
        keeping = Decision(slots={**emptying.slots, "hero": SlotChoice(
            "hero", "big", "rule", "big", Content(action=kept))})
        assert presence.known_gone("/p", keeping) == frozenset()
    control = Decision(slots={**emptying.slots, "hero": SlotChoice(
        "hero", "control", "experiment", "e", None)})
    assert presence.known_gone("/p", control) == frozenset()
    assert presence.known_gone("/other", emptying) is None   # never looked at
    # A view that probed nothing keeps what was learned.
    presence.learned("/p", HEAD, {"hero": True}, {})
    assert presence.known_gone("/p", emptying) == frozenset({"cta"})
    assert presence.known_gone("/p", Decision(slots={**emptying.slots, "promo": SlotChoice(
        "promo", "v", "rule", "p", Content())})) is None   # promo never looked for
    assert nesting(("hero", "cta"), ("hero", "cta"), None) == {}


def test_slots_learned_apart_are_looked_at_together_before_one_may_hide_the_other() -> None:
    clock = Clock()
    presence = SlotPresence(None, clock=clock)
    presence.learned("/p", HEAD, {"hero": True})
    presence.learned("/p", HEAD, {"cta": True})
    emptying = Decision(slots={
        "hero": SlotChoice("hero", "big", "rule", "big", Content(action="inner")),
        "cta": SlotChoice("cta", "v", "rule", "cta-rule", Content())})
    assert presence.absent("/p", HEAD, emptying.slots) is None   # which is inside which?
    assert presence.absent("/p", HEAD, _decision("hero", "cta").slots) == frozenset()
    presence.learned("/p", HEAD, {"hero": True, "cta": True},
                     nesting(("hero", "cta"), ("hero", "cta"), frozenset()))
    assert presence.absent("/p", HEAD, emptying.slots) == frozenset()
    assert presence.known_gone("/p", emptying) == frozenset()
    clock.now += 61   # learned too long ago for a look that counts no view
    assert presence.known_gone("/p", emptying) is None


# Through the real server, in front of a static origin whose page the tests edit.

RULES = """\
slots:
  hero: {}
  promo: {selector: "main .promo"}
rules:
  - name: hero-rule
    then: {hero: {html: "<h1>New hero</h1>"}}
  - name: promo-rule
    then: {promo: {html: "<b>New promo</b>"}}
goals:
  buy: {when: {request.path: /thanks}}
"""
BARE = ("<!doctype html><html><head><title>t</title></head><body><main><p>no slots</p>"
        + "<p>Lorem ipsum dolor sit amet.</p>" * 300 + "</main></body></html>")
SLOTTED = ('<!doctype html><html><head><title>t</title></head><body><main>'
           '<section data-ep-slot="hero"><h1>Old hero</h1></section>'
           '<div class="promo">old promo</div>'
           + "<p>Lorem ipsum dolor sit amet.</p>" * 300 + "</main></body></html>")
PAGE = {"accept": "text/html", "accept-encoding": "identity",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}


# Python's static file server, saying how long its files keep, as a site's server would
# (a shared cache may keep pages only for as long as their origin says).
STATIC_SERVER = """
import functools, http.server, sys
class Files(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cache-Control", "public, max-age=60")
        super().end_headers()
files = functools.partial(Files, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), files).serve_forever()
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """A static file server (http.server): Content-Length, Last-Modified, Cache-Control."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "page.html").write_text(BARE)
    port = free_port()
    server = start([sys.executable, "-c", STATIC_SERVER, str(port), str(root)], port,
                   tmp_path / "site.log")
    yield server, root / "page.html"
    server.stop()


def _serve(tmp_path: Path, origin: Server, rules: str, env: dict[str, str]) -> Server:
    """The proxy in front of `origin`, with `rules` as its one rule file (tmp_path/rules)."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "site.yaml").write_text(rules)
    return start_proxy(tmp_path, "--origin", origin.url, "--rules", str(folder), env=env)


@pytest.fixture
def proxy(site: tuple[Server, Path], tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    server = _serve(tmp_path, site[0], RULES, {"EP_VARIANT_HEADER": "true",
                                               "EP_PROFILE_KEYS": PROFILE_KEY,
                                               "EP_RULES_WATCH_INTERVAL": "0.2"})
    yield server, tmp_path / "rules"
    server.stop()


def _exposures(response: httpx.Response) -> dict[str, object]:
    cookie = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith("ep_profile="))
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(
        cookie.split(";")[0].split("=", 1)[1], time.time())
    assert state is not None
    exposures: dict[str, object] = state[10]
    return exposures


def test_a_page_without_its_slots_passes_whole_and_names_nothing_it_did_not_show(
        proxy: tuple[Server, Path]) -> None:
    server, _ = proxy
    first = httpx.get(f"{server.url}/page.html", headers=PAGE)
    assert first.text == BARE
    # The first view of a path is read for its slots before its head is made (held_head).
    assert "x-ep-variant" not in first.headers
    assert first.headers["content-length"] == str(len(BARE))
    assert _exposures(first) == {}
    for _ in range(2):
        again = httpx.get(f"{server.url}/page.html", headers=PAGE)
        assert again.content == BARE.encode()
        assert again.headers["content-length"] == str(len(BARE))
        assert "x-ep-variant" not in again.headers
        assert again.headers["x-ep-segment"] == "default"
        assert _exposures(again) == {}


def test_a_page_that_gains_its_slots_is_personalized_again(
        proxy: tuple[Server, Path], site: tuple[Server, Path]) -> None:
    server, _ = proxy
    page = site[1]
    for _ in range(2):
        learned = httpx.get(f"{server.url}/page.html", headers=PAGE)
    assert "x-ep-variant" not in learned.headers
    page.write_text(SLOTTED)   # another length (and Last-Modified): the page changed
    os.utime(page, (time.time() + 5, time.time() + 5))
    response = httpx.get(f"{server.url}/page.html", headers=PAGE)
    assert "<h1>New hero</h1>" in response.text and "<b>New promo</b>" in response.text
    assert response.headers["x-ep-variant"] == "hero=hero-rule,promo=promo-rule"
    assert set(_exposures(response)) == {"hero-rule", "promo-rule"}
    again = httpx.get(f"{server.url}/page.html", headers=PAGE)
    assert again.text == response.text
    assert again.headers["x-ep-variant"] == "hero=hero-rule,promo=promo-rule"


# One path, two pages: ?page=full has the slots, any other query not; each sent as it is
# made (no Content-Length, no validators), as a dynamic site's pages are.
DYNAMIC_SERVER = """
import http.server, sys, pathlib
from urllib.parse import parse_qs, urlsplit
class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        full = parse_qs(urlsplit(self.path).query).get("page") == ["full"]
        body = pathlib.Path(sys.argv[3 if full else 2]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Pages).serve_forever()
"""


def test_pages_of_one_path_told_apart_by_their_query_are_learned_apart(
        tmp_path: Path) -> None:
    # index.php?page=about lacking the slots said nothing of index.php?page=full; a
    # campaign's parameters make no other page.
    (tmp_path / "bare.html").write_text(BARE)
    (tmp_path / "full.html").write_text(SLOTTED)
    port = free_port()
    origin = start([sys.executable, "-c", DYNAMIC_SERVER, str(port), str(tmp_path / "bare.html"),
                    str(tmp_path / "full.html")], port, tmp_path / "origin.log")
    server = _serve(tmp_path, origin, RULES, {"EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        for _ in range(2):
            bare = httpx.get(f"{server.url}/index.php?page=about", headers=PAGE)
            assert bare.text == BARE
        for query in ("page=full", "page=full&utm_source=news&gclid=x", "gclid=y&page=full"):
            full = httpx.get(f"{server.url}/index.php?{query}", headers=PAGE)
            assert "<h1>New hero</h1>" in full.text, query
    finally:
        server.stop()
        origin.stop()


# htmx asks the page's own URL for a part of it (HX-Request): the part lacks the slots.
PARTIAL_SERVER = DYNAMIC_SERVER.replace(
    'full = parse_qs(urlsplit(self.path).query).get("page") == ["full"]',
    'full = "HX-Request" not in self.headers')


def test_the_page_is_learned_from_itself_never_from_a_script_s_fetch_of_a_part(
        tmp_path: Path) -> None:
    (tmp_path / "part.html").write_text("<!doctype html><p>part</p>")
    (tmp_path / "full.html").write_text(SLOTTED)
    port = free_port()
    origin = start([sys.executable, "-c", PARTIAL_SERVER, str(port), str(tmp_path / "part.html"),
                    str(tmp_path / "full.html")], port, tmp_path / "origin.log")
    server = _serve(tmp_path, origin, RULES, {"EP_PROFILE_KEYS": PROFILE_KEY})
    fetch = {**PAGE, "hx-request": "true", "sec-fetch-dest": "empty", "sec-fetch-mode": "cors"}
    try:
        for _ in range(2):
            assert httpx.get(f"{server.url}/shop", headers=fetch).text.endswith("part</p>")
        page = httpx.get(f"{server.url}/shop", headers=PAGE)
        assert "<h1>New hero</h1>" in page.text
    finally:
        server.stop()
        origin.stop()


def test_a_path_learns_a_bounded_number_of_its_queries_apart() -> None:
    presence = SlotPresence(None, max_queries=2)
    assert [presence.page_of("/search", {"q": q}) for q in "ab"] == \
        ["/search?q=a", "/search?q=b"]
    assert presence.page_of("/search", {"q": "c"}) == "/search?*"     # past the bound
    assert presence.page_of("/search", {"q": "a"}) == "/search?q=a"   # kept apart still
    assert presence.page_of("/other", {"q": "c"}) == "/other?q=c"
    assert presence.page_of("/search", {"utm_source": "x"}) == "/search"
    # The other queries are taken to have every slot: no page of them decides for the rest.
    presence.learned("/search?*", {b"content-length": "100"}, {"hero": False})
    assert presence.absent("/search?*", {b"content-length": "120"}) == frozenset()
    assert not presence.lacks_all("/search?*", _decision("hero"))


# Each query its own page, of its own length (a search's results), with the slots when
# asked with `full`; sent in two parts a second apart when asked with `slow`, as a slow
# dynamic page is.
SLOW_SERVER = """
import http.server, sys, pathlib, time
class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        page = sys.argv[3 if "full" in self.path else 2]
        body = pathlib.Path(page).read_bytes() + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:100])
        if "slow" in self.path:
            time.sleep(2)
        self.wfile.write(body[100:])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Pages).serve_forever()
"""


def _first_byte(client: httpx.Client, url: str) -> float:
    started = time.monotonic()
    with client.stream("GET", url, headers=PAGE) as response:
        next(response.iter_raw())
        return time.monotonic() - started


def test_a_search_s_queries_past_the_bound_are_no_held_first_views(tmp_path: Path) -> None:
    # Each new `?q=` was a first view, its head held until the page showed its slots.
    (tmp_path / "bare.html").write_text(BARE)
    (tmp_path / "full.html").write_text(SLOTTED)
    port = free_port()
    origin = start([sys.executable, "-c", SLOW_SERVER, str(port), str(tmp_path / "bare.html"),
                    str(tmp_path / "full.html")], port, tmp_path / "origin.log")
    server = _serve(tmp_path, origin, RULES, {"EP_PROFILE_KEYS": PROFILE_KEY,
                                              "EP_HEAD_HOLD_SECONDS": "5"})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            held = _first_byte(client, "/search?q=0&slow=1")   # a first view: held
            for n in range(1, 17):
                client.get(f"/search?q={n}", headers=PAGE)     # the 17th: the others' page
            streamed = [_first_byte(client, f"/search?q={n}&slow=1") for n in (17, 180)]
            # and a result without the slots decides nothing for one with them
            found = client.get("/search?q=181&full=1", headers=PAGE).text
    finally:
        server.stop()
        origin.stop()
    assert held >= 1.9 and max(streamed) < 1.0, (held, streamed)
    assert "<h1>New hero</h1>" in found


def test_a_page_is_its_path_and_query_campaign_parameters_aside() -> None:
    assert page_key("/p", {}) == "/p"
    assert page_key("/p", {"utm_source": "x", "GCLID": "y", "fbclid": "z"}) == "/p"
    assert page_key("/p", {"page": "about", "utm_medium": "email", "id": "2"}) == \
        "/p?id=2&page=about"
    assert page_key("/p", {"q": "a b&c"}) == "/p?q=a+b%26c"


def test_a_raw_query_keeps_what_makes_its_page_in_its_order() -> None:
    assert page_query(b"") == b""
    assert page_query(b"utm_source=facebook&fbclid=abc") == b""
    assert page_query(b"b=2&UTM_Medium=email&a=1&utm%5Fcampaign=x&gclid=y") == b"b=2&a=1"
    assert page_query(b"q=a+b%26c&_=1700000000") == b"q=a+b%26c"


def test_reloaded_rules_look_at_every_page_again(proxy: tuple[Server, Path]) -> None:
    server, rules = proxy
    for _ in range(2):
        learned = httpx.get(f"{server.url}/page.html", headers=PAGE)
    assert "x-ep-variant" not in learned.headers
    version = server.health().json()["rules"]["version"]
    # The hero slot is now a selector the page has: known absent, it would stay dropped.
    (rules / "site.yaml").write_text(RULES.replace("hero: {}", 'hero: {selector: "main p"}'))
    deadline = time.monotonic() + 10
    while server.health().json()["rules"]["version"] == version:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    response = httpx.get(f"{server.url}/page.html", headers=PAGE)
    assert "<main><p><h1>New hero</h1></p>" in response.text
    assert response.headers["x-ep-variant"] == "hero=hero-rule"


def test_a_page_known_to_lack_the_slots_comes_from_the_origin_as_the_client_asked(
        origin: Server, tmp_path: Path) -> None:
    # (the test origin's /slotted page says which Accept-Encoding it was asked with)
    server = _serve(
        tmp_path, origin,
        "slots: {promo: {}}\nrules:\n  - name: promo-rule\n    then: {promo: {html: x}}\n",
        {"EP_VARIANT_HEADER": "true"})
    try:
        asked = {**PAGE, "accept-encoding": "gzip, br"}
        first = httpx.get(f"{server.url}/slotted/x", headers=asked)
        assert "Привет identity" in first.text   # to be read for its slots
        assert "x-ep-variant" not in first.headers
        second = httpx.get(f"{server.url}/slotted/x", headers=asked)
        assert "Привет gzip, br" in second.text
        assert "x-ep-variant" not in second.headers
        assert second.headers["content-length"] == str(len(second.content))
    finally:
        server.stop()


BY_VISITOR = """\
slots:
  hero: {}
  promo: {selector: "main .promo"}
rules:
  - name: vip-promo
    when: {request.cookie.crm: vip}
    then: {promo: {html: "<b>VIP</b>"}}
  - name: hero-rule
    when: {request.query.h: "1"}
    then: {hero: {html: "<h1>New hero</h1>"}}
goals:
  buy: {when: {request.path: /thanks}}
"""


def test_a_slot_looked_for_on_no_earlier_view_is_looked_for_before_it_is_counted(
        site: tuple[Server, Path], tmp_path: Path) -> None:
    # The first view of the page was a VIP's, looking for the promo alone; the next
    # visitor's decision has the hero, which no view has looked for: the page is read for
    # it, and the hero it lacks is neither counted nor named.
    server = _serve(tmp_path, site[0], BY_VISITOR,
                    {"EP_VARIANT_HEADER": "true", "EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        vip = httpx.get(f"{server.url}/page.html", headers={**PAGE, "cookie": "crm=vip"})
        assert vip.text == BARE and _exposures(vip) == {}
        for _ in range(2):
            other = httpx.get(f"{server.url}/page.html?h=1", headers=PAGE)
            assert other.text == BARE and "x-ep-variant" not in other.headers
            assert _exposures(other) == {}
    finally:
        server.stop()


def test_a_head_of_a_page_no_view_has_read_names_none_of_its_slots(
        proxy: tuple[Server, Path], site: tuple[Server, Path]) -> None:
    # Before any view has read the page for its slots, a HEAD is asked of the origin as
    # its GET and read: this page has none of them, so it answers the origin's own start
    # (as its GET does), not a rewritten page it never is.
    server, _ = proxy
    heads = [httpx.head(f"{server.url}/page.html", headers=PAGE) for _ in range(2)]
    direct = httpx.head(f"{site[0].url}/page.html")
    for head in heads:
        assert head.status_code == 200 and "x-ep-variant" not in head.headers
        assert head.headers["x-ep-segment"] == "default"
        assert head.headers["last-modified"] == direct.headers["last-modified"]
        assert head.headers["content-length"] == str(len(BARE))
    first = httpx.get(f"{server.url}/page.html", headers=PAGE)   # (read for its slots)
    assert first.text == BARE and "x-ep-variant" not in first.headers


def test_cache_tags_name_only_the_variants_the_page_shows(
        site: tuple[Server, Path], tmp_path: Path) -> None:
    server = _serve(tmp_path, site[0], RULES, {"EP_KEYED_CACHING": "true"})
    try:
        for _ in range(2):   # the first view (read for its slots) and the next
            response = httpx.get(f"{server.url}/page.html",
                                 headers={**PAGE, "x-ep-segment": "default"})
            assert response.headers["surrogate-key"].split() == ["ep", "ep-segment-default"]
            assert response.headers["x-ep-segment"] == "default"
            assert response.headers["content-length"] == str(len(BARE))
    finally:
        server.stop()


NESTED_RULES = """\
slots:
  hero: {}
  cta: {selector: "section a.cta"}
rules:
  - name: big-hero
    when: {request.query.hero: big}
    then: {hero: {html: "<h1>Big hero</h1>"}}
  - name: cta-rule
    when: {request.query.cta: "yes"}
    then: {cta: {text: "Buy now"}}
goals:
  buy: {when: {request.path: /thanks}}
"""
NESTED = ('<!doctype html><html><head><title>t</title></head><body><main>'
          '<section data-ep-slot="hero"><h1>Old hero</h1><a class="cta" href="/b">Buy</a>'
          '</section>' + "<p>Lorem ipsum dolor sit amet.</p>" * 300 + "</main></body></html>")


@pytest.mark.parametrize("first", ["together", "apart"])
def test_a_slot_inside_one_whose_variant_replaces_it_is_neither_named_nor_counted(
        site: tuple[Server, Path], tmp_path: Path, first: str) -> None:
    # The call to action sits inside the hero: a hero variant that replaces what the hero
    # held takes it away, so its variant is not shown, whether the page is read for its
    # slots on this view or known from an earlier one, and whether the two slots were
    # first seen together or on views of their own. Without that hero variant it is.
    site[1].write_text(NESTED)
    server = _serve(tmp_path, site[0], NESTED_RULES,
                    {"EP_VARIANT_HEADER": "true", "EP_PROFILE_KEYS": PROFILE_KEY})
    url = f"{server.url}/page.html"
    try:
        if first == "apart":   # each slot learned on a view of its own
            assert httpx.get(f"{url}?hero=big", headers=PAGE).headers["x-ep-variant"] \
                == "hero=big-hero"
        cta = [httpx.get(f"{url}?cta=yes", headers=PAGE) for _ in range(2)]
        both = [httpx.get(f"{url}?hero=big&cta=yes", headers=PAGE) for _ in range(2)]
        decided = httpx.get(f"{server.url}/__ep/decide?url=/page.html%3Fhero%3Dbig%26cta%3Dyes",
                            headers=PAGE)
        fragments = [httpx.get(f"{server.url}/__ep/fragment/cta?url=/page.html%3F{query}",
                               headers=PAGE) for query in ("cta%3Dyes", "hero%3Dbig%26cta%3Dyes")]
        # A HEAD answers as its GET: the origin asked for the whole page, not whether it
        # changed since (it would say 304), and the same variants named.
        head = httpx.head(f"{url}?hero=big&cta=yes",
                          headers={**PAGE, "if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    finally:
        server.stop()
    for response in cta:
        assert '<a class="cta" href="/b">Buy now</a>' in response.text
        assert response.headers["x-ep-variant"] == "cta=cta-rule"
        assert set(_exposures(response)) == {"cta-rule"}
    for response in both:
        assert "<h1>Big hero</h1></section>" in response.text and "Buy" not in response.text
        assert response.headers["x-ep-variant"] == "hero=big-hero"
        assert set(_exposures(response)) == {"big-hero"}
    assert set(decided.json()["slots"]) == {"hero"}
    shown, hidden = fragments
    assert shown.status_code == 200 and shown.text == "Buy now"
    assert hidden.status_code == 204 and hidden.headers["x-ep-variant"] == "hero=big-hero"
    assert head.status_code == 200 and head.headers["x-ep-variant"] == "hero=big-hero"
    assert "last-modified" not in head.headers and "content-length" not in head.headers


def test_slots_looked_for_are_tallied_until_their_definition_changes(tmp_path: Path
                                                                      ) -> None:
    (tmp_path / "site.yaml").write_text("slots: {hero: {}, promo: {}}\n")
    book = RuleBook(tmp_path)
    presence = SlotPresence(book)
    for path in ("/a?email=jane%40example.com", "/b", "/a?email=jane%40example.com", "/c",
                 "/d"):
        presence.learned(path, {b"etag": path}, {"hero": path == "/b", "promo": False,
                                                 "head": True})
    # every look counted, pages told apart, the first paths that lacked it (no query:
    # what a visitor typed is no one else's to read)
    assert presence.looks() == {
        "hero": {"looks": 5, "pages": 4, "found": 1, "lacking": ["/a", "/c", "/d"]},
        "promo": {"looks": 5, "pages": 4, "found": 0, "lacking": ["/a", "/b", "/c"]}}
    other = {"promo": {"looks": 2, "pages": 2, "found": 0, "lacking": ["/e"]}}
    assert slots_not_found([presence.looks(), other, {}]) == [
        "slot 'promo' was on none of the pages it was looked for on (7 looks at 4 pages: "
        "/a, /b, /c): what rules and experiments choose for it is shown to no one; check "
        "its selector or marker against the page's HTML"]
    # one page looked at three times is told (a campaign's one landing page)
    assert slots_not_found([{"promo": {"looks": 3, "pages": 1, "found": 0,
                                       "lacking": ["/sale"]}}]) == [
        "slot 'promo' was on none of the pages it was looked for on (3 looks at 1 page: "
        "/sale): what rules and experiments choose for it is shown to no one; check its "
        "selector or marker against the page's HTML"]
    assert slots_not_found([{"promo": {"looks": 2, "pages": 2, "found": 0}}]) == []
    # a reload that leaves a slot as it was keeps its looks (the hero found on /b is not
    # taken for lost on the next pages); one that changes it starts them again
    (tmp_path / "site.yaml").write_text("slots: {hero: {}, promo: {selector: p}}\n")
    assert book.reload()
    assert set(presence.looks()) == {"hero"} and slots_not_found([presence.looks()]) == []
    presence.learned("/e", {}, {"hero": False, "promo": True})
    assert presence.looks()["hero"]["looks"] == 6 and presence.looks()["promo"] == {
        "looks": 1, "pages": 1, "found": 1, "lacking": []}


HERO_ONLY = SLOTTED.replace('<div class="promo">old promo</div>', "")


def test_health_and_the_dashboard_name_a_slot_found_on_no_page(
        site: tuple[Server, Path], tmp_path: Path) -> None:
    # A rule for a slot whose selector is on no page reached no one, and nothing said why
    # (the dashboard showed the rule's 0; only the admin's X-EP-Trace said "lacks").
    origin, page = site
    (page.parent / "hero.html").write_text(HERO_ONLY)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "site.yaml").write_text(RULES)
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(folder),
                         "--workers", "2",
                         env={"EP_PROFILE_KEYS": PROFILE_KEY, "EP_RULES_WATCH_INTERVAL": "0.2"})
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        for _ in range(4):   # five pages (a query that names another page is one)
            for path in ("/page.html", "/hero.html", "/page.html?id=2", "/page.html?id=3",
                         "/page.html?id=4"):
                assert httpx.get(f"{server.url}{path}", headers=PAGE).status_code == 200
        time.sleep(1.5)   # each worker publishes what it saw every second
        told = server.health().json()["rules"]["slots_not_found"]
        segments = httpx.get(f"{server.url}/__ep/dashboard/segments", headers=bearer).text
        (folder / "site.yaml").write_text(RULES.replace('"main .promo"', '"main p"'))
        version = server.health().json()["rules"]["version"]
        deadline = time.monotonic() + 10
        while server.health().json()["rules"]["version"] == version:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(4):
            for path in ("/page.html", "/hero.html", "/page.html?id=2", "/page.html?id=3",
                         "/page.html?id=4"):
                httpx.get(f"{server.url}{path}", headers=PAGE)
        time.sleep(1.5)
        after = server.health().json()["rules"]["slots_not_found"]
    finally:
        server.stop()
    assert len(told) == 1 and told[0].startswith("slot 'promo' was on none of the "), told
    named = told[0].split(" pages: ")[1].split("): ")[0].split(", ")
    assert set(named) == {"/page.html", "/hero.html"}   # (paths: queries are not told)
    banner = segments.split('data-banner="notices"')[1].split("</div>")[0]
    assert "slot &#39;promo&#39; was on none of the" in banner
    assert after == []   # the selector the page has: found, and the warning gone
