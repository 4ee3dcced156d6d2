"""Durations as rule files write them: a number and its unit, in any case."""

from __future__ import annotations

import re

import pytest

from edge_personalizer.rules.durations import UNITS, seconds_in
from edge_personalizer.rules.schema_patterns import duration

# The editor's schema: a window's pattern (up to 90 days)
SCHEMA_PATTERN = duration(UNITS, least=0, most=90 * 86400)


@pytest.mark.parametrize(("written", "seconds"), [
    ("30m", 1800.0), ("72h", 259200.0), ("7d", 604800.0), ("90s", 90.0), ("1.5h", 5400.0),
    ("24H", 86400.0), (" 10 S ", 10.0), ("2D", 172800.0), (".5h", 1800.0),
])
def test_a_duration_is_a_number_and_its_unit(written: str, seconds: float) -> None:
    assert seconds_in(written) == seconds
    assert re.fullmatch(SCHEMA_PATTERN, written)   # the editor's schema takes it too


@pytest.mark.parametrize("written", ["72", "1 hour", "h", "1w", "-1h", "1,5h", "1h30m", "",
                                     "1M"])   # (a month, or a minute? write 30d or 1m)
def test_anything_else_is_no_duration(written: str) -> None:
    assert seconds_in(written) is None
    assert not re.fullmatch(SCHEMA_PATTERN, written)
