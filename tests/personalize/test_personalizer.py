"""Rules deciding through the real server: page actions, redirects, experiments, the debug
trace, preview links and reloading (rules in tests/data/rules)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import anyio
import httpx
import pytest

from edge_personalizer.classify.profile_codec import ProfileCodec
from edge_personalizer.rules.preview import PreviewSigner

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..factories import read_store
from ..servers import Server, start_proxy

PAGE = {"accept": "text/html,application/xhtml+xml",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
FACEBOOK = {**PAGE, "referer": "https://l.facebook.com/l.php?u=x"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def test_matching_rule_adds_its_headers_and_makes_the_page_private(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/a", headers=FACEBOOK)
    assert response.status_code == 200
    assert response.headers["x-campaign"] == "facebook"
    assert response.headers["cache-control"].startswith("private")


FACEBOOK_HERO = (ROOT / "tests" / "data" / "rules" / "fragments" / "facebook.html"
                 ).read_bytes().strip()


def _served(proxy: Server, rule: str, variant: str | None = None) -> float:
    metrics = httpx.get(f"{proxy.url}/__ep/metrics", headers=ADMIN).text
    prefix = f'ep_decisions_total{{rule="{rule}",variant="{variant or rule}"}} '
    return next((float(line[len(prefix):]) for line in metrics.splitlines()
                 if line.startswith(prefix)), 0.0)


def test_variants_served_counts_only_what_the_page_shows(proxy: Server) -> None:
    # The rule's hero variant is decided for every Facebook visitor; a page without the
    # hero slot never shows it, on its first view (read for its slots) or later ones.
    before = _served(proxy, "facebook-hero")
    for _ in range(2):
        response = httpx.get(f"{proxy.url}/page/served-count", headers=FACEBOOK)
        assert response.headers["x-campaign"] == "facebook"
    assert _served(proxy, "facebook-hero") == before
    for _ in range(2):
        response = httpx.get(f"{proxy.url}/slotted/served-count", headers=FACEBOOK)
        assert FACEBOOK_HERO in response.content
    httpx.head(f"{proxy.url}/slotted/served-count", headers=FACEBOOK)   # shows nothing
    empty = httpx.get(f"{proxy.url}/html-edge/a?kind=empty", headers=FACEBOOK)
    assert empty.status_code == 200 and empty.content == b""   # an empty page shows nothing
    assert _served(proxy, "facebook-hero") == before + 2


def test_rules_never_touch_non_html_responses(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/echo", headers=FACEBOOK)
    assert "x-campaign" not in response.headers


def test_a_redirect_is_counted_served_only_when_made(proxy: Server) -> None:
    before = _served(proxy, "spring-landing", "redirect")
    campaign = {**PAGE, "accept": "text/html"}
    redirected = httpx.get(f"{proxy.url}/page/counted?utm_campaign=spring-sale",
                           headers=campaign)
    assert redirected.status_code == 302
    assert _served(proxy, "spring-landing", "redirect") == before + 1
    # The landing page itself (the loop guard), and a fetch that is no page view: the
    # rule matched, no redirect was made.
    for url, headers in (("/page/landing/spring?utm_campaign=spring-sale", campaign),
                         ("/page/counted?utm_campaign=spring-sale", {**PAGE, "accept": "*/*"})):
        assert httpx.get(f"{proxy.url}{url}", headers=headers).status_code == 200
    assert _served(proxy, "spring-landing", "redirect") == before + 1


def test_campaign_visitor_is_redirected_with_the_query_kept(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/shoes?utm_campaign=spring-sale&x=1", headers=PAGE)
    assert response.status_code == 302
    assert response.headers["location"] == "/page/landing/spring?utm_campaign=spring-sale&x=1"
    assert response.headers["cache-control"] == "private, no-store"
    assert any(c.startswith("ep_profile=") for c in response.headers.get_list("set-cookie"))


def test_a_redirect_shows_no_variant_and_counts_no_exposure(proxy: Server) -> None:
    # The visitor is in the experiment's audience (exp=on), but sees only a 302: the
    # profile it sets counts the page view, not the hero's variant (nor remembers one).
    response = httpx.get(f"{proxy.url}/page/shoes?utm_campaign=spring-sale&exp=on",
                         headers=PAGE)
    assert response.status_code == 302
    value = response.cookies["ep_profile"]
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(value, time.time())
    assert state is not None
    assert "hero-test" not in state[9] and "hero-test" not in state[10]
    landed = httpx.get(f"{proxy.url}/slotted/a?exp=on",
                       headers={**PAGE, "cookie": f"ep_profile={value}"})
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(landed.cookies["ep_profile"],
                                                           time.time())
    assert state is not None and "hero-test" in state[10]   # shown on the page: counted


def test_an_origin_s_redirect_shows_no_variant_either(proxy: Server) -> None:
    # An HTML 302 of the origin's (Django's and Rails' have a body) is no page shown.
    response = httpx.get(f"{proxy.url}/redirect?html=1&exp=on", headers=PAGE)
    assert response.status_code == 302
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(response.cookies["ep_profile"],
                                                           time.time())
    assert state is not None
    assert "hero-test" not in state[9] and "hero-test" not in state[10]


def test_a_page_to_be_rewritten_is_asked_for_whole(proxy: Server) -> None:
    # A 304 would keep the browser's copy (maybe of another variant), a range would be of
    # the origin's bytes: the origin is asked for the whole page, uncompressed.
    asked = {"if-none-match": '"v1"', "if-modified-since": "Tue, 01 Dec 2026 10:00:00 GMT",
             "range": "bytes=0-99", "if-range": '"v1"', "accept-encoding": "gzip"}
    echoed = httpx.get(f"{proxy.url}/echo", headers={**FACEBOOK, **asked}).json()
    got = {name: value for name, value in echoed["headers"] if name in asked}
    assert got == {"accept-encoding": "identity"}
    # a fetch asking for HTML is rewritten as a page view is: the origin's 304 let it keep
    # a copy of another variant, marked shareable
    fetched = httpx.get(f"{proxy.url}/echo", headers={
        **FACEBOOK, **asked, "sec-fetch-dest": "empty", "sec-fetch-mode": "cors"}).json()
    assert {name: value for name, value in fetched["headers"] if name in asked} == \
        {"accept-encoding": "identity"}
    plain = httpx.get(f"{proxy.url}/echo", headers={**PAGE, **asked}).json()   # no rule
    assert {name for name, _ in plain["headers"] if name in asked} == set(asked)


def test_a_page_seen_before_is_asked_for_whole_whatever_the_request_accepts(
        proxy: Server) -> None:
    # A client that does not say it wants HTML (curl, a script's fetch, a cache
    # revalidating) gets the page rewritten all the same: once the proxy has seen the page
    # served as HTML, the origin's 304 (validating the origin's own page, maybe another
    # variant) or 206 (a range of the origin's bytes) would give it the wrong page.
    url = f"{proxy.url}/slotted/validated?validate=1"
    shown = httpx.get(url, headers=FACEBOOK)
    assert shown.status_code == 200 and "friend from Facebook" in shown.text
    anything = {**FACEBOOK, "accept": "*/*"}
    for asked in ({"if-none-match": '"v1"'}, {"range": "bytes=0-99"},
                  {"range": "bytes=0-99", "accept": "TEXT/HTML"},   # (types are
                  {"range": "bytes=0-99", "accept": "application/xhtml+xml"}):  # any case)
        again = httpx.get(url, headers={**anything, **asked})
        assert (again.status_code, again.text) == (200, shown.text), asked
        assert "etag" not in again.headers
    # an asset's revalidation goes as it came, and so does one that cannot take HTML
    assert httpx.get(f"{proxy.url}/status/304", headers={
        **anything, "if-none-match": '"v1"'}).status_code == 304
    assert httpx.get(url, headers={**FACEBOOK, "accept": "application/json",
                                   "if-none-match": '"v1"'}).status_code == 304


def test_a_page_seen_before_is_known_whatever_campaign_brings_its_visitor(
        proxy: Server) -> None:
    # Served as HTML without campaign parameters, the page is the same page with them: a
    # revalidation that takes anything is not answered the origin's 304 (public, for the
    # origin's own page), nor one with them for the page seen with others.
    url = f"{proxy.url}/slotted/campaigned?validate=1"
    shown = httpx.get(url, headers=FACEBOOK)
    assert shown.status_code == 200 and "friend from Facebook" in shown.text
    revalidating = {**FACEBOOK, "accept": "*/*", "if-none-match": '"v1"'}
    for campaign in ("&utm_source=facebook", "&utm_source=facebook&utm_campaign=spring",
                     "&fbclid=IwAR0abc"):
        again = httpx.get(url + campaign, headers=revalidating)
        assert (again.status_code, again.text) == (200, shown.text), campaign
        assert not again.headers["cache-control"].startswith("public"), campaign
    seen_with = f"{proxy.url}/slotted/campaigned-landing?validate=1&utm_source=facebook"
    assert httpx.get(seen_with + "&utm_campaign=a", headers=FACEBOOK).status_code == 200
    again = httpx.get(seen_with + "&utm_campaign=b", headers=revalidating)
    assert (again.status_code, again.text) == (200, shown.text)


def test_redirect_loop_guard_and_bots(proxy: Server) -> None:
    landing = httpx.get(f"{proxy.url}/page/landing/spring?utm_campaign=spring-sale",
                        headers=PAGE)
    assert landing.status_code == 200
    bot = httpx.get(f"{proxy.url}/page/shoes?utm_campaign=spring-sale",
                    headers={**PAGE, "user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; "
                             "+http://www.google.com/bot.html)"})
    assert bot.status_code == 200
    api = httpx.get(f"{proxy.url}/page/shoes?utm_campaign=spring-sale",
                    headers={"accept": "application/json"})
    assert api.status_code == 200


def test_the_first_sec_fetch_dest_says_whether_a_request_is_a_page_view(
        proxy: Server) -> None:
    # A page view of the campaign is redirected; anything else reaches the page itself.
    url = f"{proxy.url}/page/shoes?utm_campaign=spring-sale"
    sent = [("sec-fetch-dest", "document"), ("sec-fetch-dest", "script")]
    assert httpx.get(url, headers=[*PAGE.items(), *sent]).status_code == 302
    assert httpx.get(url, headers=[*PAGE.items(), *sent[::-1]]).status_code == 200
    assert httpx.get(url, headers={**PAGE, "sec-fetch-dest": "document, script"}) \
        .status_code == 200
    assert httpx.get(url, headers={**PAGE, "sec-fetch-dest": "iframe"}).status_code == 302
    assert httpx.get(url, headers={**PAGE, "accept": "text/plain, text/html;q=0.9"}) \
        .status_code == 302
    assert httpx.get(url, headers={**PAGE, "accept": "Text/HTML"}).status_code == 302
    assert httpx.post(url, headers=PAGE).status_code != 302


# What Chromium 156 sends for <link rel=prefetch href=/next.html> (instant.page and
# quicklink prefetch a link so on hover), and for a speculation rule's prefetch.
LINK_PREFETCH = {"sec-purpose": "prefetch", "sec-fetch-mode": "no-cors",
                 "sec-fetch-dest": "empty", "sec-fetch-site": "same-origin",
                 "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                           "image/webp,image/apng,*/*;q=0.8"}
SPECULATION_PREFETCH = {**LINK_PREFETCH, "sec-fetch-mode": "navigate",
                        "sec-fetch-dest": "document"}


@pytest.mark.parametrize("fetched_ahead", [LINK_PREFETCH, SPECULATION_PREFETCH])
def test_a_page_fetched_ahead_of_a_click_is_personalized_as_its_view(
        proxy: Server, fetched_ahead: dict[str, str]) -> None:
    # The click is shown the copy fetched ahead and never asks the proxy: that copy is the
    # page view. A <link rel=prefetch> copy was once the page as the origin sent it.
    url = f"{proxy.url}/page/shoes?utm_campaign=spring-sale"
    headers = {**fetched_ahead, "user-agent": PAGE["user-agent"]}
    assert httpx.get(url, headers=headers).status_code == 302
    page = httpx.get(f"{proxy.url}/page/landing/spring", headers=headers)
    assert page.status_code == 200
    assert any(c.startswith("ep_profile=") for c in page.headers.get_list("set-cookie"))
    # a script or a style fetched ahead is no page
    script = {**LINK_PREFETCH, "accept": "*/*", "user-agent": PAGE["user-agent"]}
    assert httpx.get(url, headers=script).status_code == 200


def test_rule_cookie_action(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/a", headers={**PAGE, "cookie": "crm_segment=vip"})
    assert "seen_vip=1; Path=/; SameSite=Lax" in response.headers.get_list("set-cookie")


def test_experiment_variant_is_stable_and_remembered(proxy: Server) -> None:
    # (on a page with the experiment's slot: a page without it shows no variant)
    first = httpx.get(f"{proxy.url}/slotted/a?exp=on", headers=PAGE)
    cookie = next(h for h in first.headers.get_list("set-cookie") if h.startswith("ep_profile"))
    value = cookie.split(";")[0].split("=", 1)[1]
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(value, time.time())
    assert state is not None
    variant = state[9]["hero-test"]
    assert variant in ("control", "bold")
    trace_headers = {**PAGE, "cookie": f"ep_profile={value}", "x-ep-debug": ADMIN_TOKEN}
    for _ in range(3):
        again = httpx.get(f"{proxy.url}/page/b?exp=on", headers=trace_headers)
        trace = json.loads(again.headers["x-ep-trace"])
        assert trace["decision"]["slots"]["hero"]["variant"] == variant


def test_debug_trace_needs_the_token(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/page/a", headers={**FACEBOOK, "x-ep-debug": ADMIN_TOKEN})
    trace = json.loads(response.headers["x-ep-trace"])
    outcomes = {rule["name"]: rule["outcome"] for rule in trace["rules"]}
    assert outcomes["facebook-hero"] == "won"
    assert outcomes["spring-landing"] == "failed"
    failed = next(r for r in trace["rules"] if r["name"] == "spring-landing")
    assert 'referral.campaign is "spring-sale"' in failed["detail"]
    assert trace["decision"]["slots"]["hero"]["by"] == "facebook-hero"
    # The plain page has no hero: the trace says the page did not get it.
    assert "hero" in trace["page"]["lacks"] and "hero" not in trace["page"]["slots"]
    slotted = httpx.get(f"{proxy.url}/slotted/a", headers={**FACEBOOK,
                                                          "x-ep-debug": ADMIN_TOKEN})
    page = json.loads(slotted.headers["x-ep-trace"])["page"]
    assert page["slots"]["hero"] == "facebook-hero" and page["lacks"] == []
    wrong = httpx.get(f"{proxy.url}/page/a", headers={**FACEBOOK, "x-ep-debug": "guess"})
    assert "x-ep-trace" not in wrong.headers


def _preview_link(url: str, *flags: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "preview-link", "--url", url,
         "--rules", str(ROOT / "tests" / "data" / "rules"), *flags],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={"EP_PROFILE_KEYS": PROFILE_KEY, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_preview_link_shows_a_rule_to_anyone(proxy: Server) -> None:
    link = _preview_link(f"{proxy.url}/page/x", "--rule", "spring-landing")
    response = httpx.get(link, headers=PAGE)
    assert response.status_code == 302
    assert response.headers["location"] == "/page/landing/spring"
    echoed = httpx.get(_preview_link(f"{proxy.url}/echo?keep=1", "--rule", "facebook-hero"))
    assert echoed.json()["query"] == "keep=1"   # the origin never sees the token


def test_tampered_or_expired_preview_is_ignored(proxy: Server) -> None:
    link = _preview_link(f"{proxy.url}/page/x", "--rule", "spring-landing")
    assert httpx.get(link[:-3] + "AAA", headers=PAGE).status_code == 200
    # signed with the server's key, as preview-link signs, but a second past its time
    expired = PreviewSigner(PROFILE_KEY.encode()).link(
        f"{proxy.url}/page/x", "spring-landing", None, time.time() - 1)
    assert httpx.get(expired, headers=PAGE).status_code == 200


def test_reload_endpoint_needs_the_token(proxy: Server) -> None:
    assert httpx.post(f"{proxy.url}/__ep/reload").status_code == 401
    assert httpx.get(f"{proxy.url}/__ep/reload", headers=ADMIN).status_code == 405
    response = httpx.post(f"{proxy.url}/__ep/reload", headers=ADMIN)
    assert response.status_code == 200 and response.json()["reloaded"] is True


@pytest.fixture
def editable_proxy(origin: Server, server_logs: Path,
                   tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "tests" / "data" / "rules", rules)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_RULES_WATCH_INTERVAL": "0.2", "EP_ADMIN_TOKEN": ADMIN_TOKEN})
    yield server, rules
    server.stop()


def _health(server: Server) -> dict[str, object]:
    rules: dict[str, object] = server.health().json()["rules"]
    return rules


def _wait_for(check: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_edits_are_picked_up_and_bad_edits_keep_the_last_good_set(
        editable_proxy: tuple[Server, Path]) -> None:
    server, rules = editable_proxy
    before = _health(server)["version"]
    site = rules / "site.yaml"
    good = site.read_text()
    site.write_text(good.replace("X-Campaign: facebook", "X-Campaign: fb-2"))
    assert _wait_for(lambda: _health(server)["version"] != before)
    assert httpx.get(f"{server.url}/page/a", headers=FACEBOOK).headers["x-campaign"] == "fb-2"
    serving = _health(server)["version"]
    site.write_text(good.replace("referral.source: facebook", "referral.sorce: facebook"))
    assert _wait_for(lambda: _health(server)["last_error"] is not None)
    health = _health(server)
    assert health["version"] == serving
    assert "site.yaml:11:" in str(health["last_error"])
    assert "did you mean 'referral.source'" in str(health["last_error"])
    assert httpx.get(f"{server.url}/page/a", headers=FACEBOOK).headers["x-campaign"] == "fb-2"


def test_sighup_reloads_the_rules(origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "tests" / "data" / "rules", rules)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_RULES_WATCH_INTERVAL": "0"})   # no watching: only the signal
    try:
        before = _health(server)["version"]
        site = rules / "site.yaml"
        site.write_text(site.read_text().replace("X-Campaign: facebook", "X-Campaign: hup"))
        time.sleep(0.3)
        assert _health(server)["version"] == before
        server.process.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: _health(server)["version"] != before)
        assert httpx.get(f"{server.url}/page/a", headers=FACEBOOK).headers["x-campaign"] == "hup"
    finally:
        server.stop()


def test_rule_exposures_count_only_when_there_are_goals_to_judge_them_on(
        tmp_path: Path) -> None:
    from edge_personalizer.learn.attribution import Learning
    from edge_personalizer.learn.counters import Accumulator
    from edge_personalizer.personalize.personalizer import Personalizer
    from edge_personalizer.rules.book import RuleBook

    from ..factories import IPHONE, make_classifier

    rules = "slots: {hero: {}}\nrules:\n  - name: all\n    then: {hero: {html: '<b>x</b>'}}\n"
    counted = []
    for goals in ("", "goals: {buy: {when: {request.path: /thanks}}}\n"):
        (tmp_path / "site.yaml").write_text(rules + goals)
        learning = Learning(Accumulator())
        personalizer = Personalizer(rules=RuleBook(tmp_path), classifier=make_classifier(),
                                    learning=learning)
        exchange = personalizer.begin({
            "type": "http", "method": "GET", "path": "/", "query_string": b"",
            "headers": [(b"accept", b"text/html"), (b"user-agent", IPHONE.encode())],
            "client": ("203.0.113.5", 1)})
        personalizer.profile_after(exchange)
        counted.append(learning.attribution.exposures)
    assert counted == [0, 1]


def test_a_removed_experiment_s_recorded_goals_never_bind_a_rule_of_its_name(
        tmp_path: Path) -> None:
    from edge_personalizer.learn.attribution import Learning
    from edge_personalizer.learn.catalog import TABLE_NAME, GoalCatalog
    from edge_personalizer.learn.counters import Accumulator, day_start
    from edge_personalizer.learn.readers import catalog_reader
    from edge_personalizer.learn.store import open_store, sqlite_url
    from edge_personalizer.personalize.personalizer import _judged_on
    from edge_personalizer.rules.book import load_rules

    (tmp_path / "site.yaml").write_text(
        "slots: {hero: {}}\ngoals: {signup: {when: {request.path: /signup}}}\n"
        "rules:\n  - name: old-test\n    then: {hero: {html: x}}\n"
        "experiments:\n  - name: hero-test\n    slot: hero\n    goals: [signup]\n"
        "    variants: {control: {weight: 1}, a: {weight: 1, html: A}}\n")
    ruleset = load_rules(tmp_path)
    recorded = GoalCatalog(MappingProxyType({"old-test": ("signup",),
                                             "gone-test": ("signup",),
                                             "hero-test": ()}))

    async def learning() -> Learning:
        store = open_store(sqlite_url(tmp_path / "ep.db"))
        await store.publish(TABLE_NAME, recorded.encode())
        reader = catalog_reader(store)
        await reader.refresh()
        await store.close()
        return Learning(Accumulator(), catalog=reader)

    judged = anyio.run(learning)
    now = day_start("2026-12-05") + 3600
    assert _judged_on(ruleset, judged, now, "old-test") is None   # a rule: every goal
    assert _judged_on(ruleset, judged, now, "gone-test") == {"signup": 0}
    assert _judged_on(ruleset, judged, now, "never-seen") is None
    # a goal the record lacks joins the experiment under way: from the next UTC day
    assert _judged_on(ruleset, judged, now, "hero-test") == {"signup": day_start("2026-12-06")}


BANDIT_RULES = """\
slots: {hero: {}}
goals:
  purchase: {when: {request.path: /page/thanks}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
    allocation: bandit
    bandit: {burn_in: 0, floor: 10, update_every: 1s}
    variants: {control: {weight: 1}, a: {weight: 1, html: A}}
"""


def _counting(origin: Server, tmp_path: Path, rules_text: str) -> tuple[Server, str]:
    """A server of `rules_text` counting into an SQLite store of its own (written every
    0.2 s and on the way out), and the store's URL."""
    from edge_personalizer.learn.store import sqlite_url

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "experiment.yaml").write_text(rules_text)
    url = sqlite_url(tmp_path / "ep.db")
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules), env={
        "EP_PROFILE_KEYS": PROFILE_KEY, "EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_STORE_URL": url,
        "EP_PROFILE_COOKIE_SECURE": "false", "EP_STORE_FLUSH_INTERVAL": "0.2"})
    return server, url


def _exposed(client: httpx.Client, codec: ProfileCodec) -> tuple[str, int]:
    """A new visitor's page view: their profile cookie, and the period (weights version)
    their exposure to hero-test was counted in, as the cookie remembers it."""
    client.cookies.clear()
    page = client.get("/slotted/home", headers=PAGE)
    value = page.cookies["ep_profile"]
    state, _ = codec.decode(value, time.time())
    assert state is not None
    variant, _, cell, period = state[10]["hero-test"]
    assert variant in ("control", "a") and cell == "all"
    return value, period


def test_a_conversion_counts_in_the_period_its_visitor_was_assigned_in(
        origin: Server, tmp_path: Path) -> None:
    from edge_personalizer.learn.counters import EXPOSURE

    server, url = _counting(origin, tmp_path, BANDIT_RULES)
    codec = ProfileCodec([PROFILE_KEY.encode()])
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:

            def until_beyond(period: int) -> list[tuple[str, int]]:
                """New visitors until one is assigned under weights newer than `period`."""
                seen: list[tuple[str, int]] = []
                deadline = time.monotonic() + 20
                while not seen or seen[-1][1] <= period:
                    assert time.monotonic() < deadline, "the bandit weights never changed"
                    seen.append(_exposed(client, codec))
                    time.sleep(0.2)
                return seen

            first = until_beyond(0)   # the starting weights, then the first published ones
            early = first[-1:] + [_exposed(client, codec) for _ in range(3)]
            late = until_beyond(max(period for _, period in early))
            late += [_exposed(client, codec) for _ in range(3)]
            for cookie, _ in (early[0], late[-1]):   # a purchase by one visitor of each group
                client.cookies.clear()
                client.get("/page/thanks", headers={**PAGE, "cookie": f"ep_profile={cookie}"})
            results = client.get("/__ep/results", headers=ADMIN).json()
    finally:
        server.stop()   # the last counts are written on the way out

    counted = read_store(url, lambda store: store.totals("hero-test"))
    assigned: dict[int, int] = {}
    for _, period in first[:-1] + early + late:
        assigned[period] = assigned.get(period, 0) + 1
    exposed: dict[int, int] = {}
    for key, tally in counted.items():
        if key.goal == EXPOSURE:
            exposed[key.period] = exposed.get(key.period, 0) + tally.exposures
    assert exposed == assigned
    # The early visitor bought while later weights were serving: counted in their own period.
    assert sorted(k.period for k, t in counted.items() if k.goal == "purchase"
                  for _ in range(t.conversions)) == sorted([early[0][1], late[-1][1]])
    assert 1 <= early[0][1] < late[-1][1]
    (experiment,) = results["experiments"]
    assert experiment["bandit"]["version"] >= late[-1][1]
    assert experiment["goals"]["purchase"]["weighted_by"] == "period"


FIXED_RULES = """
slots: {hero: {}}
goals:
  purchase: {when: {request.path: /page/thanks}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
    variants: {control: {weight: 1}, a: {weight: 1, html: A}}
"""


def test_a_full_profile_keeps_the_served_experiment_s_exposure(
        origin: Server, tmp_path: Path) -> None:
    # A loyal visitor's cookie holds the variants of experiments removed long ago. It
    # was trimmed of the served experiment's exposure on every page: each view was
    # counted again and the purchase counted for no one.
    from edge_personalizer.classify.profile import ProfileTracker
    from edge_personalizer.classify.visitor import Referral
    from edge_personalizer.learn.counters import EXPOSURE

    tracker = ProfileTracker(ProfileCodec([PROFILE_KEY.encode()]))
    profile = tracker.observe(cookies={}, headers={}, now=time.time(), path="/",
                              page_view=True, referral=lambda: Referral("direct", "direct"))
    for i in range(60):
        profile = profile.with_variant(f"an-experiment-removed-long-ago-{i}", "variant-b")
    server, url = _counting(origin, tmp_path, FIXED_RULES)
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            value = tracker.cookie_value(profile)
            assert len(value) > 2800   # the cap is 3,000: the exposure does not fit
            client.cookies.set("ep_profile", value, domain="127.0.0.1")
            for _ in range(3):
                assert client.get("/slotted/home", headers=PAGE).status_code == 200
            client.get("/page/thanks", headers=PAGE)
    finally:
        server.stop()   # the last counts are written on the way out
    counted = read_store(url, lambda store: store.totals("hero-test"))
    assert sum(t.exposures for k, t in counted.items() if k.goal == EXPOSURE) == 1
    assert sum(t.conversions for k, t in counted.items() if k.goal == "purchase") == 1


TAKEN_RULES = """\
slots: {hero: {}}
goals:
  purchase: {when: {request.path: /page/thanks}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
    holdout: 0
    variants: {control: {weight: 1}, a: {weight: 1, html: A}}
"""
PHONE_HERO = TAKEN_RULES.replace("experiments:", """\
rules:
  - name: phone-hero
    when: {request.query.phone: "1"CONDITION}
    then: {hero: {html: Phone}}
experiments:""")


def test_a_rule_that_takes_an_experiment_s_slot_from_its_visitors_is_told(
        origin: Server, tmp_path: Path) -> None:
    # Visitors are counted in hero-test; a rule is then added that fills the hero for
    # some of them (rules come first). Their page views showing the rule are counted, and
    # the experiment's results say so; a rule leaving the experiment's visitors out, as
    # the warning suggests, takes nothing from them.
    server, url = _counting(origin, tmp_path, TAKEN_RULES)
    rules = tmp_path / "rules" / "experiment.yaml"
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            cookies = []
            for _ in range(2):
                client.cookies.clear()
                cookies.append(client.get("/slotted/home", headers=PAGE).cookies["ep_profile"])
            server.serve_rules(rules, PHONE_HERO.replace("CONDITION", ""))
            for cookie in cookies:
                client.cookies.clear()
                page = client.get("/slotted/home?phone=1",
                                  headers={**PAGE, "cookie": f"ep_profile={cookie}"})
                assert "Phone" in page.text
            deadline = time.monotonic() + 10   # (the two views may be flushed apart)
            while not (warned := [w for w in client.get(
                    "/__ep/results", headers=ADMIN).json()["experiments"][0]["warnings"]
                    if w.startswith("rule phone-hero")]) or "on 1 page view " in warned[0]:
                assert time.monotonic() < deadline, warned or "the rule's taking was not told"
                time.sleep(0.2)
            assert "on 2 page views of visitors it had counted" in warned[0]
            server.serve_rules(rules, PHONE_HERO.replace(
                "CONDITION", ", profile.variants.hero-test: {exists: false}"))
            client.cookies.clear()
            kept = client.get("/slotted/home?phone=1",
                              headers={**PAGE, "cookie": f"ep_profile={cookies[0]}"})
            client.cookies.clear()
            new = client.get("/slotted/home?phone=1", headers=PAGE)
            assert "Phone" not in kept.text and "Phone" in new.text
    finally:
        server.stop()   # the last counts are written on the way out
    from edge_personalizer.learn.counters import TAKEN

    taken = read_store(url, lambda store: store.totals(TAKEN))
    assert {(k.variant, k.cell): t.exposures for k, t in taken.items()} == {
        ("hero-test", "phone-hero"): 2}
