"""The profile cookie through the real server: learned on page views, signed, private."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.classify.profile import ProfileTracker
from edge_personalizer.classify.profile_codec import ProfileCodec
from edge_personalizer.classify.visitor import Referral
from edge_personalizer.personalize.response_headers import OneLine, one_line_each

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..origin_app import CDN_CONTROLS
from ..servers import Server, start_proxy
from . import keyed_get

RULES = ROOT / "tests" / "data" / "rules"

# The demo rules personalize direct and search visitors (an experiment) and others; a
# visitor linked from an unknown blog on a desktop matches none of them.
BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8",
           "referer": "https://blog.example.org/post",
           "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
CODEC = ProfileCodec([PROFILE_KEY.encode()])


def profile_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("ep_profile="):
            return header.split(";")[0].split("=", 1)[1]
    return None


def test_page_view_sets_a_signed_private_profile_cookie(proxy: Server, origin: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/running?utm_source=newsletter&utm_medium=email",
                         headers=BROWSER)
    direct = httpx.get(f"{origin.url}/page/running?utm_source=newsletter&utm_medium=email")
    assert response.content == direct.content
    value = profile_cookie(response)
    assert value is not None
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith("ep_"))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    assert response.headers["cache-control"] == "private, max-age=60"
    state, reason = CODEC.decode(value, time.time())
    assert reason is None and state is not None
    visits, pageviews, first_referral = state[3], state[4], state[6]
    assert (visits, pageviews, first_referral[:2]) == (1, 1, ["email", "newsletter"])


def test_a_lowered_cookie_size_cap_keeps_its_visitors(origin: Server, tmp_path: Path) -> None:
    # A cookie written under the old cap (3,000 bytes) was refused as oversized: each such
    # visitor became a new one, history gone and exposures counted again.
    tracker = ProfileTracker(CODEC)
    profile = tracker.observe(cookies={}, headers={}, now=time.time(), path="/",
                              page_view=True, referral=lambda: Referral("direct", "direct"))
    for i in range(60):
        profile = profile.with_variant(f"experiment-{i}", f"variant-{i}")
    large = tracker.cookie_value(profile)
    assert 1500 < len(large) <= 3000
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY, "EP_PROFILE_MAX_BYTES": "1500"})
    try:
        page = httpx.get(f"{server.url}/page/a", headers={**BROWSER,
                                                          "cookie": f"ep_profile={large}"})
    finally:
        server.stop()
    value = profile_cookie(page)
    assert value is not None and len(value) <= 1500
    state, _ = CODEC.decode(value, time.time())
    assert state is not None and state[0] == profile.visitor_id and state[4] == 2


def test_a_full_cookie_keeps_the_experiment_s_exposure_over_rules(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    # A visitor of many campaign pages: each rule's exposure fills the cookie, and the
    # experiment's, the oldest, was let go of (and counted again at its page's next view)
    rules = "\n".join(f"  - name: campaign-{i:02}\n    when: {{request.path: /slotted/p{i}}}\n"
                      f"    then: {{banner: '<b>Offer {i}</b>'}}" for i in range(40))
    (tmp_path / "site.yaml").write_text(f"""
slots:
  hero: {{}}
  banner: {{}}
experiments:
  - name: hero-test
    slot: hero
    audience: {{request.path: /slotted/a}}
    variants: {{control: {{weight: 50}}, bold: {{weight: 50, html: "<h1>Bold</h1>"}}}}
    goals: [purchase]
goals:
  purchase: {{when: {{request.path: /page/checkout/thanks}}}}
rules:
{rules}
""")
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(tmp_path),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY, "EP_PROFILE_MAX_BYTES": "900"})
    try:
        cookie = profile_cookie(httpx.get(f"{server.url}/slotted/a", headers=BROWSER))
        assert cookie is not None
        shown = CODEC.decode(cookie, time.time())[0]
        for i in range(40):
            cookie = profile_cookie(httpx.get(f"{server.url}/slotted/p{i}", headers={
                **BROWSER, "cookie": f"ep_profile={cookie}"}))
            assert cookie is not None and len(cookie) <= 900
    finally:
        server.stop()
    state, _ = CODEC.decode(cookie, time.time())
    assert shown is not None and state is not None
    assert state[10]["hero-test"] == shown[10]["hero-test"]
    assert "campaign-39" in state[10] and "campaign-00" not in state[10]


def test_in_consent_mode_only_a_yes_keeps_a_profile(origin: Server, tmp_path: Path) -> None:
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY, "EP_CONSENT_COOKIE": "cc"})
    try:
        answers = {value: profile_cookie(httpx.get(
            f"{server.url}/page/a", headers={**BROWSER, "cookie": f"cc={value}"}))
            for value in ("yes", "granted", "reject", "off", "0", "marketing:false")}
        none = profile_cookie(httpx.get(f"{server.url}/page/a", headers=BROWSER))
    finally:
        server.stop()
    assert {value for value, cookie in answers.items() if cookie} == {"yes", "granted"}
    assert none is None


def test_returning_visitor_history_grows(proxy: Server) -> None:
    first = profile_cookie(httpx.get(f"{proxy.url}/page/a", headers=BROWSER))
    second = httpx.get(f"{proxy.url}/page/b", headers={**BROWSER,
                                                       "cookie": f"ep_profile={first}"})
    value = profile_cookie(second)
    assert value is not None
    state, _ = CODEC.decode(value, time.time())
    assert state is not None and (state[3], state[4]) == (1, 2)   # one visit, two page views


def test_no_cookie_for_assets_api_calls_or_errors(proxy: Server) -> None:
    assert profile_cookie(httpx.get(f"{proxy.url}/echo", headers=BROWSER)) is None  # JSON
    assert profile_cookie(httpx.get(f"{proxy.url}/page/x", headers={"accept": "image/*"})) \
        is None
    assert profile_cookie(httpx.get(f"{proxy.url}/status/404", headers=BROWSER)) is None
    fetch = httpx.get(f"{proxy.url}/page/x", headers={**BROWSER, "sec-fetch-dest": "script"})
    assert profile_cookie(fetch) is None
    # A page the rules could personalize is never left to shared caches (keyed caching off).
    assert fetch.headers["cache-control"] == "private, max-age=60"
    assert fetch.headers["x-ep-segment"] == "default"


def test_global_privacy_control_means_no_profile(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/x", headers={**BROWSER, "sec-gpc": "1"})
    assert profile_cookie(response) is None
    assert response.headers["cache-control"] == "private, max-age=60"


def test_tampered_cookie_is_replaced_and_counted(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/x",
                         headers={**BROWSER, "cookie": "ep_profile=1.AAAA.BBBB"})
    assert response.status_code == 200
    value = profile_cookie(response)
    assert value is not None and CODEC.decode(value, time.time())[1] is None
    metrics = httpx.get(f"{proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    assert 'ep_profile_cookies_rejected_total{reason="signature"}' in metrics


def test_crawlers_get_no_profile_cookie(proxy: Server) -> None:
    for agent in ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                  "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                  "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
                  "+https://openai.com/gptbot)"):
        for path in ("/page/x", "/slotted/a"):
            response = httpx.get(f"{proxy.url}{path}", headers={**BROWSER, "user-agent": agent})
            assert response.status_code == 200
            assert profile_cookie(response) is None, (agent, path)
    browser = httpx.get(f"{proxy.url}/page/x", headers=BROWSER)
    assert profile_cookie(browser) is not None


def test_variant_names_reach_visitors_only_when_turned_on(
        proxy: Server, origin: Server, tmp_path: Path) -> None:
    facebook = {**BROWSER, "referer": "https://l.facebook.com/"}
    quiet = httpx.get(f"{proxy.url}/slotted/a", headers=facebook)
    assert b"Hello, friend from Facebook" in quiet.content
    assert "x-ep-variant" not in quiet.headers
    told = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(RULES),
                       env={"EP_VARIANT_HEADER": "true"})
    try:
        page = httpx.get(f"{told.url}/slotted/a?inject=head", headers=facebook)
        # New visitors of the hero experiment: its control leaves the page as it came,
        # and is named all the same (on the path's first view, held, and on later ones).
        arms = {}
        for _ in range(40):
            view = httpx.get(f"{told.url}/slotted/exp?exp=on", headers=BROWSER)
            arms[view.headers["x-ep-variant"]] = b"Default hero" in view.content
    finally:
        told.stop()
    assert page.headers["x-ep-variant"] == "head=inject-head-only,hero=facebook-hero"
    assert arms == {"hero=control": True, "hero=bold": False}


def test_variant_names_outside_ascii_are_percent_encoded(origin: Server, tmp_path: Path) -> None:
    # Two variants whose names differ only past ASCII: a header written as latin-1 with
    # "?" for what it cannot hold named both "hero=caf?"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cafe.yaml").write_text(
        'slots:\n  hero: {}\nexperiments:\n  - name: coffee\n    slot: hero\n'
        '    variants:\n'
        '      "café": {weight: 50, html: "<h1>One</h1>"}\n'
        '      "cafè 100%": {weight: 50, html: "<h1>Two</h1>"}\n', encoding="utf-8")
    told = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                       env={"EP_VARIANT_HEADER": "true"})
    try:
        seen = {}
        for _ in range(40):
            view = httpx.get(f"{told.url}/slotted/a", headers=BROWSER)
            seen[view.headers["x-ep-variant"]] = view.content.count(b"<h1>One</h1>")
    finally:
        told.stop()
    assert seen == {"hero=caf%C3%A9": 1, "hero=caf%C3%A8 100%25": 0}


@pytest.fixture(scope="module")
def keyed(origin: Server, server_logs: Path) -> Iterator[Server]:
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(RULES),
                         env={"EP_KEYED_CACHING": "true", "EP_SHARED_MAX_AGE": "300",
                              "EP_PROFILE_KEYS": PROFILE_KEY})
    yield server
    server.stop()


CREDENTIALS = {"authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="}


def test_a_keyed_page_asked_for_without_its_segment_stays_private(keyed: Server) -> None:
    # A cache that keys on X-EP-Segment without asking /__ep/decide first (nginx's plain
    # proxy_cache) got a public page under "no header": a Facebook visitor's page was
    # then served to the next visitor from anywhere. Without the key, or with another,
    # the page is the visitor's own; with its key, it may be shared.
    facebook = {**BROWSER, "referer": "https://www.facebook.com/"}
    shared = {"cc": "public, max-age=60"}
    for headers in (facebook, {**facebook, "x-ep-segment": "default"}):
        page = httpx.get(f"{keyed.url}/account/x", params=shared, headers=headers)
        assert "Hello, friend from Facebook" in page.text
        assert page.headers["cache-control"] == "private, max-age=60"
        assert "cache-tag" not in page.headers
    assert keyed_get(keyed, "/account/x", shared, facebook).headers[
        "cache-control"] == "public, max-age=0, s-maxage=60"
    fragment = httpx.get(f"{keyed.url}/__ep/fragment/hero", params={"url": "/account/x"},
                         headers=facebook)
    assert fragment.status_code == 200 and fragment.headers["cache-control"] == \
        "private, no-store"
    fragment = httpx.get(f"{keyed.url}/__ep/fragment/hero", params={"url": "/account/x"},
                         headers={**facebook, "x-ep-segment": fragment.headers["x-ep-segment"]})
    assert fragment.headers["cache-control"].startswith("public")


@pytest.mark.parametrize(("params", "extra", "expected"), [
    ({}, {}, "private"),                                      # the origin said nothing
    ({"cc": "no-cache"}, {}, "private, no-cache"),
    ({"cc": "max-age=0"}, {}, "private, max-age=0"),
    ({"cc": "public, no-store"}, {}, "private, no-store"),
    ({"cc": "s-maxage=5"}, {}, "public, max-age=0, s-maxage=5"),
    ({"cc": "max-age=60"}, {}, "public, max-age=0, s-maxage=60"),
    ({"cc": "public, max-age=60, s-maxage=20"}, {}, "public, max-age=0, s-maxage=20"),
    ({"cc": "public, max-age=3600"}, {}, "public, max-age=0, s-maxage=300"),   # capped
    ({"cc": "public"}, {}, "public, max-age=0, s-maxage=300"),
    ({"expires": "-60"}, {}, "private"),
    ({"cc": "max-age=60"}, CREDENTIALS, "private, max-age=60"),
    ({"cc": "public, max-age=60"}, CREDENTIALS, "public, max-age=0, s-maxage=60"),
    ({"cc": "s-maxage=30"}, CREDENTIALS, "public, max-age=0, s-maxage=30"),
])
def test_keyed_pages_go_public_only_as_the_origin_allows_and_never_for_longer(
        keyed: Server, params: dict[str, str], extra: dict[str, str], expected: str) -> None:
    page = keyed_get(keyed, "/account/x", params, {**BROWSER, **extra})
    assert page.status_code == 200
    assert page.headers["cache-control"] == expected
    assert ("cache-tag" in page.headers) == expected.startswith("public")


def test_a_keyed_page_that_stays_private_sets_the_visitor_s_cookies(keyed: Server) -> None:
    # Shared per segment, a page carries nobody's cookie (the edge gets them from
    # /__ep/decide); one keyed caching could not share is the visitor's own, and keeps them
    # as a private page does: they stay the same visitor, in the same variants.
    private = httpx.get(f"{keyed.url}/account/x",
                        headers={**BROWSER, "cookie": "crm_segment=vip"})
    assert private.headers["cache-control"] == "private"
    value = profile_cookie(private)
    assert value is not None
    assert any(c.startswith("seen_vip=1") for c in private.headers.get_list("set-cookie"))
    # A segment named by anyone but a trusted edge makes the page no edge's.
    named = httpx.get(f"{keyed.url}/account/x", headers={**BROWSER, "x-ep-segment": "default"})
    assert profile_cookie(named) is not None
    again = httpx.get(f"{keyed.url}/account/x",
                      headers={**BROWSER, "cookie": f"ep_profile={value}"})
    state, _ = CODEC.decode(profile_cookie(again) or "", time.time())
    assert state is not None and state[4] == 2   # the second page view of the same profile
    shared = keyed_get(keyed, "/account/x", {"cc": "public, max-age=60"}, BROWSER)
    assert shared.headers["cache-control"].startswith("public")
    assert "set-cookie" not in shared.headers


def test_a_future_expires_without_cache_control_is_the_shared_lifetime(keyed: Server) -> None:
    page = keyed_get(keyed, "/account/x", {"expires": "120"}, BROWSER)
    shared, _, seconds = page.headers["cache-control"].partition(", s-maxage=")
    # Expires less the origin's Date, both to the whole second
    assert shared == "public, max-age=0" and 118 <= int(seconds) <= 121
    with_credentials = httpx.get(f"{keyed.url}/account/x", params={"expires": "120"},
                                 headers={**BROWSER, **CREDENTIALS})
    assert with_credentials.headers["cache-control"] == "private"


@pytest.mark.parametrize("keyed_caching", [False, True])
def test_a_cdn_s_own_cache_controls_never_reach_a_personalizable_page(
        request: pytest.FixtureRequest, keyed_caching: bool) -> None:
    # Cloudflare obeys its CDN-Cache-Control over Cache-Control and ignores Vary: kept on
    # a private page, one visitor's page (their search words printed in it) would be
    # served to everyone. Cache-Control is what every cache is told.
    server: Server = request.getfixturevalue("keyed" if keyed_caching else "proxy")
    page = keyed_get(server, "/account/x", {"cdn": "1", "cc": "max-age=60"}, BROWSER)
    assert page.status_code == 200 and "Default hero" in page.text
    assert not set(CDN_CONTROLS) & set(page.headers)
    # (Keyed: the CDN's own hour, not Cache-Control's minute, at most shared_max_age.)
    assert page.headers["cache-control"] == ("public, max-age=0, s-maxage=300" if keyed_caching
                                             else "private, max-age=60")
    # The page went as the origin made it: its validators still hold.
    assert page.headers["last-modified"] == "Tue, 01 Dec 2026 10:00:00 GMT"


def _listed(response: httpx.Response, name: str) -> list[str]:
    """The values of a header's one line (its lines must be one)."""
    lines = response.headers.get_list(name)
    assert len(lines) == 1, (name, lines)
    separator = " " if name == "surrogate-key" else ","
    return [value.strip() for value in lines[0].split(separator)]


@pytest.mark.parametrize("keyed_caching", [False, True], ids=["private", "keyed"])
@pytest.mark.parametrize("referer", ["https://www.facebook.com/", "https://blog.example.org/"],
                         ids=["rewritten", "as-it-came"])
def test_the_origin_s_vary_and_purge_tags_and_ours_go_out_on_one_line_each(
        request: pytest.FixtureRequest, keyed_caching: bool, referer: str) -> None:
    # nginx before 1.23 reads the last Vary line alone: beside the origin's Vary the
    # proxy's own lines made it forget Accept-Language (a French page for an English
    # visitor). And a CDN may read one line of a tag header: the origin's tags, or ours.
    server: Server = request.getfixturevalue("keyed" if keyed_caching else "proxy")
    visitor = {**BROWSER, "referer": referer, "accept-language": "fr"}
    ours = keyed_get(server, "/slotted/one-line", {}, visitor)
    page = keyed_get(server, "/slotted/one-line",
                     {"vary": "Accept-Language", "tags": "origin-page origin-shop"}, visitor)
    assert ("Default hero" in page.text) == ("blog" in referer)
    vary = _listed(page, "vary")
    assert sorted(v.lower() for v in vary) == \
        sorted({"accept-language", *(v.lower() for v in _listed(ours, "vary"))})
    assert ("X-EP-Segment" in vary) == keyed_caching
    assert ("Accept-Encoding" in vary) == ("facebook" in referer)
    for name in ("surrogate-key", "cache-tag", "edge-cache-tag"):
        tags = _listed(page, name)
        assert tags[:2] == ["origin-page", "origin-shop"], (name, tags)
        assert ("ep" in tags) == keyed_caching and len(tags) == len(set(tags)), (name, tags)


def test_the_origin_s_netlify_vary_and_ours_are_one_line(keyed: Server) -> None:
    # Netlify reads one Netlify-Vary: the origin's and the segment's parts go on one line
    page = keyed_get(keyed, "/slotted/netlify", {
        "netlify_vary": "query=lang|currency, header=Accept-Language"}, BROWSER)
    assert page.headers.get_list("netlify-vary") == \
        ["query=lang|currency,header=Accept-Language|X-EP-Segment"]


@pytest.mark.parametrize(("lines", "joined"), [
    ([b"header=A", b"header=B|A, cookie=c"], b"header=A|B,cookie=c"),
    ([b"query=lang", b"query", b"query=q"], b"query"),   # every query parameter
    ([b"Header=A", b" , header=B"], b"header=A|B"),
    ([b"header=x-ep-segment", b"header=X-EP-Segment"], b"header=x-ep-segment"),
    ([b"header = A", b"header=B", b"cookie=a|A"], b"header=A|B,cookie=a|A"),
])
def test_netlify_vary_lines_are_joined_part_by_part(lines: list[bytes], joined: bytes) -> None:
    assert one_line_each([(b"netlify-vary", line) for line in lines]) == \
        [(b"netlify-vary", joined)]


def test_lines_joined_before_are_joined_the_same_again() -> None:
    # OneLine remembers what it joined (the same Vary lines on every page of a site): the
    # same lines give the same line, each header where its first line was, every time
    one_line = OneLine(size=2)
    headers = [(b"vary", b"Cookie, referer"), (b"content-type", b"text/html"),
               (b"surrogate-key", b"a b"), (b"vary", b"cookie"), (b"vary", b"Accept-Encoding"),
               (b"surrogate-key", b"b c"), (b"cache-tag", b"x")]
    expected = [(b"vary", b"Cookie, referer, Accept-Encoding"), (b"content-type", b"text/html"),
                (b"surrogate-key", b"a b c"), (b"cache-tag", b"x")]
    for _ in range(3):
        assert one_line.each(list(headers)) == one_line_each(list(headers)) == expected
    assert one_line.each([(b"vary", b"Cookie"), (b"vary", b"*")]) == [(b"vary", b"*")]
    assert one_line.each(headers[:3]) == headers[:3]   # nothing repeated: the same list


def test_an_origin_s_vary_star_stays_a_star(keyed: Server) -> None:
    page = keyed_get(keyed, "/slotted/star", {"vary": "*"}, BROWSER)
    assert page.headers.get_list("vary") == ["*"]


def test_a_rewritten_page_drops_the_origin_s_validators_and_ranges(proxy: Server) -> None:
    # A browser's If-Modified-Since would get the origin's 304 and keep showing the variant
    # it had; a Range would be of the origin's bytes. (nginx's sub_filter drops both too.)
    facebook = {**BROWSER, "referer": "https://www.facebook.com/"}
    page = httpx.get(f"{proxy.url}/account/x", params={"cdn": "1"}, headers=facebook)
    assert page.status_code == 200 and "Default hero" not in page.text
    assert page.headers["x-campaign"] == "facebook"   # the facebook-hero rule
    assert "last-modified" not in page.headers and "accept-ranges" not in page.headers
    assert not set(CDN_CONTROLS) & set(page.headers)


def test_a_keyed_page_s_304_says_what_its_200_says_of_caching(keyed: Server) -> None:
    # A CDN revalidating a shared page the decision leaves as the origin made it gets the
    # origin's 304, whose headers replace the stored copy's: with the origin's own
    # Cache-Control (`public, max-age=60`) browsers would keep the segment's page, and a
    # longer one would outlast the shared limit. The 304 carries the 200's cache headers.
    params = {"validate": "1"}
    page = keyed_get(keyed, "/slotted/revalidated", params, BROWSER)
    assert page.status_code == 200 and "Hello, friend" not in page.text
    assert page.headers["cache-control"] == "public, max-age=0, s-maxage=60"
    # (a CDN may pass the browser's Accept, or none of its own: CloudFront's default)
    for accept in (BROWSER["accept"], "*/*"):
        again = httpx.get(f"{keyed.url}/slotted/revalidated", params=params, headers={
            **BROWSER, "accept": accept, "x-ep-segment": page.headers["x-ep-segment"],
            "if-none-match": '"v1"'})
        assert again.status_code == 304
        for name in ("cache-control", "x-ep-segment", "vary", "cache-tag", "surrogate-key"):
            assert again.headers.get(name) == page.headers.get(name), (accept, name)


def test_a_304_of_anything_but_a_page_goes_as_it_came(keyed: Server) -> None:
    # A file opened in a tab is asked for with the browser's Accept: its 304 turned
    # private, with a Vary its 200 never had, would stop a CDN keeping it.
    url = f"{keyed.url}/files/blob.bin"
    first = httpx.get(url, headers=BROWSER)
    assert first.status_code == 200 and "vary" not in first.headers
    again = httpx.get(url, headers={**BROWSER, "if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert not {"x-ep-segment", "vary", "cache-control"} & set(again.headers)


def test_a_rule_s_cache_control_holds_on_the_page_s_304(origin: Server, server_logs: Path,
                                                        tmp_path: Path) -> None:
    # The 200 says no-cache (the rule's): a 304 without it would let the browser keep the
    # page for the origin's minute without asking again.
    (tmp_path / "site.yaml").write_text("""
rules:
  - name: always-ask
    when: {device.type: desktop}
    then:
      headers: {Cache-Control: no-cache}
""")
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(tmp_path),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        page, again = page_and_its_304(f"{server.url}/slotted/ruled?validate=1")
        assert again.headers["cache-control"] == page.headers["cache-control"] == \
            "private, max-age=60, no-cache"
    finally:
        server.stop()


def test_a_private_page_s_304_stays_private(proxy: Server) -> None:
    # the origin's `public` on the 304 would make the browser's private copy shareable
    page, again = page_and_its_304(f"{proxy.url}/slotted/revalidated?validate=1")
    assert again.headers["cache-control"] == page.headers["cache-control"] == \
        "private, max-age=60"


def page_and_its_304(url: str) -> tuple[httpx.Response, httpx.Response]:
    """A browser's page of the test origin's `validate=1`, and its answer to asking again
    with the page's validator (a 304)."""
    page = httpx.get(url, headers=BROWSER)
    again = httpx.get(url, headers={**BROWSER, "if-none-match": '"v1"'})
    assert again.status_code == 304
    return page, again


def test_a_304_names_the_segment_of_what_its_page_showed(origin: Server, server_logs: Path,
                                                         tmp_path: Path) -> None:
    # The rule fills a slot the page lacks: its 200 shows nothing of it, and says so in
    # X-EP-Segment. A cache takes a 304's headers for its stored copy's: the 304 must name
    # the same segment, not the one of the decision before the page's slots were known.
    (tmp_path / "site.yaml").write_text("""
slots:
  hero: {}
  promo: {}
rules:
  - name: desktop-promo
    when: {device.type: desktop}
    then: {promo: '<b>Free shipping</b>'}
""")
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(tmp_path),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        url = f"{server.url}/slotted/promo?validate=1"
        httpx.get(url, headers=BROWSER)   # the page looked at: it has no promo slot
        page, again = page_and_its_304(url)
        assert "Free shipping" not in page.text
        assert again.headers["x-ep-segment"] == page.headers["x-ep-segment"]
    finally:
        server.stop()


@pytest.mark.parametrize("keyed_caching", [False, True])
def test_an_answer_that_reached_a_goal_carries_the_profile_and_no_cache_keeps_it(
        request: pytest.FixtureRequest, keyed_caching: bool) -> None:
    # A JSON answer the origin lets anyone cache (an order API, a tracking pixel) reports
    # a conversion: the profile that counted it goes with it, so a shared cache that kept
    # it would hand this visitor's profile (their variants, their history) to the next.
    server: Server = request.getfixturevalue("keyed" if keyed_caching else "proxy")
    decide = httpx.get(f"{server.url}/__ep/decide", params={"url": "/slotted/a?exp=on"},
                       headers=BROWSER)
    shown = httpx.get(f"{server.url}/slotted/a", params={"exp": "on"}, headers=BROWSER)
    value = profile_cookie(decide if keyed_caching else shown)
    assert value is not None
    api = httpx.get(f"{server.url}/account/api",
                    params=[("cc", "public, max-age=60, s-maxage=600"), ("cdn", "1"),
                            ("header", "content-type: application/json"),
                            ("header", "x-ep-goal: purchase")],
                    headers={**BROWSER, "cookie": f"ep_profile={value}"})
    assert api.status_code == 200 and api.headers["content-type"] == "application/json"
    assert profile_cookie(api) is not None and api.headers["x-ep-cookies"] == "set"
    assert api.headers["cache-control"] == "private, max-age=60"
    # (a CDN obeys its own controls over Cache-Control: they go too)
    assert not set(CDN_CONTROLS) & set(api.headers)
    # Without a goal reached it is the origin's answer, as it came.
    plain = httpx.get(f"{server.url}/account/api",
                      params=[("cc", "public, max-age=60"),
                              ("header", "content-type: application/json")],
                      headers={**BROWSER, "cookie": f"ep_profile={value}"})
    assert profile_cookie(plain) is None and plain.headers["cache-control"] == "public, max-age=60"


def test_a_keyed_page_that_reached_a_goal_is_the_visitor_s_and_counts_it(
        keyed: Server) -> None:
    # A thank-you page asked for as a CDN keyed on X-EP-Segment asks: were it shared, the
    # conversion (counted with the profile the page sets) would be lost, and the page
    # kept for everyone in the segment.
    value = profile_cookie(httpx.get(f"{keyed.url}/__ep/decide",
                                     params={"url": "/slotted/a?exp=on"}, headers=BROWSER))
    assert value is not None
    visitor = {**BROWSER, "cookie": f"ep_profile={value}"}
    before = _conversions(keyed)
    thanks = keyed_get(keyed, "/page/checkout/thanks", {"total": "20"}, visitor)
    assert thanks.status_code == 200 and thanks.headers["x-ep-segment"]
    assert thanks.headers["cache-control"].startswith("private")
    assert "s-maxage" not in thanks.headers["cache-control"]
    assert profile_cookie(thanks) is not None
    assert _conversions(keyed) > before
    # Nor is it shared when this request converts nothing new (a visitor of no experiment):
    # the CDN would answer the next, who would convert, from its copy.
    again = keyed_get(keyed, "/page/checkout/thanks", {"total": "20"}, BROWSER)
    assert again.headers["cache-control"].startswith("private")


def _conversions(server: Server) -> float:
    metrics = httpx.get(f"{server.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("ep_conversions_total"))
