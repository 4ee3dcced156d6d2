"""The numbers marketers decide from, computed from counters: pure functions, never on a page's way.

Per variant: the conversion rate with a 95% Wilson interval, and the mean value per exposed
visitor with a t interval; against the control, comparison.compare (the difference, its
p-values, the uplift's intervals, the chance to beat and the risk).

Sample-ratio mismatch: a chi-square test of exposures against the weights, flagged at
p < 0.001 (a broken split makes every other number meaningless).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .comparison import ALPHA, Comparison, Moments, combined_variance, compare, scipy_stats
from .counters import Tally
from .periods import WeightedTally


class Counts(Protocol):
    """A variant's counts on one goal: a Tally, or totals weighted by period (periods.py),
    whose conversions are a weighted number of visitors rather than a whole one."""

    @property
    def exposures(self) -> int: ...
    @property
    def conversions(self) -> float: ...
    @property
    def value_sum(self) -> float: ...
    @property
    def value_sq_sum(self) -> float: ...


SRM_THRESHOLD = 0.001
# Conversions (and visitors who did not convert) an arm needs, were there no difference
# (both arms' rate together times its visitors), before a comparison is read as a verdict:
# under 10 the normal approximation the tests rest on does not hold (the textbook np >= 10
# and n(1-p) >= 10, Cochran's rule of expected counts). Expected, not observed: a control a
# bandit starved of visitors converts few times even when the variant plainly wins (1 of
# 37 against 85 of 170 expects 15 of the control); results name the arms short of it, as
# gbstats' minimum sample size. An arm that did convert fewer times is compared with a
# spread of at least both arms' together (_steadied).
FEW_CONVERSIONS = 10


def conversion_moments(converted: float, exposed: int) -> Moments:
    """A conversion rate as a mean of 0/1 outcomes (variance p(1-p), as gbstats takes it)."""
    if not 0 <= converted <= exposed:
        raise ValueError(f"{converted} converted of {exposed} exposed: expected 0..exposed")
    rate = converted / exposed if exposed else 0.0
    return Moments(rate, rate * (1 - rate), exposed)


def value_moments(value_sum: float, value_sq_sum: float, exposed: int) -> Moments:
    """The value per exposed visitor (0 for those who did not convert), sample variance."""
    if exposed < 2:
        return Moments(value_sum / exposed if exposed else 0.0, 0.0, exposed)
    variance = (value_sq_sum - value_sum * value_sum / exposed) / (exposed - 1)
    return Moments(value_sum / exposed, max(variance, 0.0), exposed)


def rate_moments(counts: Counts) -> Moments:
    """A variant's conversion rate; weighted by period, with the variance of that estimate
    (its periods' shares and sizes: not what its exposures alone would give)."""
    moments = conversion_moments(counts.conversions, counts.exposures)
    if not isinstance(counts, WeightedTally):
        return moments
    return Moments(moments.mean, counts.rate_variance * moments.n, moments.n)


def value_moments_of(counts: Counts) -> Moments:
    """A variant's value per exposed visitor; weighted by period, as rate_moments."""
    moments = value_moments(counts.value_sum, counts.value_sq_sum, counts.exposures)
    if not isinstance(counts, WeightedTally):
        return moments
    return Moments(moments.mean, counts.value_variance * moments.n, moments.n)


def own_value_moments(counts: Counts) -> Moments:
    """A variant's value per exposed visitor for its own interval: weighted by period, its
    own spread (not the periods' pooled one its comparisons are tested under), of as many
    visitors as its periods are worth (WeightedTally.effective)."""
    moments = value_moments(counts.value_sum, counts.value_sq_sum, counts.exposures)
    if not isinstance(counts, WeightedTally) or counts.effective < 2:
        return moments
    n = min(counts.effective, counts.exposures)
    spread = max(counts.value_sq_sum / counts.exposures - moments.mean ** 2, 0.0) * n / (n - 1)
    return Moments(moments.mean, spread, max(int(n), 2))


def counts_interval(counts: Counts, *, alpha: float = ALPHA) -> tuple[float, float]:
    """rate_interval of a variant's counts; weighted by period, of as many visitors as its
    periods' shares and sizes are worth (WeightedTally.effective): a variant's own rate,
    not the pooled one its comparisons are tested under."""
    exposed: float = counts.exposures
    rate = counts.conversions / exposed if exposed else 0.0
    if isinstance(counts, WeightedTally) and counts.effective > 0:
        exposed = min(counts.effective, exposed)
    return rate_interval(rate * exposed, exposed, alpha=alpha)


def rate_interval(converted: float, exposed: float, *, alpha: float = ALPHA
                  ) -> tuple[float, float]:
    """Wilson score interval of a conversion rate ((0, 1) when nobody was exposed; from
    exactly 0 when nobody converted, to exactly 1 when everybody did)."""
    if exposed == 0:
        return 0.0, 1.0
    z = float(scipy_stats().norm.ppf(1 - alpha / 2))
    rate, z2n = converted / exposed, z * z / exposed
    centre = (rate + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(rate * (1 - rate) / exposed + z2n / (4 * exposed))
    low = 0.0 if converted <= 0 else max(0.0, centre - half)
    return low, 1.0 if converted >= exposed else min(1.0, centre + half)


def mean_interval(moments: Moments, *, alpha: float = ALPHA) -> tuple[float, float] | None:
    """t interval of a mean value per visitor (None under two visitors), from 0 at the
    lowest: a goal's values are never negative (learn/goals.parse_value)."""
    if moments.n < 2:
        return None
    quantile = float(scipy_stats().t.ppf(1 - alpha / 2, moments.n - 1))
    half = quantile * math.sqrt(moments.variance / moments.n)
    return max(0.0, moments.mean - half), moments.mean + half


def srm_p_value(exposed: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square p-value of the exposures against the weights' split (1 without exposures)."""
    if len(exposed) != len(weights) or len(exposed) < 2:
        raise ValueError("expected one weight per variant, and at least two variants")
    total, total_weight = sum(exposed), sum(weights)
    if not total or total_weight <= 0:
        return 1.0
    statistic = 0.0
    for observed, weight in zip(exposed, weights, strict=True):
        if weight > 0:
            expected = weight / total_weight * total
            statistic += (observed - expected) ** 2 / expected
    return float(scipy_stats().chi2.sf(statistic, len(exposed) - 1))


@dataclass(frozen=True)
class VariantResult:
    """One variant's counts on one goal, what they say, and (unless control) the comparisons."""

    name: str
    counts: Counts
    rate: float | None                       # None: nobody exposed yet
    rate_interval: tuple[float, float] | None
    mean_value: float | None
    mean_value_interval: tuple[float, float] | None
    conversion: Comparison | None            # on the conversion rate
    value: Comparison | None                 # on the value per exposed visitor
    # (unless control) what the comparisons were made on: the control's counts and the
    # variant's own, where both were shown
    compared: tuple[Counts, Counts] | None = None


@dataclass(frozen=True)
class GoalResult:
    """An experiment judged on one goal: each variant, the control first, and the SRM check."""

    control: str
    variants: tuple[VariantResult, ...]
    srm_p: float

    @property
    def srm(self) -> bool:
        return self.srm_p < SRM_THRESHOLD

    def as_json(self) -> dict[str, Any]:
        """The shape `/__ep/results` and `report --format json` answer with (None as null)."""
        return {"control": self.control, "srm_p": self.srm_p, "srm": self.srm,
                "variants": {v.name: _variant_json(v, self.control) for v in self.variants}}


def goal_result(totals: Mapping[str, Counts], weights: Mapping[str, float], *,
                control: str, removed: Sequence[str] = (),
                paired: Mapping[str, tuple[Counts, Counts]] | None = None,
                alpha: float = ALPHA) -> GoalResult:
    """Judge every variant in `weights` (the control among them), then each of `removed`
    (variants no longer in the split: judged against the control too, left out of the
    sample-ratio check), from its `totals` (exposures and conversions on the goal;
    `counters.variant_totals` sums them). `paired`: per variant, the control's totals and
    its own over what the two are compared on (the periods both were shown in), when that
    is not all of `totals`."""
    if control not in weights:
        raise ValueError(f"control {control!r} is not one of the variants {sorted(weights)}")
    split = [control] + [name for name in weights if name != control]
    names = split + [name for name in removed if name not in weights]
    counts: dict[str, Counts] = {name: totals.get(name, Tally()) for name in names}
    rates = {name: rate_moments(c) for name, c in counts.items()}
    values = {name: value_moments_of(c) for name, c in counts.items()}
    results = []
    for name, tally in counts.items():
        exposed = tally.exposures > 0
        conversion = value = None
        compared = None
        if name != control:
            base, own = compared = (paired or {}).get(name, (counts[control], tally))
            conversion = compare(*_steadied(base, own, rate_moments), alpha=alpha)
            value = compare(*_steadied(base, own, value_moments_of), alpha=alpha)
        results.append(VariantResult(
            name, tally,
            rate=rates[name].mean if exposed else None,
            rate_interval=counts_interval(tally, alpha=alpha) if exposed else None,
            mean_value=values[name].mean if exposed else None,
            mean_value_interval=mean_interval(own_value_moments(tally), alpha=alpha),
            conversion=conversion, value=value, compared=compared))
    srm = srm_p_value([counts[name].exposures for name in split],
                      [weights[name] for name in split]) if len(split) > 1 else 1.0
    return GoalResult(control, tuple(results), srm)


def _steadied(base: Counts, own: Counts, moments: Callable[[Counts], Moments]
              ) -> tuple[Moments, Moments]:
    """The two arms' moments as compared: an arm of under FEW_CONVERSIONS conversions (or
    visitors who did not convert) spreads at least as both arms together do. Its own
    spread, read from a handful, is too often far too small: 1 purchase of 37 visitors
    made a control look sure of its 2.7%, and a variant's uplift interval missed the true
    one in 9% of simulated experiments instead of 5%."""
    pair = moments(base), moments(own)
    if min(base.exposures, own.exposures) < 2:
        return pair   # (no comparison)
    together = combined_variance(*pair)
    return (_at_least(pair[0], base, together), _at_least(pair[1], own, together))


def _at_least(moments: Moments, counts: Counts, variance: float) -> Moments:
    if min(counts.conversions, counts.exposures - counts.conversions) >= FEW_CONVERSIONS:
        return moments
    return Moments(moments.mean, max(moments.variance, variance), moments.n)


def _variant_json(result: VariantResult, control: str) -> dict[str, Any]:
    conversion, value = result.conversion, result.value
    low, high = result.rate_interval or (None, None)
    value_low, value_high = result.mean_value_interval or (None, None)
    base, own = result.compared or (None, None)
    return {
        "exposed": result.counts.exposures, "converted": result.counts.conversions,
        # where the variant was compared with the control (both shown): its visitors there,
        # and the control's rate there, the baseline of its uplift
        "compared_exposed": own.exposures if own is not None else None,
        "control_rate": base.conversions / base.exposures
        if base is not None and base.exposures else None,
        "value_sum": result.counts.value_sum,
        "rate": result.rate, "rate_low": low, "rate_high": high,
        **_comparison_json(conversion, ""),
        "mean_value": result.mean_value, "mean_value_low": value_low,
        "mean_value_high": value_high,
        **_comparison_json(value, "value_"),
        # the arms (the control, the variant) with too few conversions where the two were
        # compared to read the comparison as a verdict yet; null for the control
        "too_few_conversions": None if base is None or own is None else [
            name for name, counts in ((control, base), (result.name, own))
            if counts.exposures * _rarer_share(base, own) < FEW_CONVERSIONS],
    }


def _rarer_share(a: Counts, b: Counts) -> float:
    """Of both arms' visitors together, the share of those who converted or of those who
    did not, whichever is smaller."""
    exposed = a.exposures + b.exposures
    rate = (a.conversions + b.conversions) / exposed if exposed else 0.0
    return min(rate, 1.0 - rate)


def _comparison_json(comparison: Comparison | None, prefix: str) -> dict[str, float | None]:
    fields = ("difference", "uplift", "uplift_low", "uplift_high", "p_value", "sequential_low",
              "sequential_high", "sequential_p_value", "chance_to_beat_control", "risk")
    return {prefix + name: None if comparison is None else getattr(comparison, name)
            for name in fields}
