"""A request's Cookie header read as browsers send it: `name=value` pairs split by `;`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final

from .visitor import NO_VALUES

# More than a browser sends a site (Chrome keeps 180 a domain, and a request carries its
# parent domain's too); a hostile header is cut there, whatever its length.
_MAX_COOKIES: Final = 400


def _pairs(header: str) -> Iterator[tuple[str, str]]:
    items = header.split(";", _MAX_COOKIES)
    del items[_MAX_COOKIES:]
    for item in items:
        name, sep, value = item.strip().partition("=")
        if sep and name:
            yield name, value.strip().strip('"')


def parse_cookies(header: str) -> Mapping[str, str]:
    """`a=1; b=2` -> {"a": "1", "b": "2"}; the first of a repeated name wins."""
    if not header:
        return NO_VALUES
    out: dict[str, str] = {}
    for name, value in _pairs(header):
        if name not in out:
            out[name] = value
    return MappingProxyType(out)


def cookie_values(header: str, name: str) -> list[str]:
    """Every value of the cookie `name`, in the order sent (a browser sends the same name
    once for each domain and path it holds it for)."""
    return [value for key, value in _pairs(header) if key == name]
