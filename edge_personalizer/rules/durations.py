"""Durations written in rule files (a goal's `window`, a bandit's `update_every`): a number
and its unit, s, m, h or d, in any case (30m, 72h, 7D) but M (a month, or a minute?)."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

from .schema_patterns import NUMBER

UNITS: Final = MappingProxyType({"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0})
# (the JSON Schema's patterns spell out the same form: schema_patterns.duration)
_WRITTEN: Final = re.compile(f"({NUMBER})\\s*([smhd])", re.IGNORECASE)


def seconds_in(written: str) -> float | None:
    """The seconds `written` stands for; None when it is no duration."""
    match = _WRITTEN.fullmatch(written.strip())
    if match is None or match.group(2) == "M":
        return None
    return float(match.group(1)) * UNITS[match.group(2).lower()]
