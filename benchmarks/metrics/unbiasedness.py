"""The calibrated unbiasedness test: the error of each replica projected on fixed directions, and
a skewness-corrected t-test (Hall 1992) per direction, Bonferroni across directions.

Directions: unit vectors fixed before any estimate is seen, the exact gradient's direction
(left out when the exact gradient is zero) and a standard-normal vector from a generator with a
fixed seed. For a direction d, y_m = d . (g_m - exact) are M i.i.d. scalars with mean d . bias.

Why not a per-coordinate z-test: at the M a benchmark can afford, single coordinates of
score-function gradients are far from normal (kurtosis in the hundreds, rare categories never
drawn), and the maximum of thousands of such z's rejects unbiased estimators almost always.
Why not a plain t-test of the projections (or of batch means of them): gradient estimates are
strongly skewed (the Gaussian toy's score-function gradient w.r.t. log sigma has skewness
about -11), and a sample that misses the long tail has its mean shifted and its spread
shrunk together, so the t statistic is skewed; measured at alpha = 0.01 and M = 128 on that
coordinate: 9% rejections for the t-test, 7.6% for 16 batch means. Hall's transformation
removes the O(M^-1/2) skewness term of the studentized mean: with theta = mean(y) / sd(y) and
gamma = the sample skewness of y,

    T = sqrt(M) (theta + gamma theta^2 / 3 + gamma^2 theta^3 / 27 + gamma / (6 M)),

a monotone map of theta (its derivative is (1 + gamma theta / 3)^2), compared with Student t
with M - 1 degrees of freedom, two-sided (measured 1.4% on the same coordinate, and at most
its level on light tails; tests/benchmarks/metrics/test_unbiasedness.py measures the cases the
harness meets). The directions are combined by Bonferroni, p = min(1, K min_k p_k), valid under any
dependence between them.

Memory: the projections, M x K float64 scalars (64 KiB for M = 4096), not M x P.

Rounding: a deterministic estimator (exact enumeration) has zero spread and an error at the
level of float rounding. Each direction's mean error is shrunk towards zero by a rounding
allowance first, tolerance = ROUNDING x eps x max(||exact||, ||mean||) with eps that of the
estimates' dtype, |mean(y)| -> max(0, |mean(y)| - tolerance): equality up to
rounding gives p = 1 whatever the spread. An error beyond rounding with zero spread (every
replica the same value) gives NaN, "not tested": the t statistic is undefined, and an unbiased
estimator with a rare outcome (DisARM near p = 1/2, where both draws almost always differ) shows
exactly that when none of its M replicas drew the rare outcome.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ALPHA = 0.01  # the level at which reports call an estimator biased
ROUNDING = 1e3  # rounding allowance in units of eps x the gradient's norm
DIRECTION_SEED = 20_240_611  # the fixed random direction's generator seed


def student_t_sf2(t: float, dof: int) -> float:
    """P(|T| > t) for T ~ Student t with an integer number of degrees of freedom >= 1.

    Closed-form finite series (Abramowitz and Stegun 26.7.3-4) with theta = atan(t / sqrt(dof)):
    A = P(|T| <= t) = 2 theta / pi + (2 / pi) sin(theta) sum_{j} a_j cos^(2j+1)(theta) for odd
    dof (a_0 = 1, a_j = a_{j-1} 2j / (2j + 1), j < (dof - 1) / 2), and sin(theta) sum_{j} b_j
    cos^(2j)(theta) for even dof (b_0 = 1, b_j = b_{j-1} (2j - 1) / (2j), j < dof / 2).
    """
    if isinstance(dof, bool) or not isinstance(dof, int) or dof < 1:
        raise ValueError(f"dof must be an integer >= 1, got {dof!r}")
    t = abs(float(t))
    if math.isinf(t):
        return 0.0
    theta = math.atan(t / math.sqrt(dof))
    s, c = math.sin(theta), math.cos(theta)
    total = 0.0
    if dof % 2 == 1:
        term = c
        for j in range((dof - 1) // 2):
            if j:
                term *= c * c * (2 * j) / (2 * j + 1)
            total += term
        inside = 2 / math.pi * (theta + s * total)
    else:
        term = 1.0
        for j in range(dof // 2):
            if j:
                term *= c * c * (2 * j - 1) / (2 * j)
            total += term
        inside = s * total
    return min(1.0, max(0.0, 1.0 - inside))


def hall_p_value(y: Tensor, tolerance: float = 0.0, offset_variance: float = 0.0) -> float:
    """Two-sided p-value of H0: E[y] = 0 from the M values y by Hall's skewness-corrected t
    (see the module); NaN when M < 3 or when every value is equal and beyond `tolerance`, the
    rounding allowance on mean(y).

    offset_variance: the variance of an independent error in the value y is compared with (a
    reference gradient's Monte Carlo error along the direction): Var(mean(y)) becomes
    sd^2 / M + offset_variance, so sd is widened to sqrt(sd^2 + M offset_variance) and the
    skewness, the third cumulant over the variance^1.5, shrinks by (sd / sd_wide)^3 (the
    reference, a mean of many draws, is taken as normal). Student t keeps M - 1 degrees of
    freedom, the fewer of the two parts' (conservative when the reference dominates)."""
    y = y.to(torch.float64)
    m = y.numel()
    if m < 3:
        return math.nan
    centre = float(y.mean())
    excess = max(0.0, abs(centre) - tolerance)
    if excess == 0:
        return 1.0
    sd = float(y.std())
    wide = math.sqrt(sd**2 + m * offset_variance)
    if wide == 0:  # every replica equal and off by more than rounding: not testable
        return math.nan
    gamma = float(((y - centre) ** 3).mean()) / wide**3
    theta = math.copysign(excess, centre) / wide
    t = math.sqrt(m) * (theta + gamma * theta**2 / 3 + gamma**2 * theta**3 / 27
                        + gamma / (6 * m))
    return student_t_sf2(t, m - 1)


def fixed_directions(exact: Tensor) -> Tensor:
    """The unit directions (K, P) of the test, fixed before any estimate is drawn: exact /
    ||exact|| (left out when the exact gradient is zero) and a standard-normal vector of a
    generator with a fixed seed, normalised."""
    exact = exact.to(torch.float64)
    generator = torch.Generator().manual_seed(DIRECTION_SEED)
    random = torch.randn(exact.numel(), dtype=torch.float64, generator=generator)
    rows = [random / random.norm()]
    norm = float(exact.norm())
    if norm > 0:
        rows.insert(0, exact.cpu() / norm)
    return torch.stack(rows).to(exact.device)


class UnbiasednessTest:
    """Streaming projections d_k . (g_m - exact) of the estimates, and the test's p-value.

    eps: the machine epsilon of the dtype the estimates were computed in (the rounding
    allowance scales with it).
    directions, offset_variance: for a reference gradient in place of the exact one (see
    `reference.ReferenceGradient`): its directions, fixed by draws independent of its value,
    and the variance (K,) of its value along each (folded into each direction's test)."""

    def __init__(self, exact: Tensor, eps: float, directions: Tensor | None = None,
                 offset_variance: Tensor | None = None) -> None:
        self.exact = exact.to(torch.float64)
        self.eps = float(eps)
        self.directions = (fixed_directions(self.exact) if directions is None
                           else directions.to(self.exact))  # (K, P)
        self.offset = self.directions @ self.exact  # d_k . exact
        self.offset_variance = ([0.0] * self.directions.shape[0] if offset_variance is None
                                else [float(v) for v in offset_variance])
        self.projections: list[Tensor] = []
        self.total = torch.zeros_like(self.exact)  # sum of the estimates, for ||mean||
        self.count = 0

    def update(self, chunk: Tensor) -> None:
        """Add the rows (n, P) of a chunk of estimates (not modified)."""
        if chunk.shape[0]:
            rows = chunk.to(torch.float64)
            self.projections.append((rows @ self.directions.T - self.offset).cpu())
            self.total += rows.sum(0)
            self.count += rows.shape[0]

    def tolerance(self) -> float:
        mean_norm = float(self.total.norm()) / max(self.count, 1)
        return ROUNDING * self.eps * max(float(self.exact.norm()), mean_norm)

    def p_value(self) -> float:
        """min(1, K min_k p_k) over the K directions that can be tested; NaN with fewer than
        3 replicas or when none can (every replica equal, beyond rounding)."""
        if not self.projections:
            return math.nan
        y = torch.cat(self.projections)  # (M, K)
        tolerance = self.tolerance()
        tested = [p for k in range(y.shape[1])
                  if not math.isnan(p := hall_p_value(y[:, k], tolerance,
                                                      self.offset_variance[k]))]
        return min(1.0, y.shape[1] * min(tested)) if tested else math.nan


__all__ = [
    "ALPHA", "ROUNDING", "UnbiasednessTest", "fixed_directions", "hall_p_value", "student_t_sf2",
]
