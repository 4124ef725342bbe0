"""The chi-square distribution (survival function and quantiles) with torch only.

The survival function is the regularized upper incomplete gamma function, P(X > x) =
Q(dof / 2, x / 2) (`torch.special.gammaincc`); quantiles invert the CDF by bisection in float64,
which is exact to the bisection tolerance for any real dof > 0 (no scipy needed).
"""

from __future__ import annotations

import math

import torch


def chi2_sf(x: float, dof: float) -> float:
    """P(X > x) for X ~ chi-square(dof)."""
    if not dof > 0:
        raise ValueError(f"dof must be > 0, got {dof!r}")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    a = torch.tensor(dof / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(a, torch.tensor(x / 2, dtype=torch.float64)))


def chi2_ppf(p: float, dof: float, tol: float = 1e-12) -> float:
    """The p-quantile of chi-square(dof): the x with P(X <= x) = p, for 0 < p < 1."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not dof > 0:
        raise ValueError(f"dof must be > 0, got {dof!r}")
    a = torch.tensor(dof / 2, dtype=torch.float64)

    def cdf(x: float) -> float:
        return float(torch.special.gammainc(a, torch.tensor(x / 2, dtype=torch.float64)))

    lo, hi = 0.0, max(1.0, dof)
    while cdf(hi) < p:  # bracket: the quantile lies in [lo, hi]
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= tol * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def variance_interval(
    estimate: float, variance_of_estimate: float, level: float = 0.95
) -> tuple[float, float]:
    """A confidence interval for a positive variance-like quantity from its estimate T and the
    estimated variance of T, by matching T to a scaled chi-square (Satterthwaite):

        nu = 2 T^2 / Var(T),   interval = (nu T / chi2_nu(1 - a/2), nu T / chi2_nu(a/2)).

    It stays positive and is skewed upwards like the sampling distribution of a variance. A
    zero estimate or variance of the estimate gives the point (T, T); an unknown variance gives
    (nan, nan).
    """
    if estimate == 0:  # every replica identical (a deterministic estimator): nothing to bound
        return (0.0, 0.0)
    if not math.isfinite(variance_of_estimate) or not math.isfinite(estimate):
        return (math.nan, math.nan)
    if variance_of_estimate <= 0 or estimate < 0:
        return (estimate, estimate)
    dof = 2 * estimate**2 / variance_of_estimate
    alpha = 1 - level
    return (
        dof * estimate / chi2_ppf(1 - alpha / 2, dof),
        dof * estimate / chi2_ppf(alpha / 2, dof),
    )


__all__ = ["chi2_ppf", "chi2_sf", "variance_interval"]
