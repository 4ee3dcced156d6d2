"""Regular expressions for the JSON Schema that take exactly the written values the compiler
takes: real dates (no 2026-02-30), shares within their bounds ("150%" is none), durations
within theirs (window: 91d is too long). JSON Schema compares no written number with a
bound, and patterns have no flags, so the bounds are spelled out digit by digit.

Numbers are written as the compiler reads them: decimal digits, an optional fraction
(`1.5`, `.5`, `5.`), leading zeros allowed; no signs, exponents or other digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Final

# A day of the Gregorian calendar from 0001-01-01, as date.fromisoformat reads YYYY-MM-DD:
# 31 days in the long months, 30 in the others, 29 in February of leap years only.
_YEAR: Final = "(?!0000)[0-9]{4}"
_FOURTH: Final = "(?:0[48]|[2468][048]|[13579][26])"   # 04, 08, 12 ... 96
_LEAP_YEAR: Final = f"(?:[0-9]{{2}}{_FOURTH}|{_FOURTH}00)"
DATE: Final = (f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
               "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
               f"|{_LEAP_YEAR}-02-29)")
# A number as written, unbounded (the compiler reads the same form).
NUMBER: Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"


def _digit_above(digit: str) -> str | None:
    return None if digit == "9" else f"[{int(digit) + 1}-9]"


def _digit_below(digit: str) -> str | None:
    return None if digit == "0" else f"[0-{int(digit) - 1}]"


def _whole_below(limit: int) -> str:
    """Whole numbers from 1 up to (not including) `limit`, written without leading zeros;
    "(?!)" when there is none."""
    text = str(limit)
    shorter = [f"[1-9][0-9]{{0,{len(text) - 2}}}"] if len(text) > 1 else []
    same = []
    for i, digit in enumerate(text):
        lower = _digit_below(digit) if i else (None if digit == "1" else f"[1-{int(digit) - 1}]")
        if lower is not None:
            same.append(text[:i] + lower + (f"[0-9]{{{len(text) - i - 1}}}"
                                            if i < len(text) - 1 else ""))
    return "(?:" + "|".join(shorter + same or ["(?!)"]) + ")"


def number_up_to(limit: int, *, inclusive: bool) -> str:
    """A written number from 0 up to `limit` (a whole number), `limit` itself when
    `inclusive`."""
    below = f"0*{_whole_below(limit)}?(?:\\.[0-9]*)?"
    equal = f"|0*{limit}(?:\\.0*)?" if inclusive else ""
    return f"(?=\\.?[0-9])(?:{below}{equal})"


def _fraction_digits(value: Fraction) -> tuple[str, str]:
    """The decimal digits of `value` (0 < value < 1) after the point: those before the
    repeating part, and the repeating part ("" when the expansion ends)."""
    digits: list[str] = []
    seen: dict[Fraction, int] = {}
    rest = value
    while rest and rest not in seen:
        seen[rest] = len(digits)
        rest *= 10
        digits.append(str(int(rest)))
        rest -= int(rest)
    if not rest:
        return "".join(digits), ""
    start = seen[rest]
    return "".join(digits[:start]), "".join(digits[start:])


def _fraction_at_least(value: Fraction) -> str:
    """The digits after the point of a number from 0 to 1 that is at least `value`."""
    fixed, repeating = _fraction_digits(value)
    ways = [fixed[:i] + above for i, digit in enumerate(fixed)
            if (above := _digit_above(digit)) is not None]
    if not repeating:
        ways.append(fixed)   # the value itself (then any digits)
    else:
        ways += [f"{fixed}(?:{repeating})*{repeating[:i]}{above}"
                 for i, digit in enumerate(repeating)
                 if (above := _digit_above(digit)) is not None]
    return "(?:" + "|".join(ways) + ")[0-9]*"


def at_least(value: Fraction) -> str:
    """A lookahead: the written number that follows is at least `value` (0 < value <= 1),
    or more than 0 when `value` is 0."""
    if value == 0:
        return "(?=[0-9.]*[1-9])"
    if value == 1:
        return "(?=0*[1-9])"
    return f"(?=0*[1-9]|0*\\.{_fraction_at_least(value)})"


def share(*, zero: bool, hundred: bool) -> str:
    """A share of visitors as written, 25 or "25 %": from 0 (when `zero`, else above it) up
    to 100 (`hundred`: 100 itself too)."""
    low = "" if zero else at_least(Fraction(0))
    return f"^\\s*\\+?{low}{number_up_to(100, inclusive=hundred)}\\s*%?\\s*$"


def duration(units: Mapping[str, float], *, least: float, most: float) -> str:
    """A duration written with its unit (s, m, h or d in any case, but M), from `least`
    seconds (above 0 when 0) up to `most`."""
    ways = []
    for unit, seconds in units.items():
        letters = f"[{unit}{unit.upper()}]" if unit != "m" else "m"
        low, high = Fraction(least) / Fraction(seconds), Fraction(most) / Fraction(seconds)
        if low > 1 or high.denominator != 1:
            raise ValueError(f"{least}-{most} s in {unit}: no pattern for such bounds")
        ways.append(f"{at_least(low)}{number_up_to(int(high), inclusive=True)}\\s*{letters}")
    return "^\\s*(?:" + "|".join(ways) + ")\\s*$"
