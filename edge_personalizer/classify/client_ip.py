"""The client's address, read from forwarding headers only through trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose forwarding headers we believe.

    Answers are remembered per address (a bounded cache: the peers of a server are few,
    and parsing an address on every request is a measurable cost)."""

    __slots__ = ("networks", "_known")
    _MAX_KNOWN = 4096

    def __init__(self, networks: tuple[IPNetwork, ...] = ()) -> None:
        self.networks = networks
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
        return isinstance(other, TrustedProxies) and other.networks == self.networks

    def __hash__(self) -> int:
        return hash(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({self.networks!r})"


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a header element: accepts `1.2.3.4:5678`, `[::1]:80`, `"[::1]"`."""
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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
        ip = parse_ip(hop)
        if ip is None:
            break
        client = str(ip)
        if client not in trusted:
            break
    return client
