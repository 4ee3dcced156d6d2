"""How long an origin lets a shared cache keep its response: what its Cache-Control and
Expires say, and its cache controls meant for CDNs alone (RFC 9213's CDN-Cache-Control and
the vendors' own, Surrogate-Control, Akamai's Edge-Control, nginx's X-Accel-Expires),
which a CDN obeys instead of Cache-Control."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Final

Head = Mapping[bytes, str]   # response headers by name (lower case), repeats joined by ", "
Directives = dict[str, str | None]

# Directives of Cache-Control (and CDN-Cache-Control) that keep a response out of a shared
# cache: stored by none, or for one user, or never served without asking the origin again.
_UNSHARED: Final = frozenset({"private", "no-store", "no-cache"})
_EDGE_UNITS: Final = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86400})
# What a shared page keeps of the origin's Cache-Control (kept_directives), in this order:
# the flags, then those that take seconds.
_FLAGS: Final = ("must-revalidate", "proxy-revalidate", "no-transform")
_KEPT: Final = (*_FLAGS, "stale-while-revalidate", "stale-if-error")
_LONGEST: Final = 2 ** 31   # the most seconds a cache need read (RFC 9111 1.2.2)


def _directives(value: str) -> Directives:
    """A Cache-Control-like header's directives by name (lower case), each with its
    argument (unquoted) or None; the first of a name counts. A `;target` suffix
    (Surrogate-Control's) is left out."""
    out: Directives = {}
    for part in value.split(","):
        name, equals, argument = part.strip().partition("=")
        name = name.partition(";")[0].strip().lower()
        if name:
            out.setdefault(name, argument.partition(";")[0].strip().strip('"') if equals
                           else None)
    return out


def _seconds(value: str | None) -> int:
    """A delta-seconds value; anything else counts as 0 (stale: RFC 9111 1.2.2)."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else 0


def _expires_in(head: Head) -> int:
    """Seconds from the origin's Date (else now) to its Expires; 0 when either is not a
    date (an invalid Expires means already expired)."""
    try:
        expires = parsedate_to_datetime(head[b"expires"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return 0
    try:
        date = parsedate_to_datetime(head[b"date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        date = time.time()
    return max(0, int(expires - date))


# Each CDN-only control read as: None when it says nothing of storing the response (then
# Cache-Control decides), 0 when it forbids it, else the seconds it may be kept.

def _cdn_cache_control(value: str) -> int | None:
    """RFC 9213's CDN-Cache-Control and the vendors' own (Cloudflare, Vercel, Netlify):
    Cache-Control's directives, for the CDN."""
    found = _directives(value)
    if not _UNSHARED.isdisjoint(found):
        return 0
    if "s-maxage" in found:
        return _seconds(found["s-maxage"])
    return _seconds(found["max-age"]) if "max-age" in found else None


def _surrogate_control(value: str) -> int | None:
    """Surrogate-Control (Fastly, Akamai): `no-store`, or `max-age=N` (`+M`: how long a
    stale copy may be served, not how long it is fresh)."""
    found = _directives(value)
    if "no-store" in found:
        return 0
    return _seconds((found["max-age"] or "").partition("+")[0]) if "max-age" in found \
        else None


def _edge_control(value: str) -> int | None:
    """Akamai's Edge-Control: `no-store`, `bypass-cache`, or `cache-maxage=30m` (a number
    and its unit: s, m, h or d)."""
    found = _directives(value)
    if "no-store" in found or "bypass-cache" in found:
        return 0
    if "cache-maxage" not in found:
        return None
    given = found["cache-maxage"] or ""
    number, unit = (given[:-1], given[-1:]) if given[-1:] in _EDGE_UNITS else (given, "s")
    return _seconds(number) * _EDGE_UNITS[unit]


def _accel_expires(value: str) -> int | None:
    """nginx's X-Accel-Expires: seconds (0: not cached), or `@` and the Unix time it
    expires at; nginx ignores anything else."""
    value = value.strip()
    if value.startswith("@") and value[1:].isascii() and value[1:].isdigit():
        return max(0, int(value[1:]) - int(time.time()))
    return int(value) if value.isascii() and value.isdigit() else None


CDN_CONTROL_READERS: Final[Mapping[bytes, Callable[[str], int | None]]] = MappingProxyType({
    b"cdn-cache-control": _cdn_cache_control,
    b"cloudflare-cdn-cache-control": _cdn_cache_control,
    b"vercel-cdn-cache-control": _cdn_cache_control,
    b"netlify-cdn-cache-control": _cdn_cache_control,
    b"surrogate-control": _surrogate_control,
    b"edge-control": _edge_control,
    b"x-accel-expires": _accel_expires,
})


def cdn_lifetime(head: Head) -> int | None:
    """What the origin's CDN-only cache controls say: None when none says anything of
    storing the response, 0 when one forbids it, else the least of their lifetimes (the
    proxy does not know which CDN reads its answer: none keeps it longer than it was
    told)."""
    said: list[int] = []
    for name, read in CDN_CONTROL_READERS.items():
        lifetime = read(head[name]) if name in head else None
        if lifetime is not None:
            said.append(lifetime)
    return min(said) if said else None


def kept_directives(head: Head) -> str:
    """What a page shared per segment keeps of the origin's cache controls beside its
    lifetime, as `, name[=seconds]...`: how a cache may serve it once stale
    (stale-while-revalidate, stale-if-error: RFC 5861; a new segment key after an edit
    leaves stale copies unread) and what it must not do (must-revalidate,
    proxy-revalidate, no-transform). Read where the lifetime was: Cache-Control, or once
    a CDN-only control gave it, the CDN-Cache-Control of that kind (none for the others:
    what Cache-Control allows browsers was never the CDN's to take)."""
    if cdn_lifetime(head) is None:
        value = head.get(b"cache-control")
    else:
        # (the CDN-only controls written as Cache-Control is: RFC 9213's and the vendors')
        value = next((head[name] for name, read in CDN_CONTROL_READERS.items()
                      if read is _cdn_cache_control and name in head), None)
    if value is None:
        return ""
    found = _directives(value)
    kept = [name if found[name] is None
            else f"{name}={min(_seconds(found[name]), _LONGEST)}"
            for name in _KEPT if name in found
            and (found[name] is None) == (name in _FLAGS)]
    return "".join(f", {directive}" for directive in kept)


def shared_lifetime(head: Head, *, authorized: bool) -> int | None:
    """How long the origin lets a shared cache keep this response (RFC 9111 3, 3.5, 4.2.1;
    RFC 9213): its CDN-only cache controls' lifetime when they give one (cdn_lifetime),
    used instead of Cache-Control's; else its `s-maxage`, else `max-age`, else (without
    Cache-Control) its Expires. None when a shared cache may not store it at all: a CDN
    control forbids it; Cache-Control says `private` (whatever the CDN is told), or, with
    no CDN lifetime, `no-store` or `no-cache`; no explicit lifetime above 0; or a request
    with credentials that the origin did not mark `public` or `s-maxage`. A bare
    `public` gives no lifetime of its own: -1 (the operator's shared_max_age applies)."""
    value = head.get(b"cache-control")
    found = _directives(value) if value is not None else {}
    if "private" in found:
        return None
    if authorized and found.keys().isdisjoint({"public", "s-maxage"}):
        return None
    cdn = cdn_lifetime(head)
    if cdn is not None:
        return cdn or None
    if value is None:
        return _expires_in(head) or None
    if not _UNSHARED.isdisjoint(found):
        return None
    if "s-maxage" in found:
        lifetime = _seconds(found["s-maxage"])
    elif "max-age" in found:
        lifetime = _seconds(found["max-age"])
    elif b"expires" in head:
        lifetime = _expires_in(head)
    else:
        return -1 if "public" in found else None
    return lifetime or None
