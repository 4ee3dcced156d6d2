from __future__ import annotations

import ipaddress

import pytest

from edge_personalizer.proxy.client_ip import (
    TrustedProxies,
    client_address,
    forwarded_chain,
    parse_ip,
    resolve_client_ip,
)

CDN = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")))


@pytest.mark.parametrize(("peer", "xff", "expected"), [
    ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),          # untrusted peer: headers ignored
    ("10.0.0.5", ["203.0.113.1"], "203.0.113.1"),                # one trusted hop
    ("10.0.0.5", ["6.6.6.6, 203.0.113.1, 10.0.0.9"], "203.0.113.1"),  # spoofed left part skipped
    ("10.0.0.5", ["6.6.6.6", "203.0.113.1"], "203.0.113.1"),     # several header lines
    ("10.0.0.5", [], "10.0.0.5"),                                # trusted but no header
    ("10.0.0.5", ["garbage, 203.0.113.1"], "203.0.113.1"),
    ("10.0.0.5", ["203.0.113.1, garbage"], "10.0.0.5"),          # unparsable hop ends the walk
    ("2001:db8::1", ["[2001:db8:ffff::1]:443, 2a00::5"], "2a00::5"),
    ("::ffff:10.0.0.5", ["203.0.113.1:5678"], "203.0.113.1"),    # IPv4-mapped peer
    (None, ["203.0.113.1"], None),
])
def test_resolve_client_ip(peer: str | None, xff: list[str], expected: str | None) -> None:
    assert resolve_client_ip(peer, xff, CDN) == expected


def test_no_trusted_proxies_trusts_nobody() -> None:
    assert resolve_client_ip("10.0.0.5", ["203.0.113.1"], TrustedProxies()) == "10.0.0.5"


@pytest.mark.parametrize(("text", "expected"), [
    ("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ('"[::1]:80"', "::1"),
    ("[2001:db8::1]", "2001:db8::1"), ("2001:db8::1", "2001:db8::1"), ("unknown", None),
    ("", None), (None, None),
    # a zone names a link of the sender's own, and may be any text: no visitor's address
    ("fe80::1%eth0", None), ('fe80::1%a";proto=https;host="evil.com', None),
    ('"[fe80::1%a, 6.6.6.6]"', None),
])
def test_parse_ip(text: str | None, expected: str | None) -> None:
    parsed = parse_ip(text)
    assert (str(parsed) if parsed else None) == expected


def test_forwarded_chain_splits_and_strips() -> None:
    assert forwarded_chain([" a , b", "c,,"]) == ["a", "b", "c"]
    assert "not-an-ip" not in CDN


def _scope(peer: str, headers: dict[str, str]) -> dict[str, object]:
    return {"type": "http", "client": (peer, 1234),
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


def test_an_edges_client_header_is_read_only_when_that_edge_is_named() -> None:
    headers = {"cf-connecting-ip": "203.0.113.9", "true-client-ip": "198.51.100.3",
               "x-forwarded-for": "192.0.2.44"}
    networks = (ipaddress.ip_network("10.0.0.0/8"),)
    plain = TrustedProxies(networks)   # forwarded: X-Forwarded-For alone
    assert client_address(_scope("10.0.0.5", headers), plain).ip == "192.0.2.44"
    cloudflare = TrustedProxies(networks, client_headers=("CF-Connecting-IP",))
    assert client_address(_scope("10.0.0.5", headers), cloudflare).ip == "203.0.113.9"
    akamai = TrustedProxies(networks, client_headers=("true-client-ip",))
    assert client_address(_scope("10.0.0.5", headers), akamai).ip == "198.51.100.3"
    # From an untrusted peer, or with a value that is no address, nothing is believed.
    assert client_address(_scope("198.51.100.7", headers), cloudflare).ip == "198.51.100.7"
    garbage = {**headers, "cf-connecting-ip": "<script>"}
    assert client_address(_scope("10.0.0.5", garbage), cloudflare).ip == "192.0.2.44"


@pytest.mark.parametrize(("headers", "expected"), [
    ({"forwarded": "for=203.0.113.1;proto=https"}, "203.0.113.1"),
    ({"forwarded": 'for="[2a00::5]:4711", for=10.0.0.9'}, "2a00::5"),   # via a trusted hop
    ({"forwarded": "for=6.6.6.6, for=203.0.113.1"}, "203.0.113.1"),      # right-most untrusted
    ({"forwarded": "for=203.0.113.1, for=_hidden"}, "10.0.0.5"),         # obfuscated: no further
    ({"forwarded": "for=203.0.113.1, by=10.0.0.5"}, "10.0.0.5"),         # a hop naming no one
    ({"forwarded": 'for="203.0.113.1, 10.0.0.9"'}, "10.0.0.5"),          # one hop, no address
    ({"forwarded": "for=203.0.113.1;for=203.0.113.2"}, "10.0.0.5"),      # does not parse
    ({"forwarded": "for=6.6.6.6", "x-forwarded-for": "203.0.113.1"}, "203.0.113.1"),
])
def test_forwarded_names_the_visitor_when_x_forwarded_for_does_not(
        headers: dict[str, str], expected: str) -> None:
    assert client_address(_scope("10.0.0.5", headers), CDN).ip == expected
    assert client_address(_scope("198.51.100.7", headers), CDN).ip == "198.51.100.7"


def test_the_element_naming_the_visitor_says_what_the_visitor_asked_for() -> None:
    # The edge's element (it heard the visitor) is public; the balancer's, within, is not.
    headers = {"forwarded": "for=203.0.113.1;proto=https;host=shop.example, "
                            "for=10.0.0.9;proto=http;host=lb.internal"}
    element = client_address(_scope("10.0.0.5", headers), CDN).public_element
    assert element is not None and (element.proto, element.host) == ("https", "shop.example")
