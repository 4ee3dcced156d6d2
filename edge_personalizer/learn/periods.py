"""Counts compared within periods: a cell under one version of the weights.

Weights change by design (a bandit's, between versions and between cells; fixed weights
edited while an experiment runs). Pooled totals would mix periods of different conversion
levels in different proportions per variant (Simpson's paradox), so such experiments are
judged on each variant's rate and mean value per period, weighted by the period's share of
all exposures (post-stratification), with the variance of that weighted estimate: each
period's share squared times its sampling variance. A period where an arm had a handful
of visitors then weighs on the estimate and on its uncertainty alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from .counters import EXPOSURE, UNKNOWN_PERIOD, CountKey, Tally, on_goal

# A period counts are compared within: a cell, a version of the weights, and a day for
# counts from before periods were kept.
Period = tuple[str, int, str]


class WeightedTally(NamedTuple):
    """A variant's totals over periods, each period's rate and mean value weighted by its
    share of all exposures: `conversions` is that rate times the exposures, not rounded
    (a rounded count would move the rate, its interval and every comparison).
    `rate_variance` and `value_variance` are the variances of the weighted rate and of the
    weighted mean value: not what `exposures` alone would make of them."""

    exposures: int
    conversions: float
    value_sum: float
    value_sq_sum: float
    rate_variance: float = 0.0
    value_variance: float = 0.0
    # As many visitors as the periods' shares and sizes are worth together (Kish):
    # 1 / sum(share^2 / visitors) over its periods; at most `exposures`.
    effective: float = 0.0


def period_of(key: CountKey) -> Period:
    """The period a count is compared within: its cell and the version of the weights its
    visitor was assigned under (a day, for counts from before periods were kept)."""
    return key.cell, key.period, key.day if key.period == UNKNOWN_PERIOD else ""


def periods_shown(rows: Mapping[CountKey, Tally]) -> dict[str, set[Period]]:
    """Per variant, the periods it had visitors exposed in: two variants can be compared
    in the periods they share (one renamed or added later shares few, or none, with the
    control's earlier ones)."""
    shown: dict[str, set[Period]] = {}
    for key, tally in rows.items():
        if key.goal == EXPOSURE and tally.exposures > 0:
            shown.setdefault(key.variant, set()).add(period_of(key))
    return shown


def in_periods(rows: Mapping[CountKey, Tally], periods: set[Period]) -> dict[CountKey, Tally]:
    """The rows counted in `periods`."""
    return {key: tally for key, tally in rows.items() if period_of(key) in periods}


class _Spread(NamedTuple):
    """What a period's visitors, every variant together, vary by: the variance of a
    conversion (from the period's pooled rate) and of the value per visitor."""

    rate: float
    value: float


def _spread(per: Mapping[str, Tally]) -> _Spread:
    # Pooled over the period's variants: an arm's own rate is 0 in a period where its few
    # visitors did not convert, which would make its estimate there look certain.
    exposed = sum(t.exposures for t in per.values())
    if exposed < 2:
        return _Spread(0.0, 0.0)
    rate = min(sum(t.conversions for t in per.values()) / exposed, 1.0)
    total = sum(t.value_sum for t in per.values())
    squares = sum(t.value_sq_sum for t in per.values())
    return _Spread(rate * (1 - rate), max((squares - total * total / exposed) / (exposed - 1), 0.0))


def period_weighted_totals(rows: Mapping[CountKey, Tally], experiment: str, goal: str, *,
                           pair: tuple[str, str] | None = None) -> dict[str, WeightedTally]:
    """Per variant, totals whose rate and mean value are each period's, weighted by the
    period's share of all exposures, and the variances of both. A period is one cell
    under one version of the weights (the version a visitor was assigned under: their
    conversions count in it too, whatever day they happen). Exposure counts stay as
    counted. Counts from before periods were kept (UNKNOWN_PERIOD) fall back to what was
    kept then: one period a day.

    With `pair` (the control and a variant), the two alone, over the periods both were
    shown in, each weighted by n1 * n2 / (n1 + n2) of their visitors there (as the
    Cochran-Mantel-Haenszel test weighs strata): what the two are compared on. A period
    where a bandit left one of them a handful of visitors says little of how they
    compare, and weighs as little; weighted by its share of all visitors, it made the
    starved arm's few visitors there decide its estimate."""
    periods: dict[Period, dict[str, Tally]] = {}
    for key, tally in rows.items():
        if key.experiment != experiment or pair is not None and key.variant not in pair:
            continue
        part = on_goal(key, tally, goal)
        if part is None:
            continue
        per = periods.setdefault(period_of(key), {})
        held = per.get(key.variant)
        per[key.variant] = part if held is None else held.plus(part)
    period_exposures: dict[Period, float]
    if pair is None:
        period_exposures = {period: sum(t.exposures for t in per.values())
                            for period, per in periods.items()}
    else:
        periods = {period: per for period, per in periods.items()
                   if all(per.get(name, Tally()).exposures > 0 for name in pair)}
        period_exposures = {period: _harmonic(per[pair[0]].exposures, per[pair[1]].exposures)
                            for period, per in periods.items()}
    spreads = {period: _spread(per) for period, per in periods.items()}
    variants = {v for per in periods.values() for v in per}
    out = {}
    for variant in sorted(variants):
        counted = [(period_exposures[p], per[variant], spreads[p])
                   for p, per in periods.items()
                   if variant in per and per[variant].exposures > 0]
        weight = sum(n for n, _, _ in counted)
        exposed = sum(t.exposures for _, t, _ in counted)
        if not weight or not exposed:
            continue
        rate = sum(n * t.conversions / t.exposures for n, t, _ in counted) / weight
        mean = sum(n * t.value_sum / t.exposures for n, t, _ in counted) / weight
        square = sum(n * t.value_sq_sum / t.exposures for n, t, _ in counted) / weight
        rate_variance = sum(n * n * s.rate / t.exposures for n, t, s in counted) / weight ** 2
        value_variance = sum(n * n * s.value / t.exposures for n, t, s in counted) / weight ** 2
        effective = weight * weight / sum(n * n / t.exposures for n, t, _ in counted)
        out[variant] = WeightedTally(exposed, rate * exposed, mean * exposed, square * exposed,
                                     rate_variance, value_variance, effective)
    return out


def _harmonic(first: int, second: int) -> float:
    return first * second / (first + second)
