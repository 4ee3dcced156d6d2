from __future__ import annotations

import ipaddress

import pytest

from edge_personalizer.proxy.client_ip import (
    TrustedProxies,
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
])
def test_parse_ip(text: str | None, expected: str | None) -> None:
    parsed = parse_ip(text)
    assert (str(parsed) if parsed else None) == expected


def test_forwarded_chain_splits_and_strips() -> None:
    assert forwarded_chain([" a , b", "c,,"]) == ["a", "b", "c"]
    assert "not-an-ip" not in CDN
