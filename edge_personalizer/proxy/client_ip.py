"""The client's address, read from forwarding headers only through trusted proxies,
resolved once a request into the scope."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from .forwarded import ForwardedElement, parse_forwarded

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose forwarding headers we believe, and which headers beside
    X-Forwarded-For name the client there: those of the edges named in edge_vendor
    (CF-Connecting-IP for Cloudflare...), none by default.

    Answers are remembered per address (a bounded cache: the peers of a server are few,
    and parsing an address on every request is a measurable cost)."""

    __slots__ = ("networks", "client_headers", "_known")
    _MAX_KNOWN = 4096

    def __init__(self, networks: tuple[IPNetwork, ...] = (), *,
                 client_headers: tuple[str, ...] = ()) -> None:
        self.networks = networks
        self.client_headers = tuple(h.lower().encode("latin-1") for h in client_headers)
        self._known: dict[str | None, bool] = {}

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not self.networks:
            return False
        known = self._known.get(address)
        if known is None:
            known = self._check(address)
            if len(self._known) >= self._MAX_KNOWN:
                self._known.clear()
            self._known[address] = known
        return known

    def _check(self, address: str) -> bool:
        ip = parse_ip(address)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustedProxies) and other.networks == self.networks \
            and other.client_headers == self.client_headers

    def __hash__(self) -> int:
        return hash((self.networks, self.client_headers))

    def __repr__(self) -> str:
        return f"TrustedProxies({self.networks!r}, client_headers={self.client_headers!r})"


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a header element: accepts `1.2.3.4:5678`, `[::1]:80`, `"[::1]"`.
    None for an IPv6 address with a zone (`fe80::1%eth0`): it names a link of the sender's
    own, never a visitor, and its zone may be any text (quotes, `;`, `,`)."""
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def address_of(hop: str | None) -> str | None:
    """A forwarded hop's address alone (X-Forwarded-For's `1.2.3.4:5678`, Forwarded's
    `"[::1]:80"`: its port dropped); None when it names none (`unknown`, `_hidden`)."""
    ip = parse_ip(hop)
    return str(ip) if ip is not None else None


def forwarded_chain(values: Iterable[str]) -> list[str]:
    """All hops of one or more X-Forwarded-For header values, left (client) to right."""
    return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted: TrustedProxies
) -> str | None:
    """The visitor's address: the right-most hop not ours, walking back through trusted proxies.

    A peer that is not a trusted proxy is the client, whatever headers it sent.
    """
    if peer is None or peer not in trusted:
        return peer
    client = peer
    for hop in reversed(forwarded_chain(forwarded_for)):
        address = address_of(hop)
        if address is None:
            break
        client = address
        if client not in trusted:
            break
    return client


class ClientAddress:
    """Who sent one request: the TCP peer, and the visitor behind any trusted proxies.
    Immutable (final attributes; one is made for every request, and a frozen dataclass
    is built through interpreted code even when compiled)."""

    def __init__(self, peer: str | None, ip: str | None, trusted_peer: bool,
                 forwarded_for: tuple[str, ...] = (), forwarded: tuple[str, ...] = (),
                 public_element: ForwardedElement | None = None) -> None:
        self.peer: Final = peer                     # the client itself or the nearest proxy
        self.ip: Final = ip                         # the visitor, through trusted proxies
        self.trusted_peer: Final = trusted_peer     # a proxy whose headers we believe
        # The hops before the peer: its X-Forwarded-For values, else its Forwarded's for=
        self.forwarded_for: Final = forwarded_for
        # Its Forwarded values, when believed (they parse, and name X-Forwarded-For's hops)
        self.forwarded: Final = forwarded
        # Of those, the element the outermost trusted proxy wrote: the visitor's request
        self.public_element: Final = public_element


# Where the resolved address lives in an ASGI scope (beside `client`, rewritten to it).
CLIENT_ADDRESS: Final = "edge_personalizer.client_address"


def client_address(scope: Scope, trusted: TrustedProxies) -> ClientAddress:
    """The scope's resolved address; resolved here when no ClientAddressMiddleware ran
    (personalization mounted inside another application)."""
    known: ClientAddress | None = scope.get(CLIENT_ADDRESS)
    if known is not None:
        return known
    client = scope.get("client")
    peer = client[0] if client else None
    if peer is None or peer not in trusted:
        return ClientAddress(peer, peer, False)
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    forwarded_for = tuple(v.decode("latin-1") for k, v in headers
                          if k == b"x-forwarded-for" and v.strip())
    forwarded = tuple(v.decode("latin-1") for k, v in headers if k == b"forwarded")
    elements = parse_forwarded(forwarded) if forwarded else None
    if elements and forwarded_for:
        # A proxy that writes X-Forwarded-For may hand a visitor's own Forwarded on as it
        # came, and a visitor can make one name the very hops it writes: believed only
        # from a proxy that writes Forwarded alone.
        elements = None
    elif elements:
        forwarded_for = tuple(address_of(element.node) or "unknown" for element in elements)
    ip = (edge_client_ip(headers, trusted.client_headers)
          or resolve_client_ip(peer, forwarded_for, trusted))
    if not elements:
        return ClientAddress(peer, ip, True, forwarded_for)
    return ClientAddress(peer, ip, True, forwarded_for, forwarded,
                         _public_element(elements, trusted))


def _public_element(elements: tuple[ForwardedElement, ...],
                    trusted: TrustedProxies) -> ForwardedElement:
    """The element the outermost trusted proxy wrote, walked back from the right as
    X-Forwarded-For is: the first whose for= is no trusted proxy names the visitor, and
    its proto= and host= are those the visitor asked for."""
    for element in reversed(elements):
        address = address_of(element.node)
        if address is None or address not in trusted:
            return element
    return elements[0]


def edge_client_ip(headers: list[tuple[bytes, bytes]],
                   names: tuple[bytes, ...]) -> str | None:
    """The visitor's address in the first of `names` (a trusted edge's own client
    headers, CF-Connecting-IP...) that holds one."""
    for name in names:
        for key, value in headers:
            if key == name:
                ip = parse_ip(value.decode("latin-1").split(",")[0])
                if ip is not None:
                    return str(ip)
    return None


class ClientAddressMiddleware:
    """Resolves the visitor's address once a request, as uvicorn's proxy_headers does:
    `scope["client"]` becomes the visitor's, and the whole answer (peer, visitor, the
    trusted chain) is kept in the scope for the stages that need more."""

    def __init__(self, app: ASGIApp, *, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            address = client_address(scope, self.trusted)
            scope[CLIENT_ADDRESS] = address
            if address.ip != address.peer and address.ip is not None:
                client = scope.get("client")
                scope["client"] = (address.ip, client[1] if client else 0)
        await self.app(scope, receive, send)
