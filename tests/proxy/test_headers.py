from __future__ import annotations

import ipaddress

from edge_personalizer.classify.client_ip import TrustedProxies
from edge_personalizer.proxy.headers import (
    request_headers_for_origin,
    resolve_forwarding,
    response_headers_for_client,
    strip_hop_by_hop,
)

TRUSTED = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"),))


def fwd(headers: list[tuple[bytes, bytes]], peer: str = "198.51.100.7"):  # type: ignore[no-untyped-def]
    return resolve_forwarding(headers, peer=peer, scheme="http", server_host="proxy:80",
                              trusted=TRUSTED)


def test_connection_named_headers_are_hop_by_hop() -> None:
    headers = [(b"connection", b"close, X-Trace"), (b"x-trace", b"1"), (b"x-keep", b"2"),
               (b"Transfer-Encoding", b"chunked")]
    assert strip_hop_by_hop(headers) == [(b"x-keep", b"2")]


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


def test_hostile_host_header_never_reaches_location() -> None:
    view = fwd([(b"host", b"evil.example/path?x")])
    assert view.host == "invalid.host"


def test_ipv6_peer_is_quoted_in_forwarded() -> None:
    view = fwd([(b"host", b"h")], peer="2001:db8::7")
    out = dict(request_headers_for_origin([(b"host", b"h")], view, origin_host="o:1"))
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
