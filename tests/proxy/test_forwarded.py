"""RFC 7239 Forwarded: read (a table of headers), and believed from a trusted proxy through
the real server: the origin's redirects, what the origin is told, the visitor's place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.proxy.forwarded import ForwardedElement, parse_forwarded

from ..conftest import ROOT
from ..servers import Server, start_proxy


@pytest.mark.parametrize(("values", "expected"), [
    (["for=81.2.69.142;proto=https;host=shop.example"],
     [ForwardedElement("81.2.69.142", "https", "shop.example")]),
    (['for="[2001:db8::1]:4711";Proto=HTTPS;by=_edge, For=unknown'],
     [ForwardedElement("[2001:db8::1]:4711", "HTTPS"), ForwardedElement("unknown")]),
    (["for=_hidden", "for=198.51.100.7"],   # two header lines: one list
     [ForwardedElement("_hidden"), ForwardedElement("198.51.100.7")]),
    (['for="1.2.3.4, 6.6.6.6";host="shop.example:8443"'],   # a comma quoted splits nothing
     [ForwardedElement("1.2.3.4, 6.6.6.6", None, "shop.example:8443")]),
    ([r'host="a\"b"; proto = http'], [ForwardedElement(None, "http", 'a"b')]),
    (["host=shop.example:8443, ,;"], [ForwardedElement(None, None, "shop.example:8443")]),
    ([""], []),
])
def test_forwarded_is_read_element_by_element(values: list[str],
                                               expected: list[ForwardedElement]) -> None:
    assert parse_forwarded(values) == tuple(expected)


@pytest.mark.parametrize("value", [
    "for=1.2.3.4;for=5.6.7.8",        # a parameter twice in one element
    'for="1.2.3.4',                   # a quote never closed
    "for=1.2.3.4 6.6.6.6",            # two values
    "for=", "=1.2.3.4", "secret", "for=1.2.3.4;proto=https\r\nx: y", 'for=1.2.3.4"x"',
])
def test_a_forwarded_that_does_not_parse_says_nothing(value: str) -> None:
    assert parse_forwarded(["for=203.0.113.9", value]) is None


# Through the server: 127.0.0.2 is a trusted proxy (the CDN), 127.0.0.1 a visitor.

RULES = """
slots:
  hero: {}
rules:
  - name: from-britain
    when: {geo.country: GB}
    then:
      headers: {X-Country: GB}
"""
PAGE = {"accept": "text/html",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"}
CDN = httpx.HTTPTransport(local_address="127.0.0.2")


@pytest.fixture(scope="module")
def forwarded_proxy(origin: Server, server_logs: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    rules = tmp_path_factory.mktemp("forwarded-rules")
    (rules / "site.yaml").write_text(RULES)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         "--trusted-proxy", "127.0.0.2",
                         "--geo-db", str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    yield server
    server.stop()


def _get(server: Server, path: str, headers: dict[str, str], *,
         trusted: bool = True) -> httpx.Response:
    with httpx.Client(transport=CDN if trusted else None) as client:
        return client.get(server.url + path, headers={**PAGE, **headers})


def _told(server: Server, headers: dict[str, str], *, trusted: bool = True) -> dict[str, str]:
    """The forwarding headers the origin got (one of each name)."""
    echoed = _get(server, "/echo", headers, trusted=trusted).json()["headers"]
    return {name: value for name, value in echoed
            if name in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                        "forwarded", "x-real-ip")}


def test_a_trusted_proxys_forwarded_is_believed_like_its_x_forwarded_headers(
        forwarded_proxy: Server) -> None:
    said = {"forwarded": "for=81.2.69.142;proto=https;host=shop.example"}
    moved = _get(forwarded_proxy, "/redirect", said)
    assert moved.headers["location"] == "https://shop.example/target?x=1"
    assert _told(forwarded_proxy, said) == {
        "x-forwarded-for": "81.2.69.142, 127.0.0.2", "x-forwarded-proto": "https",
        "x-forwarded-host": "shop.example", "x-real-ip": "81.2.69.142",
        "forwarded": 'for=81.2.69.142;proto=https;host=shop.example, '
                     'for=127.0.0.2;proto=https;host="shop.example"'}
    assert _get(forwarded_proxy, "/page/a", said).headers.get("x-country") == "GB"


@pytest.mark.parametrize(("forwarded", "visitor"), [
    ('for="[2a02:d3c0::1]:4711";proto=https', "2a02:d3c0::1"),   # IPv6 and its port
    ("for=81.2.69.142, for=127.0.0.2", "81.2.69.142"),   # through a trusted hop
    ("for=81.2.69.142, for=198.51.100.7", "198.51.100.7"),   # the right-most untrusted
    ("for=81.2.69.142, for=_hidden", "127.0.0.2"),   # an obfuscated hop: no further
    ("for=81.2.69.142, for=unknown", "127.0.0.2"),
    ("for=81.2.69.142;for=81.2.69.142", "127.0.0.2"),   # does not parse: none at all
])
def test_the_visitor_is_the_right_most_untrusted_hop_of_forwarded(
        forwarded_proxy: Server, forwarded: str, visitor: str) -> None:
    told = _told(forwarded_proxy, {"forwarded": forwarded})
    assert told["x-real-ip"] == visitor
    british = visitor in ("81.2.69.142", "2a02:d3c0::1")
    page = _get(forwarded_proxy, "/page/a", {"forwarded": forwarded})
    assert page.headers.get("x-country") == ("GB" if british else None)


def test_x_forwarded_for_names_the_hops_forwarded_tells_the_origin(
        forwarded_proxy: Server) -> None:
    # With X-Forwarded-For alone the origin was told of the peer alone in Forwarded.
    told = _told(forwarded_proxy, {"x-forwarded-for": "81.2.69.142, 10.0.0.1"})
    assert told["x-real-ip"] == "10.0.0.1"
    assert told["x-forwarded-for"] == "81.2.69.142, 10.0.0.1, 127.0.0.2"
    assert told["forwarded"] == ("for=81.2.69.142, for=10.0.0.1, "
                                 f'for=127.0.0.2;proto=http;host="{told["x-forwarded-host"]}"')
    # A Forwarded naming other hops than X-Forwarded-For (a visitor's own, handed on by
    # an edge that writes X-Forwarded-For) is neither believed nor passed on.
    told = _told(forwarded_proxy, {"x-forwarded-for": "81.2.69.142",
                                   "forwarded": "for=6.6.6.6;proto=https;host=evil.example"})
    assert (told["x-forwarded-proto"], told["x-real-ip"]) == ("http", "81.2.69.142")
    assert told["forwarded"].startswith("for=81.2.69.142, for=127.0.0.2;proto=http;host=")
    # ... nor one naming the very hops it writes: a visitor knows their own address
    told = _told(forwarded_proxy, {"x-forwarded-for": "81.2.69.142",
                                   "forwarded": "for=81.2.69.142;proto=https;host=evil.example"})
    assert "evil" not in told["x-forwarded-host"] and told["x-forwarded-proto"] == "http"
    assert "evil" not in told["forwarded"]
    # A hop whose zone holds a Forwarded element's syntax is told as unknown: its text
    # would have given the origin a first element of the visitor's making.
    told = _told(forwarded_proxy, {
        "x-forwarded-for": 'fe80::1%a";proto=https;host="evil.com";x="y, 81.2.69.142'})
    assert told["forwarded"].startswith("for=unknown, for=81.2.69.142, for=127.0.0.2;")
    # An empty X-Forwarded-For line is none: Forwarded is believed, and nobody is told ", "
    told = _told(forwarded_proxy, {"x-forwarded-for": "",
                                   "forwarded": "for=81.2.69.142;host=shop.example"})
    assert (told["x-real-ip"], told["x-forwarded-host"]) == ("81.2.69.142", "shop.example")
    assert told["x-forwarded-for"] == "81.2.69.142, 127.0.0.2"
    # One that does not parse reaches the origin no more than it is believed.
    told = _told(forwarded_proxy, {"forwarded": 'for="81.2.69.142;proto=https'})
    assert (told["x-forwarded-for"], told["x-real-ip"]) == ("127.0.0.2", "127.0.0.2")
    assert told["forwarded"].startswith("for=127.0.0.2;proto=http;host=")


def test_x_forwarded_proto_and_host_win_over_forwarded(forwarded_proxy: Server) -> None:
    said = {"x-forwarded-proto": "https", "x-forwarded-host": "www.shop.example",
            "forwarded": "for=81.2.69.142;proto=http;host=evil.example"}
    moved = _get(forwarded_proxy, "/redirect", said)
    assert moved.headers["location"] == "https://www.shop.example/target?x=1"
    told = _told(forwarded_proxy, said)
    # Its for= is believed; its host and scheme are not, and are not passed on either.
    assert told["x-real-ip"] == "81.2.69.142"
    assert told["forwarded"] == ('for=81.2.69.142, '
                                 'for=127.0.0.2;proto=https;host="www.shop.example"')


def test_a_visitors_own_forwarded_is_replaced(forwarded_proxy: Server) -> None:
    said = {"forwarded": "for=81.2.69.142;proto=https;host=shop.example"}
    assert _get(forwarded_proxy, "/redirect", said, trusted=False).headers["location"] \
        == "/target?x=1"
    told = _told(forwarded_proxy, said, trusted=False)
    assert told == {"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http",
                    "x-forwarded-host": f"127.0.0.1:{forwarded_proxy.port}",
                    "x-real-ip": "127.0.0.1",
                    "forwarded": 'for=127.0.0.1;proto=http;'
                                 f'host="127.0.0.1:{forwarded_proxy.port}"'}
    assert _get(forwarded_proxy, "/page/a", said, trusted=False).headers.get(
        "x-country") is None
