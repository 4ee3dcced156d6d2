"""How a setting's value is read: text from the environment, a TOML value or JSON -> the
field's type; and the Secret type that keeps tokens and keys out of logs."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The purge-tag header of each CDN dialect (personalize/segments.py writes them).
TAG_HEADERS = ("surrogate-key", "cache-tag", "edge-cache-tag")
CDN_TAG_HEADERS = MappingProxyType({"fastly": "surrogate-key", "varnish": "surrogate-key",
                   "cloudflare": "cache-tag", "akamai": "edge-cache-tag"})
# The edges whose headers edge_vendor may name (classify/edge.py reads them), and the
# value naming none of them: X-Forwarded-For alone.
EDGE_VENDORS = ("cloudflare", "cloudfront", "fastly", "akamai", "vercel")
FORWARDED_ONLY = "forwarded"


class Secret:
    """A string that never shows itself in repr() or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Converters: a value from the environment (text), a TOML file or JSON -> the field's type.

def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def to_int(value: Any) -> int:
    return _number(value, int, "a whole number")


def to_float(value: Any) -> float:
    return _number(value, float, "a number")


_N = TypeVar("_N", int, float)


def _number(value: Any, make: Callable[[Any], _N], what: str) -> _N:
    """`value` as a number `make` reads (never a boolean), or a ValueError saying so."""
    if not isinstance(value, bool):
        try:
            return make(value)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"expected {what}, got {value!r}")


def to_networks(value: Any) -> tuple[IPNetwork, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(ipaddress.ip_network(str(item).strip(), strict=False)
                 for item in items if str(item).strip())


def to_path(value: Any) -> Path | None:
    """A path setting; `~` is the home folder wherever the value was given (a shell expands
    it on the command line, never in an environment variable or a config file)."""
    if value in (None, ""):
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError as exc:   # ~someone unknown, or no home folder at all
        raise ValueError(f"{value}: {exc}") from None


def to_secret(value: Any) -> Secret | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, Secret) else Secret(str(value))


def to_secrets(value: Any) -> tuple[Secret, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item if isinstance(item, Secret) else Secret(str(item).strip())
                 for item in items if isinstance(item, Secret) or str(item).strip())


def to_optional_int(value: Any) -> int | None:
    return None if value in (None, "") else to_int(value)


def to_optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def to_tag_headers(value: Any) -> tuple[str, ...]:
    """`cache-tag,surrogate-key`, CDN names (`cloudflare`) or `none`; a list in TOML."""
    items = str(value).split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [item.strip().lower() for item in items if item.strip()]
    if names == ["none"]:
        return ()
    return tuple(dict.fromkeys(CDN_TAG_HEADERS.get(name, name) for name in names))


def to_mapping(value: Any) -> dict[str, str]:
    """A table from TOML, or `header=field,header=field` from the environment."""
    if isinstance(value, Mapping):
        return {str(k).lower(): str(v) for k, v in value.items()}
    out = {}
    for item in str(value).split(","):
        if item.strip():
            header, sep, target = item.partition("=")
            if not sep:
                raise ValueError(f"expected header=field pairs, got {item!r}")
            out[header.strip().lower()] = target.strip()
    return out
