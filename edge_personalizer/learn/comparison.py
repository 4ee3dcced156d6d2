"""A variant against the control on one metric: pure functions of the two's moments.

On the difference of the two means (what stays sound when a starved control's rate is near
0, where the relative uplift's delta-method error, gbstats', blows up and hides a plain
win):

- a two-sided p-value (Welch's t, unpooled); the uplift (relative, as gbstats gives it) with
  a fixed-horizon 95% interval by Fieller's theorem, which leaves out 0 exactly when p < 0.05
  and has no upper end when the control's own mean is not clearly above 0;
- an always-valid p-value and interval (the normal-mixture boundary of Howard et al. 2021
  that gbstats uses, tuning 5000), the interval inverted the same way: valid however often
  someone looks, so a marketer may check every day without inflating false wins;
- the Bayesian chance to beat the control and the risk (expected loss, on the metric's own
  scale, if the variant is chosen), from the normal posterior of a flat prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def scipy_stats() -> Any:
    """scipy.stats, imported when numbers are first worked out: every worker would pay
    ~85 MB and a second of startup for it, and most never compute results."""
    import scipy.stats  # type: ignore[import-untyped]  # no stubs shipped

    return scipy.stats


ALPHA = 0.05                  # 95% intervals
SEQUENTIAL_TUNING = 5000.0    # gbstats' default: the sample size the boundary is tightest at


@dataclass(frozen=True)
class Moments:
    """One metric of one variant: the mean per exposed visitor, its variance, the visitors."""

    mean: float
    variance: float
    n: int


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
    together = combined_variance(control, variant)
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
                         float(scipy_stats().t.ppf(1 - alpha / 2, dof)))
    # the always-valid boundary, in standard errors of the difference
    seq_low, seq_high = _fieller(control.mean, variant.mean, vc, vv,
                                 sequential_halfwidth(se * se * n, n, rho, alpha) / se)
    return Comparison(
        difference, difference / control.mean if control.mean else None, low, high,
        p_value=float(2 * scipy_stats().t.sf(abs(difference) / se, dof)),
        sequential_low=seq_low, sequential_high=seq_high,
        sequential_p_value=_sequential_p_value(difference, se, n, rho),
        chance_to_beat_control=float(scipy_stats().norm.sf(0, difference, se)),
        risk=expected_loss(difference, se))


def combined_variance(a: Moments, b: Moments) -> float:
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
    return float(sd * scipy_stats().norm.pdf(z) - mean * scipy_stats().norm.cdf(-z))
