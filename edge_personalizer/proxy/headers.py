"""Header hygiene between client and origin: hop-by-hop removal, forwarding, Location."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from lru import LRU

from ..errors import RequestRejected
from ..http.hosts import is_host
from .client_ip import ClientAddress, address_of, forwarded_chain

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1 plus the de-facto ones; never forwarded in either direction.
HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# Forwarding headers we write ourselves; a client's own copies are dropped unless its
# address is a trusted proxy.
_FORWARDING: Final = frozenset({
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip",
})


@dataclass(frozen=True)
class Forwarding:
    """Who asked, and under which public address, for one request."""

    peer: str | None        # the TCP peer: the client itself or the nearest proxy
    client_ip: str | None   # the visitor, through trusted proxies
    scheme: str             # public scheme the visitor used
    host: str               # public Host the visitor used
    trusted_peer: bool
    prior_for: tuple[str, ...] = ()   # hops before a trusted peer (X-Forwarded-For, Forwarded)
    host_forwarded: bool = False      # `host` came from a trusted proxy, not the client
    prior_forwarded: tuple[str, ...] = ()   # the Forwarded elements of those hops

    @property
    def public_base(self) -> str | None:
        """The site's address as this visitor sees it, when a trusted proxy said so (with
        a host: forwarding() believes no other); a client's own Host is anybody's to forge
        and never makes a public URL."""
        return f"{self.scheme}://{self.host}" if self.host_forwarded else None


def header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k == name]


class _RequestScan:
    """A client request's headers read in one pass: the ones the origin may see (names
    lower-cased; no hop-by-hop, Host or forwarding headers) and the few read here."""

    __slots__ = ("kept", "host", "hosts", "proto", "forwarded_host", "forwarded_named",
                 "from_proxies", "lengths", "codings", "size")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        kept: RawHeaders = []
        self.host: bytes | None = None
        self.hosts = 0
        self.proto: bytes | None = None
        self.forwarded_host: bytes | None = None
        self.from_proxies: RawHeaders = []   # (_FROM_PROXIES: kept from a trusted proxy)
        self.lengths: list[bytes] = []
        self.codings: list[bytes] = []   # Transfer-Encoding values
        named: set[bytes] = set()
        size = 0
        for key, value in headers:
            size += len(key) + len(value) + 4
            key = key.lower()   # (servers do; what reaches the origin must not depend on it)
            if key in _READ_HERE:
                if key == b"host":
                    self.hosts += 1
                    if self.host is None:
                        self.host = value
                    continue
                if key in HOP_BY_HOP:
                    if key == b"connection":   # "keep-alive" mostly; what else it names goes
                        named.update(token.strip().lower() for token in value.split(b","))
                    elif key == b"transfer-encoding":
                        self.codings.append(value)
                    continue
                if key == b"x-forwarded-proto":
                    self.proto = value
                elif key == b"x-forwarded-host":
                    self.forwarded_host = value
                elif key == b"content-length":
                    self.lengths.append(value)
                    kept.append((key, value))
                elif key in _FROM_PROXIES:
                    self.from_proxies.append((key, value))
                continue
            kept.append((key, value))
        # A Forwarded the peer's Connection names was for us alone: the origin gets
        # elements of our own making for its hops.
        self.forwarded_named = b"forwarded" in named
        if named:
            named -= HOP_BY_HOP
            named.discard(b"")
            kept = [(k, v) for k, v in kept if k not in named]
        self.kept = kept
        self.size = size

    def forwarding(self, address: ClientAddress, *, scheme: str, server_host: str,
                   public: tuple[str, str] | None = None) -> Forwarding:
        """What the request says of itself; `public` (public_url's scheme and host) is
        the site's address whoever asks: the operator's word over a proxy's or a Host."""
        # An HTTP/1.0 request may come without a Host (granian hands it on empty).
        host = self.host.decode("latin-1").strip() if self.host else ""
        host = host or server_host
        host_forwarded = False
        prior_forwarded: tuple[str, ...] = ()
        said = address.public_element
        if address.trusted_peer:
            # X-Forwarded-Proto and -Host first, Forwarded's where they name none: edges
            # that write the X- ones may hand on a visitor's own Forwarded (docs/cdn.md).
            proto = _last_element(self.proto)
            if proto not in ("http", "https") and said is not None and said.proto:
                proto = said.proto.lower()
            if proto in ("http", "https"):
                scheme = proto
            forwarded_host = _last_element(self.forwarded_host)
            if not is_host(forwarded_host) and said is not None and said.host:
                forwarded_host = said.host
            if is_host(forwarded_host):   # (else not believed)
                host = forwarded_host
                host_forwarded = True
        if public is not None:
            scheme, host = public
            host_forwarded = True
        if address.trusted_peer:
            # The origin gets the peer's Forwarded as it came when all of it is believed,
            # else elements naming the hops X-Forwarded-For does: never two stories.
            told = said is not None and not self.forwarded_named \
                and (said.proto or scheme).lower() == scheme and (said.host or host) == host
            prior_forwarded = (address.forwarded if told
                               else _forwarded_elements(address.forwarded_for))
        return Forwarding(peer=address.peer, client_ip=address.ip, scheme=scheme,
                          host=_clean_host(host), trusted_peer=address.trusted_peer,
                          prior_for=address.forwarded_for, host_forwarded=host_forwarded,
                          prior_forwarded=prior_forwarded)


def _forwarded_elements(forwarded_for: Sequence[str]) -> tuple[str, ...]:
    """Forwarded elements naming X-Forwarded-For's hops, for an origin told of them by
    X-Forwarded-For alone (an address, else `unknown`: nothing of a hop's text)."""
    return tuple(f"for={_forwarded_node(address_of(hop))}"
                 for hop in forwarded_chain(forwarded_for))


def _forwarding_headers(fwd: Forwarding, origin_host: str | None) -> RawHeaders:
    """Host (the origin's own, or with `origin_host` None the visitor's) and the forwarding
    headers the origin gets, describing the client."""
    peer = fwd.peer or "unknown"
    chain = ", ".join([*fwd.prior_for, peer]) if fwd.trusted_peer else peer
    element = f"for={_forwarded_node(fwd.peer)};proto={fwd.scheme};host=\"{fwd.host}\""
    out = [
        (b"host", (origin_host or fwd.host).encode("latin-1")),
        (b"x-forwarded-for", chain.encode("latin-1")),
        (b"x-forwarded-proto", fwd.scheme.encode("latin-1")),
        (b"x-forwarded-host", fwd.host.encode("latin-1")),
        (b"forwarded", ", ".join([*fwd.prior_forwarded, element]).encode("latin-1")),
    ]
    if fwd.client_ip:
        out.append((b"x-real-ip", fwd.client_ip.encode("latin-1")))
    return out


def _framing(scan: _RequestScan) -> bool:
    """Whether the body is chunked, once its framing headers are checked as nginx checks
    them: one Transfer-Encoding, exactly `chunked`, and then no Content-Length; one
    Content-Length. granian refuses most of the rest itself; these are what it lets
    through (and what any other server running the app might)."""
    if len(scan.lengths) > 1:
        raise RequestRejected("more than one Content-Length header", status=400)
    if not scan.codings:
        return False
    if len(scan.codings) > 1:
        raise RequestRejected("more than one Transfer-Encoding header", status=400)
    if scan.codings[0].strip().lower() != b"chunked":
        # `gzip, chunked` would reach the origin as a plain chunked body, its gzip unsaid.
        raise RequestRejected("unsupported Transfer-Encoding (only chunked is)", status=501)
    if scan.lengths:
        raise RequestRejected("both Transfer-Encoding and Content-Length", status=400)
    return True


# X-EP-Debug holds the admin token: the origin never gets it.
DEBUG_HEADER: Final = b"x-ep-debug"
# What frameworks believe of the public address besides the forwarding headers we write
# (Rails, Spring, Django's USE_X_FORWARDED_PORT...), the X-EP- headers edges send
# (X-EP-Segment), and what edges say of the visitor, which sites behind one read for rate
# limits and geo (every edge's that classify/edge.py reads, and other proxies' client
# address headers): passed on from a trusted proxy only, never from a visitor.
_FROM_PROXIES: Final = frozenset({
    b"x-forwarded-port", b"x-forwarded-prefix", b"x-forwarded-ssl", b"x-forwarded-server",
    b"x-url-scheme", b"front-end-https", b"x-original-host", b"x-host", b"x-ep-segment",
    b"x-ep-variant", b"x-ep-trace", b"x-ep-url",
    b"cf-connecting-ip", b"cf-connecting-ipv6", b"cf-pseudo-ipv4", b"true-client-ip",
    b"fastly-client-ip", b"x-client-ip", b"x-cluster-client-ip", b"cloudfront-viewer-address",
    b"x-vercel-forwarded-for", b"cf-ipcountry", b"cf-ipcity", b"cf-ipcontinent",
    b"cf-region-code", b"cf-postal-code", b"cf-metro-code", b"cf-timezone", b"cf-iplatitude",
    b"cf-iplongitude", b"cloudfront-viewer-country", b"cloudfront-viewer-country-region",
    b"cloudfront-viewer-city", b"cloudfront-viewer-postal-code",
    b"cloudfront-viewer-time-zone", b"cloudfront-viewer-metro-code",
    b"cloudfront-viewer-latitude", b"cloudfront-viewer-longitude",
    b"cloudfront-is-smarttv-viewer", b"cloudfront-is-tablet-viewer",
    b"cloudfront-is-mobile-viewer", b"cloudfront-is-desktop-viewer", b"x-vercel-ip-country",
    b"x-vercel-ip-country-region", b"x-vercel-ip-city", b"x-vercel-ip-postal-code",
    b"x-vercel-ip-timezone", b"x-vercel-ip-latitude", b"x-vercel-ip-longitude",
    b"x-akamai-edgescape"})
# Request headers the scan looks at (everything else is kept as it is).
_READ_HERE: Final = (HOP_BY_HOP | _FORWARDING | _FROM_PROXIES
                     | {b"host", b"content-length", DEBUG_HEADER})


def _last_element(value: bytes | None) -> str:
    return value.decode("latin-1").split(",")[-1].strip() if value is not None else ""


@dataclass(frozen=True)
class RequestLimits:
    """What a client request may not exceed."""

    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_body_bytes: int = 100 * 1024 * 1024


class OriginRequest:
    """A client request as the origin should get it (immutable; a plain class: one is
    made for every request, see ClientAddress)."""

    def __init__(self, forwarding: Forwarding, headers: RawHeaders, has_body: bool,
                 length: int | None = None) -> None:
        self.forwarding: Final = forwarding
        self.headers: Final = headers
        self.has_body: Final = has_body
        self.length: Final = length   # the body's Content-Length (None: chunked, or none)


class RequestReader:
    """Reads client requests for one origin: checks them against the limits and works
    out what the origin should get. A client that is no trusted proxy gets forwarding
    headers that depend on its address, scheme and Host alone; those repeat, so they
    are remembered (bounded).

    The origin gets its own host in `Host`, or with `preserve_host` the visitor's (the
    public host: a trusted proxy's X-Forwarded-Host, else the request's Host), as an
    application that checks Origin against Host (Django's CSRF check) needs. Where the
    request goes never changes: always `origin_host`'s connection.

    With `public_url` (the site's address, https://shop.example) the origin is told its
    scheme and host, whatever Host a client or X-Forwarded-Host a trusted proxy sends.
    The operator's `edge_headers` (what its edge says of the visitor) pass on from a
    trusted proxy only, as every edge's own do (_FROM_PROXIES).
    """

    def __init__(self, *, origin_host: str, limits: RequestLimits, max_known: int = 4096,
                 preserve_host: bool = False, public_url: str | None = None,
                 edge_headers: Iterable[str] = ()) -> None:
        self.origin_host = origin_host
        self.edge_headers = frozenset(name.lower().encode("latin-1") for name in edge_headers)
        self.host_sent: str | None = None if preserve_host else origin_host
        self.limits = limits
        parts = urlsplit(public_url) if public_url else None
        self.public = (parts.scheme, parts.netloc) if parts else None
        self._direct: LRU[tuple[str | None, str, bytes | str],
                          tuple[Forwarding, tuple[tuple[bytes, bytes], ...]]] = LRU(max_known)

    def read(self, headers: Sequence[tuple[bytes, bytes]], address: ClientAddress, *,
             scheme: str, server_host: str, host_required: bool = True) -> OriginRequest:
        """The client's headers read once: checked against the limits (RequestRejected
        when broken), the public view of the request, and the headers the origin gets."""
        limits = self.limits
        if len(headers) > limits.max_header_count:
            raise RequestRejected(f"too many request headers ({len(headers)}, limit "
                                  f"{limits.max_header_count})", status=431)
        scan = _RequestScan(headers)
        if scan.size > limits.max_header_bytes:
            raise RequestRejected(f"request headers too large ({scan.size} bytes, limit "
                                  f"{limits.max_header_bytes})", status=431)
        if scan.hosts > 1 or (host_required and not (scan.host or b"").strip()):
            # RFC 9112 3.2: one Host; HTTP/1.1 must send it, not empty (as nginx answers)
            raise RequestRejected("a request needs exactly one, non-empty Host header",
                                  status=400)
        has_body = _framing(scan)
        length = None
        for value in scan.lengths:   # (one at most: _framing)
            value = value.strip()
            if not value.isdigit():
                raise RequestRejected("invalid Content-Length", status=400)
            length = int(value)
            if length > limits.max_body_bytes:
                raise RequestRejected(f"request body too large ({length} bytes, limit "
                                      f"{limits.max_body_bytes})", status=413)
            has_body = has_body or length > 0
        if address.trusted_peer:
            fwd = scan.forwarding(address, scheme=scheme, server_host=server_host,
                                  public=self.public)
            return OriginRequest(fwd, scan.kept + scan.from_proxies
                                 + _forwarding_headers(fwd, self.host_sent), has_body, length)
        key = (address.peer, scheme, scan.host if scan.host is not None else server_host)
        known = self._direct.get(key)
        if known is None:
            fwd = scan.forwarding(address, scheme=scheme, server_host=server_host,
                                  public=self.public)
            known = self._direct[key] = (
                fwd, tuple(_forwarding_headers(fwd, self.host_sent)))
        fwd, added = known
        headers = scan.kept
        if self.edge_headers:
            headers = [(k, v) for k, v in headers if k not in self.edge_headers]
        headers += added
        return OriginRequest(fwd, headers, has_body, length)


def _clean_host(host: str) -> str:
    # A Host header carrying a path, credentials or spaces would let a client inject
    # text into rewritten Location headers; keep only what a host can be.
    return host if is_host(host) else "invalid.host"


def _forwarded_node(ip: str | None) -> str:
    if ip is None:
        return "unknown"
    return f'"[{ip}]"' if ":" in ip else ip


_LOCATION_HEADERS: Final = frozenset({b"location", b"content-location"})
# The response headers edge-personalizer writes: an origin's own would stand beside them
# (two segments, a variant the page did not get) and be believed downstream.
OUR_RESPONSE_HEADERS: Final = frozenset({b"x-ep-segment", b"x-ep-variant", b"x-ep-trace",
                                         b"x-ep-redirect", b"x-ep-redirect-status",
                                         b"x-ep-cookies"})
_RESPONSE_SPECIAL: Final = HOP_BY_HOP | _LOCATION_HEADERS | OUR_RESPONSE_HEADERS


def response_headers_for_client(
    headers: Iterable[tuple[bytes, bytes]], *, origin_base: str, public_base: str | None
) -> RawHeaders:
    """Origin headers (names lower-case, as the origin clients read them) as the client
    should see them: no hop-by-hop ones (nor those a Connection header names), none of
    the X-EP- headers edge-personalizer writes, Location made public. One pass.

    A Location that points at the origin is made to point at `public_base`; without one
    it becomes a path, which the browser resolves against the address it asked for."""
    out: RawHeaders = []
    named: set[bytes] = set()
    for key, value in headers:
        if key in _RESPONSE_SPECIAL:
            if key in _LOCATION_HEADERS:
                value = _public_location(value, origin_base, public_base)
            else:
                if key == b"connection":   # "keep-alive" mostly; what else it names goes too
                    named.update(token.strip().lower() for token in value.split(b","))
                continue
        out.append((key, value))
    named -= HOP_BY_HOP
    named.discard(b"")
    return [(k, v) for k, v in out if k not in named] if named else out


def _public_location(value: bytes, origin_base: str, public_base: str | None) -> bytes:
    origin_prefix = origin_base.rstrip("/").encode("latin-1")
    if not _points_at(value, origin_prefix):
        return value
    rest = value[len(origin_prefix):]
    if public_base is None:
        return rest if rest.startswith(b"/") else b"/" + rest
    return public_base.rstrip("/").encode("latin-1") + rest


def _points_at(value: bytes, prefix: bytes) -> bool:
    if not value.lower().startswith(prefix.lower()):
        return False
    rest = value[len(prefix):]
    return rest == b"" or rest[:1] in (b"/", b"?", b"#")
