"""The schema's patterns take the values the compiler takes, and no other."""

from __future__ import annotations

import re
from datetime import date, timedelta
from fractions import Fraction

import pytest

from edge_personalizer.rules.durations import UNITS, seconds_in
from edge_personalizer.rules.schema_patterns import DATE, at_least, duration, share


def test_date_takes_every_day_and_no_other() -> None:
    day = date(1999, 12, 1)
    while day < date(2101, 3, 2):   # the leap days of 2000 (400) and 2004, not of 2100
        assert re.fullmatch(DATE, day.isoformat())
        day += timedelta(days=1)
    for written in ("2026-02-29", "2100-02-29", "2026-04-31", "2026-13-01", "2026-00-10",
                    "0000-01-01", "2026-01-00", "2026-01-32"):
        assert not re.fullmatch(DATE, written), written


@pytest.mark.parametrize(("written", "traffic", "holdout"), [
    ("0", False, True), (".0", False, True), ("0.001", True, True), ("25 %", True, True),
    ("100", True, False), ("100.000%", True, False), ("0100", True, False),
    ("100.01", False, False), ("150%", False, False), ("1e1", False, False),
    ("-0", False, False), (".", False, False), ("", False, False),
])
def test_share_bounds(written: str, traffic: bool, holdout: bool) -> None:
    assert bool(re.fullmatch(share(zero=False, hundred=True), written)) is traffic
    assert bool(re.fullmatch(share(zero=True, hundred=False), written)) is holdout


@pytest.mark.parametrize("value", [Fraction(1, 60), Fraction(1, 3600), Fraction(1, 86400),
                                   Fraction(1, 2), Fraction(1, 8)])
def test_at_least_compares_digit_by_digit(value: Fraction) -> None:
    for digits in range(1, 9):
        for shift in (-1, 0, 1):
            number = (value * 10 ** digits).__floor__() + shift
            written = f"0.{number:0{digits}d}" if number >= 0 else None
            if written is None or len(written) > digits + 2:
                continue
            taken = re.match(at_least(value) + r"[0-9.]+$", written) is not None
            assert taken is (Fraction(written) >= value), written


@pytest.mark.parametrize("written", ["0s", "0.5s", "1s", "1S", "90d", "90.0d", "90.1d",
                                     "2160h", "2161h", "7776000s", "7776001s", "0.0167m",
                                     "0.0166m", "0.000278h", "0.000277h", "0.0000116d",
                                     "0.0000115d", "30d", "31d", "1M", "72", " 3 h ", ".5h"])
def test_duration_bounds_agree_with_the_compiler(written: str) -> None:
    seconds = seconds_in(written)
    window = seconds is not None and 0 < seconds <= 90 * 86400
    every = seconds is not None and 1 <= seconds <= 30 * 86400
    assert bool(re.fullmatch(duration(UNITS, least=0, most=90 * 86400), written)) is window
    assert bool(re.fullmatch(duration(UNITS, least=1, most=30 * 86400), written)) is every
