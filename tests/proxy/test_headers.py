from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.classify.edge import edge_header_names
from edge_personalizer.errors import RequestRejected
from edge_personalizer.proxy.client_ip import ClientAddress, TrustedProxies, client_address
from edge_personalizer.proxy.headers import (
    OriginRequest,
    RequestLimits,
    RequestReader,
    response_headers_for_client,
)

from ..servers import Server, free_port, start, start_proxy

TRUSTED = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"),))


def read(headers: list[tuple[bytes, bytes]], peer: str = "198.51.100.7") -> OriginRequest:
    if not any(name.lower() == b"host" for name, _ in headers):
        headers = [(b"host", b"proxy:80"), *headers]
    scope = {"type": "http", "client": (peer, 5000), "headers": headers}
    return RequestReader(origin_host="o:1", limits=RequestLimits()).read(
        headers, client_address(scope, TRUSTED), scheme="http", server_host="proxy:80")


def fwd(headers: list[tuple[bytes, bytes]], peer: str = "198.51.100.7"):  # type: ignore[no-untyped-def]
    return read(headers, peer).forwarding


def test_connection_named_headers_are_hop_by_hop() -> None:
    headers = [(b"connection", b"close, X-Trace"), (b"x-trace", b"1"), (b"x-keep", b"2"),
               (b"transfer-encoding", b"chunked")]
    assert response_headers_for_client(headers, origin_base="http://o", public_base="http://p") \
        == [(b"x-keep", b"2")]


def test_untrusted_peer_gets_its_own_address_and_host() -> None:
    view = fwd([(b"host", b"shop.example"), (b"x-forwarded-host", b"evil"),
                (b"x-forwarded-proto", b"https")])
    assert (view.client_ip, view.host, view.scheme) == ("198.51.100.7", "shop.example", "http")


def test_trusted_peer_forwarding_headers_are_believed() -> None:
    view = fwd([(b"host", b"internal"), (b"x-forwarded-host", b"www.shop.example"),
                (b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"203.0.113.5")],
               peer="10.1.1.1")
    assert view.public_base == "https://www.shop.example"
    assert view.client_ip == "203.0.113.5"


def test_what_frameworks_believe_of_the_address_comes_from_trusted_proxies_only() -> None:
    # A visitor's X-Forwarded-Prefix: //evil.example reached an origin that builds links
    # from it; a visitor's X-EP-Segment reached an origin that reads the edge's.
    sent = [(b"X-Forwarded-Prefix", b"//evil.example"), (b"x-forwarded-port", b"8443"),
            (b"x-forwarded-ssl", b"on"), (b"x-original-host", b"evil"),
            (b"x-ep-segment", b"s-forged"), (b"x-ep-debug", b"token"), (b"x-kept", b"1")]
    direct = dict(read(sent).headers)
    assert b"x-kept" in direct and not {b"x-forwarded-prefix", b"x-forwarded-port",
                                        b"x-forwarded-ssl", b"x-original-host",
                                        b"x-ep-segment", b"x-ep-debug"} & set(direct)
    proxied = dict(read(sent, peer="10.1.1.1").headers)
    assert proxied[b"x-forwarded-prefix"] == b"//evil.example"   # the edge's to set
    assert proxied[b"x-ep-segment"] == b"s-forged" and b"x-ep-debug" not in proxied


def test_hostile_host_header_never_reaches_location() -> None:
    view = fwd([(b"host", b"evil.example/path?x")])
    assert view.host == "invalid.host"


@pytest.mark.parametrize("host", [b"[", b"]", b"[::1", b"::1]", b"a" * 300, b"shop:", b"shop:1:2",
                                  b"shop:123456", b"[fe80::1%25eth0]", b"[evil.example]", b":80",
                                  b"shop:99999", b"shop:65536", b"shop:0", b"shop:080",
                                  b"x..y", b"shop.example..", b".shop", b"a." * 130 + b"a"])
def test_only_a_host_that_can_be_one_is_believed_or_passed_on(host: bytes) -> None:
    # A trusted proxy's X-Forwarded-Host (or Forwarded host=) becomes the site's address in
    # redirects and what the origin is told: `[` or 20,000 characters were taken as hosts.
    assert fwd([(b"host", host)]).host == "invalid.host"
    believed = fwd([(b"host", b"internal"), (b"x-forwarded-host", host)], peer="10.1.1.1")
    assert believed.host == "internal" and believed.public_base is None


@pytest.mark.parametrize("host", [b"shop.example", b"shop.example:8443", b"[2001:db8::1]:443",
                                  b"[::1]", b"127.0.0.1:8080", b"my_host.internal",
                                  b"xn--caf-dma.example", b"shop.example:65535",
                                  b"shop.example:1", b"shop.example.", b"a" * 253])
def test_hosts_as_they_are_written_are_kept(host: bytes) -> None:
    assert fwd([(b"host", host)]).host == host.decode()


def test_ipv6_peer_is_quoted_in_forwarded() -> None:
    out = dict(read([(b"host", b"h")], peer="2001:db8::7").headers)
    assert out[b"forwarded"] == b'for="[2001:db8::7]";proto=http;host="h"'
    assert out[b"host"] == b"o:1"


def test_location_only_rewritten_when_it_points_at_the_origin() -> None:
    headers = [(b"location", b"http://origin:8000/a"), (b"content-location", b"http://origin:8000"),
               (b"link", b"<http://origin:8000/x>")]
    out = response_headers_for_client(headers, origin_base="http://origin:8000",
                                      public_base="https://shop.example")
    assert out == [(b"location", b"https://shop.example/a"),
                   (b"content-location", b"https://shop.example"),
                   (b"link", b"<http://origin:8000/x>")]
    lookalike = [(b"location", b"http://origin:80001/a")]
    assert response_headers_for_client(lookalike, origin_base="http://origin:8000",
                                       public_base="https://s") == lookalike


def test_origin_under_a_prefix_maps_back_to_the_root() -> None:
    out = response_headers_for_client([(b"location", b"http://o/shop/cart?x=1")],
                                      origin_base="http://o/shop", public_base="https://s")
    assert out == [(b"location", b"https://s/cart?x=1")]


def test_without_a_public_address_a_redirect_to_the_origin_becomes_a_path() -> None:
    headers = [(b"location", b"http://origin:8000/a?b"), (b"content-location", b"http://origin:8000"),
               (b"location", b"http://origin:8000?q")]
    out = response_headers_for_client(headers, origin_base="http://origin:8000", public_base=None)
    assert out == [(b"location", b"/a?b"), (b"content-location", b"/"), (b"location", b"/?q")]


def test_only_a_trusted_proxys_host_is_a_public_address() -> None:
    assert fwd([(b"host", b"shop.example")]).public_base is None
    trusted = fwd([(b"host", b"internal"), (b"x-forwarded-host", b"shop.example"),
                   (b"x-forwarded-proto", b"https")], peer="10.1.1.1")
    assert trusted.public_base == "https://shop.example"


def test_the_origin_gets_the_client_headers_without_hop_by_hop_or_forged_forwarding() -> None:
    request = read([(b"Host", b"shop.example"), (b"User-Agent", b"ua"),
                    (b"Connection", b"keep-alive, X-Trace"), (b"X-Trace", b"1"),
                    (b"X-Forwarded-For", b"6.6.6.6"), (b"Forwarded", b"for=6.6.6.6"),
                    (b"Content-Length", b"12")])
    assert request.headers == [
        (b"user-agent", b"ua"), (b"content-length", b"12"), (b"host", b"o:1"),
        (b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"shop.example"),
        (b"forwarded", b'for=198.51.100.7;proto=http;host="shop.example"'),
        (b"x-real-ip", b"198.51.100.7")]
    assert request.has_body


def test_a_trusted_proxy_chain_is_extended() -> None:
    request = read([(b"host", b"h"), (b"x-forwarded-for", b"203.0.113.5"),
                    (b"forwarded", b"for=203.0.113.5")], peer="10.1.1.1")
    out = dict(request.headers)
    assert out[b"x-forwarded-for"] == b"203.0.113.5, 10.1.1.1"
    assert out[b"forwarded"] == b'for=203.0.113.5, for=10.1.1.1;proto=http;host="h"'
    assert out[b"x-real-ip"] == b"203.0.113.5"


def test_a_trusted_proxys_forwarded_names_the_public_address_and_the_hops() -> None:
    said = b'for=203.0.113.5;proto=https;host="s.example"'
    request = read([(b"host", b"h"), (b"forwarded", said)], peer="10.1.1.1")
    assert request.forwarding.public_base == "https://s.example"
    out = dict(request.headers)
    assert out[b"x-forwarded-for"] == b"203.0.113.5, 10.1.1.1"
    assert out[b"forwarded"] == (b'for=203.0.113.5;proto=https;host="s.example", '
                                 b'for=10.1.1.1;proto=https;host="s.example"')


def test_a_forwarded_named_by_connection_is_believed_but_not_passed_on() -> None:
    request = read([(b"host", b"h"), (b"connection", b"forwarded"),
                    (b"forwarded", b"for=203.0.113.5;proto=https;by=secret")], peer="10.1.1.1")
    out = dict(request.headers)
    assert out[b"forwarded"] == b'for=203.0.113.5, for=10.1.1.1;proto=https;host="h"'
    assert out[b"x-real-ip"] == b"203.0.113.5"


@pytest.mark.parametrize(("headers", "status"), [
    ([(b"x-h", b"v")] * 101, 431),
    ([(b"x-h", b"v" * 40000)], 431),
    ([(b"content-length", b"12a")], 400),
    ([(b"content-length", b"999999999999")], 413),
])
def test_requests_beyond_the_limits_are_rejected(headers: list[tuple[bytes, bytes]],
                                                 status: int) -> None:
    with pytest.raises(RequestRejected) as info:
        read(headers)
    assert info.value.status == status


def test_only_a_body_that_is_announced_is_streamed() -> None:
    assert not read([(b"content-length", b"0")]).has_body
    assert not read([]).has_body
    assert read([(b"transfer-encoding", b"chunked")]).has_body


@pytest.mark.parametrize(("framing", "status"), [
    ([(b"transfer-encoding", b"gzip, chunked")], 501),   # the gzip would go unsaid
    ([(b"transfer-encoding", b"xchunked")], 501),
    ([(b"transfer-encoding", b"chunked")] * 2, 400),
    ([(b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")], 400),
    ([(b"transfer-encoding", b"chunked"), (b"content-length", b"5")], 400),
    ([(b"content-length", b"5")] * 2, 400),
])
def test_a_body_framed_two_ways_or_an_unknown_way_is_refused(
        framing: list[tuple[bytes, bytes]], status: int) -> None:
    # What granian lets through (or any server the app runs under), refused as nginx does.
    with pytest.raises(RequestRejected) as info:
        read([(b"host", b"x"), *framing])
    assert info.value.status == status


def test_chunked_is_read_whatever_its_case() -> None:
    assert read([(b"host", b"x"), (b"transfer-encoding", b"Chunked")]).has_body


def test_the_origin_gets_its_own_host_or_with_preserve_host_the_visitors() -> None:
    limits = RequestLimits()
    visitor = [(b"host", b"shop.example"), (b"accept", b"text/html")]
    own = RequestReader(origin_host="origin.internal:8000", limits=limits)
    kept = RequestReader(origin_host="origin.internal:8000", limits=limits, preserve_host=True)
    address = ClientAddress(peer="198.51.100.7", ip="198.51.100.7", trusted_peer=False)
    assert dict(own.read(visitor, address, scheme="http", server_host="x").headers)[b"host"] \
        == b"origin.internal:8000"
    assert dict(kept.read(visitor, address, scheme="http", server_host="x").headers)[b"host"] \
        == b"shop.example"
    # Behind a trusted proxy, the public host it names; a hostile Host stays harmless.
    cdn = ClientAddress(peer="10.0.0.1", ip="203.0.113.9", trusted_peer=True)
    behind = [(b"host", b"10.0.0.5"), (b"x-forwarded-host", b"www.shop.example")]
    assert dict(kept.read(behind, cdn, scheme="https", server_host="x").headers)[b"host"] \
        == b"www.shop.example"
    hostile = [(b"host", b"evil.example/@x")]
    assert dict(kept.read(hostile, address, scheme="http", server_host="x").headers)[b"host"] \
        == b"invalid.host"


@pytest.fixture(scope="module")
def csrf_origin(server_logs: Path) -> Iterator[Server]:
    port = free_port()
    server = start([sys.executable, "-m", "tests.proxy.csrf_origin", str(port)], port,
                   server_logs / f"csrf-origin-{port}.log", ready_path="/login")
    yield server
    server.stop()


def test_a_csrf_checking_site_accepts_a_login_only_with_preserve_host(
        csrf_origin: Server, server_logs: Path) -> None:
    results = {}
    for preserve in ("false", "true"):
        proxy = start_proxy(server_logs, "--origin", csrf_origin.url,
                            env={"EP_PRESERVE_HOST": preserve})
        try:
            with httpx.Client(base_url=proxy.url) as browser:
                assert browser.get("/login").status_code == 200
                results[preserve] = browser.post("/login", data={"user": "ann"},
                                                 headers={"origin": proxy.url})
        finally:
            proxy.stop()
    assert results["false"].status_code == 403
    assert "Origin checking failed" in results["false"].text
    assert results["true"].status_code == 200
    assert results["true"].text == f"welcome, you posted to 127.0.0.1:{proxy.port}"


@pytest.mark.parametrize("hosts", [[], [b"a", b"b"], [b""], [b"  "]])
def test_an_http11_request_needs_exactly_one_non_empty_host(hosts: list[bytes]) -> None:
    headers = [(b"host", h) for h in hosts] or [(b"x-none", b"1")]
    scope = {"type": "http", "client": ("198.51.100.7", 1), "headers": headers}
    with pytest.raises(RequestRejected) as info:
        RequestReader(origin_host="o:1", limits=RequestLimits()).read(
            headers, client_address(scope, TRUSTED), scheme="http", server_host="p:80")
    assert info.value.status == 400


def test_an_http10_request_without_a_host_is_described_by_the_servers_address() -> None:
    headers = [(b"host", b"")]   # as granian hands on an HTTP/1.0 request without one
    scope = {"type": "http", "client": ("198.51.100.7", 1), "headers": headers}
    request = RequestReader(origin_host="o:1", limits=RequestLimits()).read(
        headers, client_address(scope, TRUSTED), scheme="http", server_host="p:80",
        host_required=False)
    assert request.forwarding.host == "p:80"
    assert (b"x-forwarded-host", b"p:80") in request.headers


def test_the_x_ep_headers_are_edge_personalizer_s_own_both_ways(proxy: Server) -> None:
    # An origin's own X-EP-Segment stood beside ours (two segments, at a shared cache too),
    # and a visitor's X-EP-Debug (the admin token) reached the origin.
    page = {"accept": "text/html", "x-ep-debug": "a-token",
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36"}
    response = httpx.get(f"{proxy.url}/slotted/a?ours=1", headers=page)
    echoed = httpx.get(f"{proxy.url}/echo", headers=page).json()["headers"]
    assert response.headers.get_list("x-ep-segment") == ["default"]
    assert "origin" not in response.headers.get("x-ep-variant", "")
    assert "x-ep-trace" not in response.headers
    assert not [name for name, _ in echoed if name == "x-ep-debug"]


def test_a_host_of_an_empty_label_or_a_port_past_65535_never_reaches_the_origin(
        proxy: Server) -> None:
    # `Host: x:99999` and `x..y` were told to the origin as the site's host.
    for host in ("x:99999", "x..y"):
        echoed = httpx.get(f"{proxy.url}/echo", headers={"host": host}).json()["headers"]
        assert ["x-forwarded-host", "invalid.host"] in echoed


def _told(request: OriginRequest) -> tuple[bytes, ...]:
    out = dict(request.headers)
    return out[b"x-forwarded-host"], out[b"x-forwarded-proto"], out[b"forwarded"]


def test_a_public_url_is_what_the_origin_is_told_whoever_asks() -> None:
    # A visitor's Host reached the origin as X-Forwarded-Host (and Forwarded host=), which
    # a framework told to believe it builds password-reset links from.
    public = RequestReader(origin_host="o:1", limits=RequestLimits(),
                           public_url="https://shop.example")
    visitor = ClientAddress(peer="198.51.100.7", ip="198.51.100.7", trusted_peer=False)
    hostile = [(b"host", b"attacker.example"), (b"x-forwarded-host", b"evil.example")]
    request = public.read(hostile, visitor, scheme="http", server_host="x")
    assert _told(request) == (b"shop.example", b"https",
                              b'for=198.51.100.7;proto=https;host="shop.example"')
    assert request.forwarding.public_base == "https://shop.example"
    # A trusted proxy's word gives way to the operator's; its hops are still told.
    cdn = ClientAddress(peer="10.0.0.1", ip="203.0.113.9", trusted_peer=True,
                        forwarded_for=("203.0.113.9",))
    behind = [(b"host", b"10.0.0.5"), (b"x-forwarded-host", b"other.example"),
              (b"x-forwarded-proto", b"http"), (b"x-forwarded-for", b"203.0.113.9")]
    assert _told(public.read(behind, cdn, scheme="http", server_host="x")) == (
        b"shop.example", b"https",
        b'for=203.0.113.9, for=10.0.0.1;proto=https;host="shop.example"')
    kept = RequestReader(origin_host="o:1", limits=RequestLimits(), preserve_host=True,
                         public_url="http://shop.example:8080/")
    request = kept.read(hostile, visitor, scheme="https", server_host="x")
    assert dict(request.headers)[b"host"] == b"shop.example:8080"
    assert _told(request)[:2] == (b"shop.example:8080", b"http")


def test_a_server_with_a_public_url_tells_the_origin_that_address(
        origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--trusted-proxy", "127.0.0.2",
                         "--public-url", "https://shop.example")
    cdn = httpx.HTTPTransport(local_address="127.0.0.2")
    try:
        direct = httpx.get(f"{server.url}/echo", headers={"host": "attacker.example"})
        with httpx.Client(transport=cdn) as client:
            proxied = client.get(f"{server.url}/echo", headers={
                "x-forwarded-host": "other.example", "x-forwarded-proto": "http"})
    finally:
        server.stop()
    for response, peer in ((direct, "127.0.0.1"), (proxied, "127.0.0.2")):
        told = dict((name, value) for name, value in response.json()["headers"]
                    if name in ("x-forwarded-host", "x-forwarded-proto", "forwarded"))
        assert told == {"x-forwarded-host": "shop.example", "x-forwarded-proto": "https",
                        "forwarded": f'for={peer};proto=https;host="shop.example"'}


# What visitors' client-address and geo headers look like, as a CDN would write them.
EDGE_SAID = [(b"CF-Connecting-IP", b"6.6.6.6"), (b"True-Client-IP", b"6.6.6.6"),
             (b"Fastly-Client-IP", b"6.6.6.6"), (b"X-Client-IP", b"6.6.6.6"),
             (b"X-Cluster-Client-IP", b"6.6.6.6"), (b"CF-IPCountry", b"KP"),
             (b"X-Akamai-Edgescape", b"country_code=KP")]


def test_what_an_edge_says_of_the_visitor_comes_from_trusted_proxies_only() -> None:
    # Applications behind a CDN read these for rate limits and geo: a visitor's own
    # CF-Connecting-IP reached the origin as sent.
    sent = [*EDGE_SAID, *((name.encode(), b"x") for name in sorted(edge_header_names())),
            (b"x-kept", b"1")]
    names = {name.lower() for name, _ in sent} - {b"x-kept"}
    direct = {name for name, _ in read(sent).headers}
    assert b"x-kept" in direct and not names & direct
    assert names <= {name for name, _ in read(sent, peer="10.1.1.1").headers}


def test_a_visitor_s_cdn_headers_never_reach_the_origin_a_cdn_s_do(proxy: Server) -> None:
    names = {name.decode().lower() for name, _ in EDGE_SAID}
    sent = {name.decode(): value.decode() for name, value in EDGE_SAID}
    direct = httpx.get(f"{proxy.url}/echo", headers=sent).json()["headers"]
    assert not [name for name, _ in direct if name in names]
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as cdn:
        proxied = cdn.get(f"{proxy.url}/echo", headers=sent).json()["headers"]
    assert {name for name, _ in proxied} >= names


def test_the_operator_s_own_edge_headers_reach_the_origin_from_its_edge_only(
        origin: Server, tmp_path: Path) -> None:
    # A CDN of the operator's naming (edge_headers) says the visitor's country in
    # X-Geo-Country: a visitor who sent one of their own had it reach the origin.
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--trusted-proxy", "127.0.0.2",
                        env={"EP_EDGE_HEADERS": "X-Geo-Country=geo.country"})
    try:
        said = {"x-geo-country": "FR", "x-other": "kept"}
        direct = dict(httpx.get(f"{proxy.url}/echo", headers=said).json()["headers"])
        assert "x-geo-country" not in direct and direct["x-other"] == "kept"
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as cdn:
            edge = dict(cdn.get(f"{proxy.url}/echo", headers=said).json()["headers"])
        assert edge["x-geo-country"] == "FR"
    finally:
        proxy.stop()
