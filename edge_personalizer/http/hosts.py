"""What a host can be, as a Host header or a URL's authority names one: the check the
proxy makes of every request's Host and the settings make of the origin's and the
site's addresses, so that a host the proxy would refuse from a client cannot be
configured either."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_host"]

# RFC 3986: a name of letters, digits and `-_` in labels split by dots, none empty (a dot
# may end it), at most 253 characters; or an IPv6 address in brackets (no zone). Then
# maybe a port, 1 to 65535 written without a leading zero.
_HOST: Final = re.compile(r"(?:([A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*\.?)"
                          r"|\[[0-9A-Fa-f:.]{2,45}\])(?::([1-9][0-9]{0,4}))?")


def is_host(text: str) -> bool:
    """Whether `text` is a host, with or without a port."""
    match = _HOST.fullmatch(text)
    return match is not None and len(match[1] or "") <= 253 and int(match[2] or 0) <= 65535
