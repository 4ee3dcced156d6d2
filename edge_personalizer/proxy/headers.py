"""Header hygiene between client and origin: hop-by-hop removal, forwarding, Location."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..classify.client_ip import TrustedProxies, resolve_client_ip

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1 plus the de-facto ones; never forwarded in either direction.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# Forwarding headers we write ourselves; a client's own copies are dropped unless its
# address is a trusted proxy.
_FORWARDING = frozenset({
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
    prior_for: tuple[str, ...] = ()   # X-Forwarded-For values from a trusted peer

    @property
    def public_base(self) -> str:
        return f"{self.scheme}://{self.host}"


def header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k.lower() == name]


def resolve_forwarding(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    peer: str | None,
    scheme: str,
    server_host: str,
    trusted: TrustedProxies,
) -> Forwarding:
    """The public view of a request, believing forwarding headers only from trusted peers."""
    host_values = header_values(headers, b"host")
    host = host_values[0] if host_values else server_host
    trusted_peer = peer in trusted
    prior_for: tuple[str, ...] = ()
    if trusted_peer:
        prior_for = tuple(header_values(headers, b"x-forwarded-for"))
        proto = header_values(headers, b"x-forwarded-proto")
        if proto and proto[-1].split(",")[-1].strip() in ("http", "https"):
            scheme = proto[-1].split(",")[-1].strip()
        fwd_host = header_values(headers, b"x-forwarded-host")
        if fwd_host and fwd_host[-1].split(",")[-1].strip():
            host = fwd_host[-1].split(",")[-1].strip()
    client_ip = resolve_client_ip(peer, prior_for, trusted)
    return Forwarding(peer=peer, client_ip=client_ip, scheme=scheme, host=_clean_host(host),
                      trusted_peer=trusted_peer, prior_for=prior_for)


_HOST = re.compile(r"[A-Za-z0-9.\-:\[\]_]+")


def _clean_host(host: str) -> str:
    # A Host header carrying a path, credentials or spaces would let a client inject
    # text into rewritten Location headers; keep only what a host can be.
    return host if _HOST.fullmatch(host) else "invalid.host"


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """The headers without hop-by-hop ones, including those a Connection header names;
    names lower-cased."""
    out: RawHeaders = []
    named: set[bytes] = set()
    for key, value in headers:
        key = key.lower()
        if key in HOP_BY_HOP:
            if key == b"connection":   # "keep-alive" mostly; anything else it names goes too
                named.update(token.strip().lower() for token in value.split(b","))
            continue
        out.append((key, value))
    named -= HOP_BY_HOP
    named.discard(b"")
    return [(k, v) for k, v in out if k not in named] if named else out


def _forwarded_node(ip: str | None) -> str:
    if ip is None:
        return "unknown"
    return f'"[{ip}]"' if ":" in ip else ip


def request_headers_for_origin(
    headers: Sequence[tuple[bytes, bytes]], fwd: Forwarding, *, origin_host: str
) -> RawHeaders:
    """Client headers as the origin should see them.

    Hop-by-hop headers go; Host becomes the origin's; X-Forwarded-For/-Proto/-Host and
    Forwarded (RFC 7239) describe the client, extending a trusted proxy's chain.
    """
    out: RawHeaders = []
    prior_forwarded: list[bytes] = []
    for key, value in strip_hop_by_hop(headers):
        lower = key.lower()
        if lower == b"host":
            continue
        if lower in _FORWARDING:
            if fwd.trusted_peer and lower == b"forwarded":
                prior_forwarded.append(value)
            continue
        out.append((lower, value))
    peer = fwd.peer or "unknown"
    chain = ", ".join([*fwd.prior_for, peer]) if fwd.trusted_peer else peer
    element = f"for={_forwarded_node(fwd.peer)};proto={fwd.scheme};host=\"{fwd.host}\""
    forwarded = b", ".join([*prior_forwarded, element.encode("latin-1")])
    out += [
        (b"host", origin_host.encode("latin-1")),
        (b"x-forwarded-for", chain.encode("latin-1")),
        (b"x-forwarded-proto", fwd.scheme.encode("latin-1")),
        (b"x-forwarded-host", fwd.host.encode("latin-1")),
        (b"forwarded", forwarded),
    ]
    if fwd.client_ip:
        out.append((b"x-real-ip", fwd.client_ip.encode("latin-1")))
    return out


_LOCATION_HEADERS = frozenset({b"location", b"content-location"})


def response_headers_for_client(
    headers: Iterable[tuple[bytes, bytes]], *, origin_base: str, public_base: str
) -> RawHeaders:
    """Origin headers as the client should see them: no hop-by-hop, Location made public."""
    out = strip_hop_by_hop(headers)
    for index, (key, value) in enumerate(out):
        if key in _LOCATION_HEADERS:
            origin_prefix = origin_base.rstrip("/").encode("latin-1")
            if _points_at(value, origin_prefix):
                public_prefix = public_base.rstrip("/").encode("latin-1")
                out[index] = (key, public_prefix + value[len(origin_prefix):])
    return out


def _points_at(value: bytes, prefix: bytes) -> bool:
    if not value.lower().startswith(prefix.lower()):
        return False
    rest = value[len(prefix):]
    return rest == b"" or rest[:1] in (b"/", b"?", b"#")
