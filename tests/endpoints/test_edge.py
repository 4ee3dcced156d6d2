"""CDN integration through the real server: decisions and fragments for edges, trusted
edge headers, spoofing, bots (rules in tests/data/rules)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from edge_personalizer.classify.profile_codec import ProfileCodec

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..servers import Server, start_proxy

RULES = ROOT / "tests" / "data" / "rules"

PAGE = {"accept": "text/html",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36"}
FACEBOOK = {**PAGE, "referer": "https://l.facebook.com/"}
CDN = httpx.HTTPTransport(local_address="127.0.0.2")   # a trusted proxy in the fixture


def test_decide_describes_the_decision_for_an_edge(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/__ep/decide",
                         headers={**FACEBOOK, "x-original-uri": "/slotted/a?x=1"})
    assert response.status_code == 200
    data = response.json()
    assert data["slots"]["hero"] == {"variant": "facebook-hero", "reason": "rule",
                                     "by": "facebook-hero"}
    assert data["segment"].startswith("s-") and response.headers["x-ep-segment"] == \
        data["segment"]
    assert "ep-rule-facebook-hero" in data["tags"]
    assert data["headers"] == {"X-Campaign": "facebook"}
    assert response.headers["x-ep-variant"] == "hero=facebook-hero"
    assert any(h.startswith("ep_profile=") for h in response.headers.get_list("set-cookie"))
    assert response.headers["cache-control"] == "private, no-store"


def test_endpoints_answer_their_exact_path_only(proxy: Server) -> None:
    # An edge keeping `/__ep/decide` from visitors by its exact path (nginx's
    # `location = /__ep/decide`) must not let `/__ep/decide/` reach the same handler.
    for path in ("/__ep/decide/", "/__ep/decide//", "/__ep/metrics/"):
        response = httpx.get(f"{proxy.url}{path}", headers={
            **FACEBOOK, "x-original-uri": "/slotted/a", "authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 404, path
        assert "ep-rule" not in response.text
    assert httpx.get(f"{proxy.url}/__ep/decide", headers={
        **FACEBOOK, "x-original-uri": "/slotted/a"}).status_code == 200


def test_decide_refuses_a_page_named_twice_differently(proxy: Server) -> None:
    # An edge sets one of the headers and forwards the visitor's: the one that comes first
    # may be the visitor's (here a page their rules redirect), and nothing says which.
    visitor_first = [*FACEBOOK.items(), ("x-ep-url", "/page/x?utm_campaign=spring-sale"),
                     ("x-original-uri", "/slotted/a")]
    for headers in (visitor_first, [*FACEBOOK.items(), ("x-original-uri", "/slotted/b"),
                                    ("x-original-uri", "/slotted/a")]):
        response = httpx.get(f"{proxy.url}/__ep/decide", headers=headers)
        assert response.status_code == 400, response.text
        assert "named more than once" in response.json()["error"]
        assert "x-ep-redirect" not in response.headers and "set-cookie" not in response.headers
        assert response.headers["cache-control"] == "no-store"
    fragment = httpx.get(f"{proxy.url}/__ep/fragment/hero", headers=visitor_first)
    assert fragment.status_code == 400
    # an edge that names it in ?url=, and a visitor's header beside it
    query = httpx.get(f"{proxy.url}/__ep/decide?url=/slotted/a", headers={
        **FACEBOOK, "x-ep-url": "/page/x?utm_campaign=spring-sale"})
    assert query.status_code == 400 and "?url=" in query.json()["error"]
    same = [*FACEBOOK.items(), ("x-original-url", "/slotted/a"), ("x-original-uri", "/slotted/a")]
    response = httpx.get(f"{proxy.url}/__ep/decide", headers=same)
    assert response.status_code == 200
    assert response.json()["slots"]["hero"]["variant"] == "facebook-hero"


def test_decide_reports_redirects_and_default_segment(proxy: Server) -> None:
    redirect = httpx.get(f"{proxy.url}/__ep/decide?url=/page/x%3Futm_campaign%3Dspring-sale",
                         headers=PAGE).json()
    assert redirect["redirect"] == {"location": "/page/landing/spring?utm_campaign=spring-sale",
                                    "status": 302}
    default = httpx.get(f"{proxy.url}/__ep/decide?url=/slotted/a", headers=PAGE)
    assert default.json()["segment"] == "default" and default.json()["slots"] == {}
    assert "x-ep-variant" not in default.headers   # no empty header when nothing is chosen


def test_a_decision_the_edge_redirects_names_no_variant(proxy: Server) -> None:
    # In the experiment's audience (exp=on), but the edge answers with the redirect: the
    # variant is neither named nor counted (the profile cookie counts the page view only).
    response = httpx.get(f"{proxy.url}/__ep/decide?url=/page/x%3Futm_campaign%3Dspring-sale"
                         "%26exp%3Don", headers=PAGE)
    data = response.json()
    assert data["redirect"] is not None and data["slots"] == {}
    assert "x-ep-variant" not in response.headers
    cookie = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith("ep_profile="))
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(
        cookie.split(";")[0].split("=", 1)[1], time.time())
    assert state is not None and "hero-test" not in state[10]


def test_decide_names_and_counts_no_variant_for_a_slot_the_page_lacks(proxy: Server) -> None:
    # /page/... has no hero: once a view through the proxy has shown it, an edge's decide
    # for that page names no hero variant, and the visitor's cookie counts no exposure.
    def decided() -> tuple[dict[str, object], list[str]]:
        response = httpx.get(f"{proxy.url}/__ep/decide?url=/page/hero-less%3Fexp%3Don",
                             headers=PAGE)
        cookie = next(h for h in response.headers.get_list("set-cookie")
                      if h.startswith("ep_profile="))
        state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(
            cookie.split(";")[0].split("=", 1)[1], time.time())
        assert state is not None
        return response.json()["slots"], list(state[10])

    slots, exposed = decided()
    assert set(slots) == {"hero"} and exposed == ["hero-test"]   # not known yet: every slot
    page = httpx.get(f"{proxy.url}/page/hero-less?exp=on", headers=PAGE)
    assert page.status_code == 200 and "Default hero" not in page.text
    assert decided() == ({}, [])


def test_a_visitor_an_experiment_does_not_bucket_gets_the_default_key(proxy: Server) -> None:
    # curl's own User-Agent is a bot: the experiment leaves it its control, which is the
    # default page, and its key says so (a shared cache keeps one copy for both).
    curl = {"accept": "text/html", "user-agent": "curl/8.5.0"}
    decided = httpx.get(f"{proxy.url}/__ep/decide?url=/slotted/a%3Fexp%3Don", headers=curl)
    assert decided.json()["slots"]["hero"]["reason"] == "control"
    assert decided.json()["segment"] == "default" == decided.headers["x-ep-segment"]
    page = httpx.get(f"{proxy.url}/slotted/a?exp=on", headers=curl)
    assert b"Default hero" in page.content and page.headers["x-ep-segment"] == "default"
    bucketed = httpx.get(f"{proxy.url}/__ep/decide?url=/slotted/a%3Fexp%3Don", headers=PAGE)
    assert bucketed.json()["slots"]["hero"]["reason"] == "experiment"
    assert bucketed.json()["segment"] != "default"   # the control variant, counted, keyed


def test_fragment_returns_a_slots_variant(proxy: Server) -> None:
    fragment = httpx.get(f"{proxy.url}/__ep/fragment/hero?url=/slotted/a", headers=FACEBOOK)
    assert fragment.status_code == 200
    assert fragment.text == "<h1>Hello, friend from Facebook</h1>\n"
    assert httpx.get(f"{proxy.url}/__ep/fragment/hero?url=/", headers=PAGE).status_code == 204


def _served(proxy: Server, rule: str) -> float:
    metrics = httpx.get(f"{proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    prefix = f'ep_decisions_total{{rule="{rule}",variant="{rule}"}} '
    return next((float(line[len(prefix):]) for line in metrics.splitlines()
                 if line.startswith(prefix)), 0.0)


def test_a_fragment_counts_only_the_variant_it_shows(proxy: Server) -> None:
    # A page of two fragments counted the hero's variant twice, once for the banner's.
    before = _served(proxy, "facebook-hero")
    for slot, status in (("hero", 200), ("banner", 204)):
        fragment = httpx.get(f"{proxy.url}/__ep/fragment/{slot}?url=/slotted/counted",
                             headers=FACEBOOK)
        assert fragment.status_code == status
    assert _served(proxy, "facebook-hero") == before + 1


def test_a_fragment_of_no_slot_is_a_404_naming_the_slots(proxy: Server) -> None:
    typo = httpx.get(f"{proxy.url}/__ep/fragment/heor?url=/slotted/a", headers=FACEBOOK)
    assert typo.status_code == 404
    assert typo.text.startswith("no slot named 'heor'; did you mean 'hero'? (the rules' slots: ")
    assert typo.headers["cache-control"] == "no-store"
    assert "set-cookie" not in typo.headers


def test_trusted_edge_geo_and_device_headers_count(proxy: Server) -> None:
    headers = {**PAGE, "cookie": "crm_segment=vip", "x-original-uri": "/slotted/a",
               "cf-ipcountry": "SE", "cf-ipcity": "Malm%C3%B6",
               "cloudfront-is-tablet-viewer": "true", "x-ep-debug": ADMIN_TOKEN}
    with httpx.Client(transport=CDN) as client:
        page = client.get(f"{proxy.url}/slotted/a", headers=headers)
    trace = json.loads(page.headers["x-ep-trace"])
    assert trace["decision"]["slots"]["banner"]["by"] == "vip-cookie"
    assert "Welcome back, VIP from Malmö" in page.text


def test_spoofed_edge_headers_from_untrusted_clients_change_nothing(proxy: Server) -> None:
    headers = {**PAGE, "cookie": "crm_segment=vip", "cf-ipcountry": "SE",
               "cf-ipcity": "Spoofville", "cf-connecting-ip": "81.2.69.142",
               "cloudfront-is-tablet-viewer": "true"}
    page = httpx.get(f"{proxy.url}/slotted/a", headers=headers)
    assert "Spoofville" not in page.text
    assert "Welcome back, VIP from London" not in page.text   # the spoofed IP is ignored too
    assert "Welcome back, VIP from somewhere" in page.text


def test_search_and_ai_crawlers_get_the_default_page(proxy: Server, origin: Server) -> None:
    for agent in ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                  "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
                  "+https://openai.com/gptbot)"):
        page = httpx.get(f"{proxy.url}/slotted/a",
                         headers={**FACEBOOK, "user-agent": agent})
        assert b"Default hero" in page.content
        assert "x-ep-variant" not in page.headers
    metrics = httpx.get(f"{proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    assert 'ep_bot_requests_total{category="search"}' in metrics
    assert 'ep_bot_requests_total{category="ai"}' in metrics


def test_edge_endpoints_can_answer_trusted_proxies_only(origin: Server, tmp_path: Path) -> None:
    # Anyone could otherwise ask /__ep/decide again and again, counting exposures of
    # variants no one was shown.
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES),
                         "--trusted-proxy", "127.0.0.2", env={"EP_EDGE_TRUSTED_ONLY": "true"})
    try:
        asked = {**FACEBOOK, "x-original-uri": "/slotted/a"}
        refused = [httpx.get(f"{server.url}{path}", headers=asked)
                   for path in ("/__ep/decide", "/__ep/fragment/hero?url=/slotted/a")]
        with httpx.Client(transport=CDN) as cdn:
            decided = cdn.get(f"{server.url}/__ep/decide", headers=asked)
            fragment = cdn.get(f"{server.url}/__ep/fragment/hero?url=/slotted/a",
                               headers=FACEBOOK)
        page = httpx.get(f"{server.url}/slotted/a", headers=FACEBOOK)
    finally:
        server.stop()
    for response in refused:
        assert response.status_code == 403
        assert "edge_trusted_only" in response.text
        assert "set-cookie" not in response.headers   # no visitor made, nothing counted
    assert decided.status_code == 200
    assert decided.json()["slots"]["hero"]["variant"] == "facebook-hero"
    assert fragment.status_code == 200 and "Facebook" in fragment.text
    assert page.status_code == 200 and b"friend from Facebook" in page.content


def test_purge_tags_only_on_pages_a_shared_cache_may_store(
        proxy: Server, origin: Server, tmp_path: Path) -> None:
    private = httpx.get(f"{proxy.url}/slotted/a", headers=FACEBOOK).headers
    assert private["cache-control"].startswith("private")
    for tag_header in ("surrogate-key", "cache-tag", "edge-cache-tag"):
        assert tag_header not in private
    keyed = {"EP_KEYED_CACHING": "true"}
    every = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES), env=keyed)
    only = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES),
                       env={**keyed, "EP_CACHE_TAG_HEADERS": "cloudflare"})
    # As a cache keyed on the segment asks: with the segment's key (a shared page is
    # only ever one asked for under its own)
    keyed_facebook = {**FACEBOOK, "x-ep-segment": private["x-ep-segment"]}
    try:
        everyone = httpx.get(f"{every.url}/slotted/a", headers=keyed_facebook).headers
        response = httpx.get(f"{only.url}/slotted/a", headers=keyed_facebook)
        session = httpx.get(f"{every.url}/slotted/a?session=1", headers=keyed_facebook).headers
        fragment = httpx.get(f"{every.url}/__ep/fragment/hero?url=/slotted/a",
                             headers=keyed_facebook).headers
        only_fragment = httpx.get(f"{only.url}/__ep/fragment/hero?url=/slotted/a",
                                  headers=keyed_facebook).headers
    finally:
        every.stop()
        only.stop()
    assert everyone["cache-control"].startswith("public")
    tags = everyone["cache-tag"].split(",")
    assert "ep-rule-facebook-hero" in tags
    assert everyone["surrogate-key"].split(" ") == tags
    assert everyone["edge-cache-tag"] == everyone["cache-tag"]
    assert response.headers["cache-tag"].split(",") == tags
    assert response.headers["x-ep-segment"] == everyone["x-ep-segment"] == \
        private["x-ep-segment"]
    assert "surrogate-key" not in response.headers
    assert "edge-cache-tag" not in response.headers
    # The origin's session cookie makes the page private: no tags either.
    assert session["cache-control"].startswith("private") and "cache-tag" not in session
    # A fragment a shared cache may store carries the same tags as its page.
    assert fragment["cache-control"].startswith("public")
    assert fragment["cache-tag"].split(",") == tags
    assert fragment["surrogate-key"].split(" ") == tags
    assert only_fragment["cache-tag"].split(",") == tags
    assert "surrogate-key" not in only_fragment


def test_decide_names_no_control_characters_in_a_redirect(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/__ep/decide?url=%2Fpage%2Fgo%3Futm_campaign%3D"
                         "spring-sale%26a%3D%01%26b%3D%20%C3%A9", headers=PAGE)
    assert response.status_code == 200
    location = "/page/landing/spring?utm_campaign=spring-sale&a=%01&b=%20%C3%A9"
    assert response.headers["x-ep-redirect"] == location
    assert response.json()["redirect"] == {"location": location, "status": 302}
    # The path is matched decoded, as a server hands it over.
    assert httpx.get(f"{proxy.url}/__ep/decide?url=%2Fpage%2Fcaf%C3%A9%3Futm_campaign%3D"
                     "spring-sale", headers=PAGE).json()["redirect"] is not None


def test_fragments_name_no_variant_unless_turned_on(proxy: Server) -> None:
    fragment = httpx.get(f"{proxy.url}/__ep/fragment/hero?url=/slotted/a", headers=FACEBOOK)
    assert fragment.status_code == 200 and "x-ep-variant" not in fragment.headers
