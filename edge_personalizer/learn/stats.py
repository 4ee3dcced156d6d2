"""The numbers marketers decide from, computed from counters: pure functions, never on a page's way.

Per variant: the conversion rate with a 95% Wilson interval, and the mean value per exposed
visitor with a t interval. Against the control, on the difference of the two means (what
stays sound when a starved control's rate is near 0, where the relative uplift's delta-method
error, gbstats', blows up and hides a plain win):

- a two-sided p-value (Welch's t, unpooled); the uplift (relative, as gbstats gives it) with
  a fixed-horizon 95% interval by Fieller's theorem, which leaves out 0 exactly when p < 0.05
  and has no upper end when the control's own mean is not clearly above 0;
- an always-valid p-value and interval (the normal-mixture boundary of Howard et al. 2021
  that gbstats uses, tuning 5000), the interval inverted the same way: valid however often
  someone looks, so a marketer may check every day without inflating false wins;
- the Bayesian chance to beat the control and the risk (expected loss, on the metric's own
  scale, if the variant is chosen), from the normal posterior of a flat prior.

Sample-ratio mismatch: a chi-square test of exposures against the weights, flagged at
p < 0.001 (a broken split makes every other number meaningless).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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


def _scipy() -> Any:
    """scipy.stats, imported when numbers are first worked out: every worker would pay
    ~85 MB and a second of startup for it, and most never compute results."""
    import scipy.stats  # type: ignore[import-untyped]  # no stubs shipped

    return scipy.stats


ALPHA = 0.05                  # 95% intervals
SRM_THRESHOLD = 0.001
SEQUENTIAL_TUNING = 5000.0    # gbstats' default: the sample size the boundary is tightest at
# Conversions an arm needs before a comparison is read as a verdict: under 10 the normal
# approximation the intervals rest on does not hold (the textbook np >= 10), and an
# interval may miss a plain difference (4 of 76 against 119 of 525) or find a false one.
# The numbers stay gbstats'; results name the arms short of it, as its minimum sample size.
FEW_CONVERSIONS = 10


@dataclass(frozen=True)
class Moments:
    """One metric of one variant: the mean per exposed visitor, its variance, the visitors."""

    mean: float
    variance: float
    n: int


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
    z = float(_scipy().norm.ppf(1 - alpha / 2))
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
    quantile = float(_scipy().t.ppf(1 - alpha / 2, moments.n - 1))
    half = quantile * math.sqrt(moments.variance / moments.n)
    return max(0.0, moments.mean - half), moments.mean + half


@dataclass(frozen=True)
class Comparison:
    """A variant against the control on one metric.

    `difference` is the variant's mean less the control's on the metric's own scale (a
    rate: 0.02 = two percentage points; a value: per exposed visitor): what the p-values
    and the chance to beat are worked out on. `uplift` is relative (0.1 = +10%), None when
    the control's mean is 0 (no percentage of nothing). Its intervals are Fieller's for the
    ratio of the two means, so one leaves out 0 exactly when the p-value beside it is
    under the level; a `*_high` of None means no upper end: the control's own mean is not
    clearly above 0, so the variant may be any number of times better. `risk` is the
    expected loss on the difference's scale, not relative: what choosing the variant
    costs per visitor where it is the worse, weighted by how likely that is."""

    difference: float
    uplift: float | None
    uplift_low: float
    uplift_high: float | None
    p_value: float
    sequential_low: float
    sequential_high: float | None
    sequential_p_value: float
    chance_to_beat_control: float
    risk: float


def compare(control: Moments, variant: Moments, *, alpha: float = ALPHA,
            tuning: float = SEQUENTIAL_TUNING) -> Comparison | None:
    """`variant` against `control` (means never negative: rates, values per visitor).

    Tested on the difference of the means with Welch's unpooled standard error: unlike
    the relative uplift's (the delta method's, which divides by the control's mean), it
    stays sound when a starved control's rate is near 0. An arm without spread (nobody,
    or everybody, converted) takes the two arms' spread together, as "no difference" has
    it: its own 0 would make a handful of visitors look certain. None under two visitors
    in an arm, or when every visitor of both is alike (nothing to test)."""
    if min(control.n, variant.n) < 2:
        return None
    together = _combined_variance(control, variant)
    if together <= 0:
        return None
    control, variant = (m if m.variance > 0 else Moments(m.mean, together, m.n)
                        for m in (control, variant))
    difference = variant.mean - control.mean
    vc, vv = control.variance / control.n, variant.variance / variant.n
    se = math.sqrt(vc + vv)
    dof = _welch_dof(control, variant)
    n = control.n + variant.n
    rho = _sequential_rho(alpha, tuning)
    low, high = _fieller(control.mean, variant.mean, vc, vv,
                         float(_scipy().t.ppf(1 - alpha / 2, dof)))
    # the always-valid boundary, in standard errors of the difference
    seq_low, seq_high = _fieller(control.mean, variant.mean, vc, vv,
                                 sequential_halfwidth(se * se * n, n, rho, alpha) / se)
    return Comparison(
        difference, difference / control.mean if control.mean else None, low, high,
        p_value=float(2 * _scipy().t.sf(abs(difference) / se, dof)),
        sequential_low=seq_low, sequential_high=seq_high,
        sequential_p_value=_sequential_p_value(difference, se, n, rho),
        chance_to_beat_control=float(_scipy().norm.sf(0, difference, se)),
        risk=expected_loss(difference, se))


def _combined_variance(a: Moments, b: Moments) -> float:
    """The variance of both arms' visitors together (a rate's: p(1-p) over both)."""
    n = a.n + b.n
    mean = (a.n * a.mean + b.n * b.mean) / n
    squares = a.n * (a.variance + a.mean ** 2) + b.n * (b.variance + b.mean ** 2)
    return max(squares / n - mean * mean, 0.0)


def _fieller(mc: float, mv: float, vc: float, vv: float, q: float) -> tuple[float, float | None]:
    """Fieller's interval of the uplift: the ratios r of the means with (mv - r * mc)^2 at
    most q^2 * (vv + r^2 * vc) (vc, vv: the squared standard errors of the means), so
    r = 1 is left out exactly when the difference is over q standard errors from 0. The
    means never negative, nor is r (-100% at the lowest). No upper end (None) when the
    control's mean is not over q standard errors above 0."""
    a, b, c = mc * mc - q * q * vc, mc * mv, mv * mv - q * q * vv
    root = math.sqrt(max(b * b - a * c, 0.0))
    if a > 0:
        return max((b - root) / a, 0.0) - 1, (b + root) / a - 1
    # The quadratic opens downward (or is a line): every ratio above the larger root is in.
    if a == 0:
        low = c / (2 * b) if b > 0 else 0.0
    else:
        low = 0.0 if b * b <= a * c else (b - root) / a
    return max(low, 0.0) - 1, None


def _welch_dof(a: Moments, b: Moments) -> float:
    va, vb = a.variance / a.n, b.variance / b.n
    return (va + vb) ** 2 / (va * va / (a.n - 1) + vb * vb / (b.n - 1))


def _sequential_rho(alpha: float, tuning: float) -> float:
    # the mixture's spread that makes the boundary tightest near `tuning` visitors
    # (Waudby-Smith et al. 2023, eq. 161, as gbstats)
    log_alpha = -2 * math.log(alpha)
    return math.sqrt((log_alpha + math.log(log_alpha + 1)) / tuning)


def sequential_halfwidth(s2: float, n: int, rho: float, alpha: float = ALPHA) -> float:
    """Half the always-valid interval after `n` visitors whose per-visitor variance of the
    estimate is `s2` (Howard et al.'s normal mixture; Waudby-Smith et al. 2023, eq. 9)."""
    spread = n * rho * rho + 1
    return math.sqrt(s2 * 2 * spread * math.log(math.sqrt(spread) / alpha) / (n * rho) ** 2)


def _sequential_p_value(effect: float, se: float, n: int, rho: float) -> float:
    # 1 / the mixture's e-value: the smallest alpha whose always-valid interval excludes 0
    spread = n * rho * rho + 1
    log_e = rho * rho * (effect * effect * n / (se * se)) / (2 * spread) - 0.5 * math.log(spread)
    return 1.0 if log_e <= 0 else math.exp(-log_e)


def expected_loss(mean: float, sd: float) -> float:
    """E[max(0, -X)] for X ~ N(mean, sd²): what choosing the variant costs when it is worse,
    weighted by how likely that is (gbstats' treatment risk, in closed form), on the scale
    of X."""
    z = mean / sd
    return float(sd * _scipy().norm.pdf(z) - mean * _scipy().norm.cdf(-z))


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
    return float(_scipy().chi2.sf(statistic, len(exposed) - 1))


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
            conversion = compare(rate_moments(base), rate_moments(own), alpha=alpha)
            value = compare(value_moments_of(base), value_moments_of(own), alpha=alpha)
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
            if counts.conversions < FEW_CONVERSIONS],
    }


def _comparison_json(comparison: Comparison | None, prefix: str) -> dict[str, float | None]:
    fields = ("difference", "uplift", "uplift_low", "uplift_high", "p_value", "sequential_low",
              "sequential_high", "sequential_p_value", "chance_to_beat_control", "risk")
    return {prefix + name: None if comparison is None else getattr(comparison, name)
            for name in fields}
