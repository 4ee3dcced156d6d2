"""The client's address, read from forwarding headers only through trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """The networks whose forwarding headers we believe."""

    networks: tuple[IPNetwork, ...] = ()

    def __contains__(self, address: str | None) -> bool:
        ip = parse_ip(address)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


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
