"""A real shared cache in front: nginx proxy_cache keyed by the segment that
/__ep/decide returns (the setup docs/cdn.md gives). Two segments each get their own
variant from the cache; nobody ever gets another segment's page; with keyed caching off
nothing personalized is cached at all."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .conftest import ADMIN_TOKEN
from .servers import Server, free_port, start_proxy

NGINX_CONF = """
user root;
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    proxy_cache_path {tmp}/cache keys_zone=ep:1m;
    # decide's cookies, unless edge-personalizer answered the page and set them itself
    map $upstream_http_x_ep_cookies $ep_cookie_out {{ "" $ep_cookie; default ""; }}
    map $upstream_http_x_ep_cookies $ep_cookie_1_out {{ "" $ep_cookie_1; default ""; }}
    map $upstream_http_x_ep_cookies $ep_cookie_2_out {{ "" $ep_cookie_2; default ""; }}
    # a page shared per segment is kept by no cache past this one
    map $upstream_http_cache_control $ep_cache_control {{
        "~^public, max-age=0, s-maxage=" "private, max-age=0";
        default $upstream_http_cache_control;
    }}

    upstream edge_personalizer {{ server 127.0.0.1:{upstream}; keepalive 64; }}

    server {{
        listen 127.0.0.1:{port};

        location = /__ep/decide {{ return 404; }}
        location ^~ /__ep/fragment/ {{ return 404; }}

        location = /__ep_decide {{
            internal;
            proxy_pass http://edge_personalizer/__ep/decide;
            proxy_pass_request_body off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-URL "";
            proxy_set_header X-EP-URL "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header Forwarded "";
        }}

        location / {{
            auth_request /__ep_decide;
            auth_request_set $ep_segment $upstream_http_x_ep_segment;
            auth_request_set $ep_cookie $upstream_http_set_cookie;
            auth_request_set $ep_cookie_1 $upstream_http_x_ep_cookie_1;
            auth_request_set $ep_cookie_2 $upstream_http_x_ep_cookie_2;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-EP-Segment $ep_segment;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header Forwarded "";
            proxy_set_header X-Forwarded-Port "";
            proxy_set_header X-Forwarded-Prefix "";
            proxy_set_header X-Forwarded-Ssl "";
            proxy_cache ep;
            proxy_cache_key "$scheme$host$request_uri|$ep_segment";
            proxy_pass http://edge_personalizer;
            proxy_hide_header Cache-Control;
            proxy_hide_header X-EP-Cookies;
            add_header Cache-Control $ep_cache_control always;
            add_header X-Cache $upstream_cache_status always;
            add_header X-Upstream-Cache-Control $upstream_http_cache_control always;
            add_header X-Seen-Segment $ep_segment always;
            add_header Set-Cookie $ep_cookie_out;
            add_header Set-Cookie $ep_cookie_1_out;
            add_header Set-Cookie $ep_cookie_2_out;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None:
        raise RuntimeError("this test needs nginx (Debian: apt-get install nginx-light); "
                           ".ci/run installs it")
    return found


def start_nginx(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, port=port))
    with (tmp / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen([nginx_binary(), "-p", str(tmp), "-c",
                                    str(tmp / "nginx.conf"), "-g", "daemon off;"], stderr=stderr)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/__ep/health/live", timeout=1)
            return process, port
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError((tmp / "stderr.log").read_text()) from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("nginx did not start")


@pytest.fixture(scope="module", params=[True, False], ids=["keyed", "private"])
def edge(request: pytest.FixtureRequest, origin: Server,
         server_logs: Path) -> Iterator[tuple[Server, bool]]:
    """edge-personalizer with keyed caching on or off, shared by this module's tests: each
    visits paths of its own (what the proxy learns of a page is the page's), behind an
    nginx of its own."""
    keyed: bool = request.param
    proxy = start_proxy(server_logs, "--origin", origin.url, "--rules",
                        str(Path(__file__).parent / "data" / "rules"),
                        "--trusted-proxy", "127.0.0.1",
                        env={"EP_KEYED_CACHING": "true" if keyed else "false",
                             "EP_SHARED_MAX_AGE": "300", "EP_ADMIN_TOKEN": ADMIN_TOKEN})
    yield proxy, keyed
    proxy.stop()


@pytest.fixture
def cached_site(edge: tuple[Server, bool], tmp_path: Path) -> Iterator[tuple[int, bool]]:
    """nginx's port in front of `edge`, and whether caching is keyed: a new nginx, so an
    empty cache, for each test."""
    proxy, keyed = edge
    nginx, port = start_nginx(tmp_path, proxy.port)
    yield port, keyed
    nginx.terminate()
    nginx.wait(timeout=10)


PAGE = {"accept": "text/html",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36"}
SEGMENTS = {"facebook": {**PAGE, "referer": "https://l.facebook.com/"}, "default": PAGE}
EXPECTED = {"facebook": b"Hello, friend from Facebook", "default": b"Default hero"}


def profile_cookies(response: httpx.Response) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith("ep_profile=")]


def test_every_visitor_gets_one_profile_cookie_whatever_their_decision_sets(
        cached_site: tuple[int, bool]) -> None:
    # vip-cookie (tests/data/rules) sets a rule cookie, seen_vip=1, beside the profile.
    port, keyed = cached_site
    vip = {**PAGE, "cookie": "crm_segment=vip"}
    for attempt in range(2):   # a miss, then (keyed) a hit
        for headers in (vip, PAGE):
            response = httpx.get(f"http://127.0.0.1:{port}/slotted/cookies", headers=headers)
            assert response.status_code == 200
            assert len(profile_cookies(response)) == 1, (attempt, response.headers)
            assert response.headers["x-cache"] == ("HIT" if keyed and attempt else "MISS")
        assert "seen_vip=1; Path=/; SameSite=Lax" in \
            httpx.get(f"http://127.0.0.1:{port}/slotted/cookies", headers=vip) \
            .headers.get_list("set-cookie")


def test_a_visitor_with_no_profile_gets_each_rule_cookie_once(
        cached_site: tuple[int, bool]) -> None:
    # With no profile to set (Do Not Track), decide's first Set-Cookie was the rule's,
    # sent again as X-EP-Cookie-1: nginx set it twice.
    port, _ = cached_site
    vip = {**PAGE, "cookie": "crm_segment=vip", "dnt": "1"}
    response = httpx.get(f"http://127.0.0.1:{port}/slotted/cookies-dnt", headers=vip)
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == ["seen_vip=1; Path=/; SameSite=Lax"]


def test_a_redirected_visitor_gets_one_profile(cached_site: tuple[int, bool]) -> None:
    port, _ = cached_site
    response = httpx.get(f"http://127.0.0.1:{port}/page/a?utm_campaign=spring-sale",
                         headers=PAGE)
    assert response.status_code == 302
    assert "/page/landing/spring" in response.headers["location"]
    assert len(profile_cookies(response)) == 1, response.headers


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_visitors_behind_nginx_cannot_choose_their_place(
        cached_site: tuple[int, bool]) -> None:
    port, _ = cached_site
    made_up = {**PAGE, "cookie": "crm_segment=vip", "x-forwarded-for": "81.2.69.142",
               "x-akamai-edgescape": "country_code=DE,city=BERLIN", "cf-ipcity": "Paris",
               "true-client-ip": "81.2.69.142"}
    page = httpx.get(f"http://127.0.0.1:{port}/slotted/place", headers=made_up)
    assert b"Welcome back, VIP from somewhere" in page.content, page.text[:400]
    echoed = httpx.get(f"http://127.0.0.1:{port}/echo/place", headers=made_up).json()
    forwarded = [v for k, v in echoed["headers"] if k == "x-forwarded-for"]
    assert forwarded and "81.2.69.142" not in forwarded[0], echoed["headers"]


def test_each_segment_gets_its_own_page_from_the_cache(cached_site: tuple[int, bool]) -> None:
    port, keyed = cached_site
    statuses: dict[str, list[str]] = {"facebook": [], "default": []}
    for round_number in range(4):
        for segment, headers in SEGMENTS.items():
            response = httpx.get(f"http://127.0.0.1:{port}/slotted/shared", headers=headers)
            assert response.status_code == 200
            other = next(s for s in EXPECTED if s != segment)
            assert EXPECTED[segment] in response.content, (round_number, segment)
            assert EXPECTED[other] not in response.content, (round_number, segment)
            statuses[segment].append(response.headers.get("x-cache", ""))
    if keyed:
        for segment in SEGMENTS:
            assert statuses[segment][0] == "MISS"
            assert statuses[segment][1:] == ["HIT"] * 3, statuses
    else:
        for segment in SEGMENTS:
            assert "HIT" not in statuses[segment], statuses


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_a_first_visit_is_cached_under_the_key_of_the_page_it_got(
        cached_site: tuple[int, bool]) -> None:
    # No cookie, so /__ep/decide and the page request each see a new visitor; the
    # experiment (tests/data/rules: hero-test) splits new visitors 50/50. The page must
    # be the one for the segment decide gave, which nginx keys the cache on.
    port, keyed = cached_site
    assert keyed
    bold_by_segment: dict[str, set[bool]] = {}
    for attempt in range(12):
        for _ in range(2):
            response = httpx.get(f"http://127.0.0.1:{port}/slotted/first-{attempt}?exp=on",
                                 headers=PAGE)
            assert response.status_code == 200
            segment = response.headers["x-seen-segment"]
            bold_by_segment.setdefault(segment, set()).add(b"<h1>Bold</h1>" in response.content)
    assert len(bold_by_segment) == 2, bold_by_segment   # control and bold
    assert all(len(bold) == 1 for bold in bold_by_segment.values()), bold_by_segment


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
@pytest.mark.parametrize("segment", SEGMENTS)
def test_the_origin_s_vary_holds_behind_the_cache(
        cached_site: tuple[int, bool], segment: str) -> None:
    # nginx 1.22 reads the last Vary line alone: edge-personalizer's own, beside the
    # origin's, made it give a French page to an English visitor, and a gzip body to a
    # visitor who asked for none.
    port, _ = cached_site
    url = f"http://127.0.0.1:{port}/slotted/vary-{segment}"
    by_language = {"vary": "Accept-Language"}
    french = httpx.get(url, params=by_language, headers={**SEGMENTS[segment],
                                                          "accept-language": "fr"})
    english = httpx.get(url, params=by_language, headers={**SEGMENTS[segment],
                                                           "accept-language": "en-GB"})
    assert (french.headers["x-cache"], english.headers["x-cache"]) == ("MISS", "MISS")
    assert "Accept-Language: en-GB" in english.text and EXPECTED[segment] in english.content
    again = httpx.get(url, params=by_language, headers={**SEGMENTS[segment],
                                                         "accept-language": "fr"})
    assert again.headers["x-cache"] == "HIT" and "Accept-Language: fr" in again.text
    coded = {"vary": "Accept-Encoding", "gz": "asked"}
    gzipped = httpx.get(url + "-coded", params=coded,
                        headers={**SEGMENTS[segment], "accept-encoding": "gzip"})
    plain = httpx.get(url + "-coded", params=coded,
                      headers={**SEGMENTS[segment], "accept-encoding": "identity"})
    assert gzipped.headers["content-encoding"] == "gzip"
    assert plain.headers["x-cache"] == "MISS" and "content-encoding" not in plain.headers
    assert EXPECTED[segment] in plain.content


ALICE = {**PAGE, "cookie": "sid=alice"}
BOB = {**PAGE, "cookie": "sid=bob"}
CREDENTIALS = {**PAGE, "authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="}


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
@pytest.mark.parametrize("cache_control", ["", "no-cache", "max-age=0", "public, no-store",
                                           "private, max-age=60"])
def test_a_page_the_origin_lets_no_shared_cache_keep_reaches_nobody_else(
        cached_site: tuple[int, bool], cache_control: str) -> None:
    # /account prints the visitor's own session cookie; the origin allows no shared cache.
    port, _ = cached_site
    url = f"http://127.0.0.1:{port}/account/" + (cache_control.replace(", ", "-") or "none")
    params = {"cc": cache_control} if cache_control else {}
    alice = httpx.get(url, params=params, headers=ALICE)
    bob = httpx.get(url, params=params, headers=BOB)
    assert b"sid=alice" in alice.content
    assert b"sid=bob" in bob.content and b"alice" not in bob.content
    assert bob.headers["x-cache"] != "HIT"
    assert alice.headers["cache-control"].startswith("private")


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
@pytest.mark.parametrize(("params", "told", "statuses"), [
    ({"cc": "max-age=600", "header": "Surrogate-Control: no-store"}, "private, max-age=600",
     ["MISS", "MISS"]),
    ({"cc": "no-cache", "header": "Surrogate-Control: max-age=60"},
     "public, max-age=0, s-maxage=60", ["MISS", "HIT"]),   # Fastly's way
], ids=["cdn-no-store", "cdn-max-age"])
def test_what_the_origin_tells_cdns_alone_holds_behind_the_cache(
        cached_site: tuple[int, bool], params: dict[str, str], told: str,
        statuses: list[str]) -> None:
    # The origin's CDN-only controls were dropped unread: its page went to nginx as
    # `s-maxage=300` though the CDN was told not to keep it, or to keep it a minute.
    port, _ = cached_site
    url = f"http://127.0.0.1:{port}/account/{statuses[1].lower()}"
    pages = [httpx.get(url, params=params, headers=PAGE) for _ in statuses]
    assert [page.headers["x-cache"] for page in pages] == statuses
    assert pages[0].headers["x-upstream-cache-control"] == told
    assert "surrogate-control" not in pages[0].headers


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_a_page_answered_to_credentials_is_shared_only_when_the_origin_says_public(
        cached_site: tuple[int, bool]) -> None:
    port, _ = cached_site
    for path, params in (("/secret/a", {}), ("/secret/b", {"cc": "max-age=60"})):
        url = f"http://127.0.0.1:{port}{path}"
        assert httpx.get(url, params=params, headers=CREDENTIALS).status_code == 200
        anonymous = httpx.get(url, params=params, headers=PAGE)
        assert anonymous.status_code == 401, path
        assert b"YWxpY2U6" not in anonymous.content
    # The origin may say that an answer to credentials is for everyone (RFC 9111 3.5).
    url = f"http://127.0.0.1:{port}/secret/c"
    shared = httpx.get(url, params={"cc": "public, max-age=60"}, headers=CREDENTIALS)
    assert shared.headers["x-upstream-cache-control"] == "public, max-age=0, s-maxage=60"
    assert shared.headers["cache-control"] == "private, max-age=0"   # (past nginx)
    again = httpx.get(url, params={"cc": "public, max-age=60"}, headers=CREDENTIALS)
    assert again.headers["x-cache"] == "HIT"


@contextmanager
def nginx_in_front(origin: Server, logs: Path, tmp: Path, rules: Path) -> Iterator[int]:
    """edge-personalizer with keyed caching on `rules`, nginx's port in front of it."""
    proxy = start_proxy(logs, "--origin", origin.url, "--rules", str(rules),
                        "--trusted-proxy", "127.0.0.1",
                        env={"EP_KEYED_CACHING": "true", "EP_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        nginx, port = start_nginx(tmp, proxy.port)
        try:
            yield port
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    finally:
        proxy.stop()


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
      redirect: {to: /slotted/bienvenue, status: 302}
  - name: german-cookie
    when: {language.primary: de}
    then:
      cookies: {seen_de: "1"}
"""


def test_a_rules_headers_redirect_and_cookies_are_in_the_key(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(ACTION_RULES)
    with nginx_in_front(origin, server_logs, tmp_path, rules) as port:
        url = f"http://127.0.0.1:{port}/slotted/p"
        italian = httpx.get(url, headers={**PAGE, "accept-language": "it"})
        assert italian.headers["x-promo"] == "italy" and italian.headers["x-cache"] == "MISS"
        anyone = httpx.get(url, headers=PAGE)
        assert "x-promo" not in anyone.headers and anyone.headers["x-cache"] == "MISS"
        assert anyone.headers["x-seen-segment"] != italian.headers["x-seen-segment"]
        assert httpx.get(url, headers=PAGE).headers["x-cache"] == "HIT"
        french = httpx.get(url, headers={**PAGE, "accept-language": "fr"})
        assert french.status_code == 302
        assert french.headers["location"] == "/slotted/bienvenue"
        german = httpx.get(url, headers={**PAGE, "accept-language": "de"})
        assert german.headers["x-cache"] == "MISS"
        assert german.headers["x-seen-segment"] not in (anyone.headers["x-seen-segment"],
                                                        italian.headers["x-seen-segment"])


def test_an_edited_variant_is_served_at_once_under_a_new_key(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "fragments").mkdir(parents=True)
    (rules / "site.yaml").write_text("slots: {hero: {}}\nrules:\n  - name: spring\n"
                                     "    then: {hero: fragments/spring.html}\n")
    (rules / "fragments" / "spring.html").write_text("<h1>Spring sale: 10% off</h1>")
    with nginx_in_front(origin, server_logs, tmp_path, rules) as port:
        url = f"http://127.0.0.1:{port}/slotted/e"
        assert b"10% off" in httpx.get(url, headers=PAGE).content
        cached = httpx.get(url, headers=PAGE)
        assert b"10% off" in cached.content and cached.headers["x-cache"] == "HIT"
        (rules / "fragments" / "spring.html").write_text("<h1>Spring sale: 20% off</h1>")
        reloaded = httpx.post(f"http://127.0.0.1:{port}/__ep/reload",
                              headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert reloaded.status_code == 200, reloaded.text
        edited = httpx.get(url, headers=PAGE)
        assert b"20% off" in edited.content, edited.headers
        assert edited.headers["x-seen-segment"] != cached.headers["x-seen-segment"]


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_visitors_cannot_ask_for_decisions_through_the_edge(
        cached_site: tuple[int, bool]) -> None:
    # decide counts the variants it names: the docs' nginx keeps it from visitors, and
    # edge-personalizer answers its exact path only, so no spelling of it gets through.
    port, _ = cached_site
    for path in ("/__ep/decide", "/__ep/decide/", "/__ep//decide", "/__ep/decide?url=/",
                 "/__ep/fragment/hero"):
        response = httpx.get(f"http://127.0.0.1:{port}{path}",
                             headers={**SEGMENTS["facebook"], "x-original-uri": "/slotted/a"})
        assert response.status_code == 404, path
        assert "segment" not in response.text


def test_a_visitor_cannot_name_another_page_for_its_decision(
        cached_site: tuple[int, bool]) -> None:
    # decide reads the page from X-Original-URI, X-Original-URL or X-EP-URL: the docs'
    # nginx sets the first and clears the others, which a visitor may send (naming a page
    # whose rule redirects them: decide would refuse the request as ambiguous).
    port, _ = cached_site
    for name in ("x-original-url", "x-ep-url", "x-original-uri"):
        page = httpx.get(f"http://127.0.0.1:{port}/slotted/a", headers={
            **SEGMENTS["facebook"], name: "/page/x?utm_campaign=spring-sale"})
        assert page.status_code == 200, (name, page.status_code)
        assert EXPECTED["facebook"] in page.content, name


def test_a_visitor_cannot_name_the_site_s_host_or_scheme_through_the_edge(
        cached_site: tuple[int, bool]) -> None:
    # The docs' nginx passed a visitor's own X-Forwarded-Host, X-Forwarded-Proto and
    # Forwarded on, and edge-personalizer believes them from nginx: a redirect to the
    # visitor's host, cached for everyone, and the same host handed to the origin.
    port, _ = cached_site
    forged = {**PAGE, "x-forwarded-host": "evil.example", "x-forwarded-proto": "https",
              "forwarded": "for=6.6.6.6;host=evil.example;proto=https",
              "x-forwarded-prefix": "//evil.example", "x-forwarded-port": "8443",
              "x-forwarded-ssl": "on"}
    moved = httpx.get(f"http://127.0.0.1:{port}/redirect", headers=forged)
    echoed = httpx.get(f"http://127.0.0.1:{port}/echo", headers=forged).json()["headers"]
    assert moved.status_code == 302
    assert moved.headers["location"] == "/target?x=1"
    got = {name: value for name, value in echoed if name.startswith(("x-forwarded", "forwarded"))}
    # (Forwarded names the visitor nginx's X-Forwarded-For names, then nginx.)
    assert got == {"x-forwarded-for": "127.0.0.1, 127.0.0.1", "x-forwarded-proto": "http",
                   "x-forwarded-host": "127.0.0.1",
                   "forwarded": 'for=127.0.0.1, for=127.0.0.1;proto=http;host="127.0.0.1"'}, got


def test_a_page_shared_per_segment_is_kept_by_no_cache_past_the_edge(
        cached_site: tuple[int, bool]) -> None:
    # Visitors got the edge's "public, s-maxage": a cache between them and the edge (a
    # company's proxy), which never sees X-EP-Segment, shared one segment's page with all.
    port, keyed = cached_site
    url = f"http://127.0.0.1:{port}/slotted/downstream"
    first, again = (httpx.get(url, headers=SEGMENTS["facebook"]) for _ in range(2))
    plain = httpx.get(f"http://127.0.0.1:{port}/hop")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == \
        (("MISS", "HIT") if keyed else ("MISS", "MISS"))
    for page in (first, again):
        assert page.headers["cache-control"] == ("private, max-age=0" if keyed
                                                 else "private, max-age=60")
        assert EXPECTED["facebook"] in page.content
    assert "cache-control" not in plain.headers and plain.text == "hop\n"


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_a_traced_page_is_kept_by_no_shared_cache(cached_site: tuple[int, bool]) -> None:
    # The trace names every rule, its file and line, and the tracing admin's own values.
    port, _ = cached_site
    url = f"http://127.0.0.1:{port}/slotted/traced"
    traced = httpx.get(url, headers={**SEGMENTS["facebook"], "x-ep-debug": ADMIN_TOKEN})
    assert "x-ep-trace" in traced.headers
    assert traced.headers["cache-control"] == "private, no-store"
    after = httpx.get(url, headers=SEGMENTS["facebook"])
    assert EXPECTED["facebook"] in after.content
    assert after.headers["x-cache"] != "HIT" and "x-ep-trace" not in after.headers


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_a_page_the_origin_cuts_short_is_never_cached(cached_site: tuple[int, bool]) -> None:
    # The answer to nginx ends without its last chunk: nginx keeps nothing, and the next
    # visitor of the segment is not served the part as the whole page.
    port, _ = cached_site
    url = f"http://127.0.0.1:{port}/slotted/cut?cut=1"
    for _ in range(3):
        try:
            page = httpx.get(url, headers=SEGMENTS["facebook"])
        except httpx.RemoteProtocolError:
            continue   # nginx passed the cut on to the visitor: as it should
        assert page.headers["x-cache"] != "HIT", page.headers


@pytest.mark.parametrize("edge", [True], indirect=True, ids=["keyed"])
def test_a_shared_page_carries_no_one_requests_timing(cached_site: tuple[int, bool]) -> None:
    port, _ = cached_site
    url = f"http://127.0.0.1:{port}/slotted/timing"
    pages = [httpx.get(url, headers=SEGMENTS["facebook"]) for _ in range(2)]
    assert [page.headers["x-cache"] for page in pages] == ["MISS", "HIT"]
    assert all(EXPECTED["facebook"] in page.content for page in pages)
    assert all("server-timing" not in page.headers for page in pages)


def _decisions(proxy: Server, rule: str) -> float:
    metrics = httpx.get(f"{proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    prefix = f'ep_decisions_total{{rule="{rule}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith(prefix))


def test_a_page_view_through_the_cache_is_one_decision(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    # nginx asks /__ep/decide, then (on a miss) the page with the segment decide gave: the
    # page's decision is decide's, counted there once.
    proxy = start_proxy(server_logs, "--origin", origin.url, "--rules",
                        str(Path(__file__).parent / "data" / "rules"),
                        "--trusted-proxy", "127.0.0.1",
                        env={"EP_KEYED_CACHING": "true", "EP_ADMIN_TOKEN": ADMIN_TOKEN})
    nginx, port = start_nginx(tmp_path, proxy.port)
    try:
        facebook = SEGMENTS["facebook"]
        for expected in ("MISS", "HIT"):
            response = httpx.get(f"http://127.0.0.1:{port}/slotted/counted", headers=facebook)
            assert response.headers["x-cache"] == expected
        assert _decisions(proxy, "facebook-hero") == 2
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        proxy.stop()

