"""Gradient statistics at a frozen checkpoint: variance, SNR and bias of M independent gradient
estimates on one fixed batch, and the calibrated unbiasedness test.

    stats = gradient_stats(objective, estimator, x, replicas=1000, num_samples=4, wrt="encoder")
    stats.total_variance, stats.snr_norm, stats.squared_bias, stats.p_value
    auto = gradient_stats(objective, estimator, x, replicas="auto")  # M until a 5% RSE

`gradient_stats` draws the estimates with the gradient engine (`engine`: what a replica is, its
noise, the "vectorized" and "loop" methods) and reduces them chunk by chunk into float64 moments
(`StreamingMoments`) and the unbiasedness test's projections (`UnbiasednessTest`, M x 2
scalars), so memory is O(chunk_size x P), not O(M x P). `GradientStats` holds the result
(`GradientStats.method` says which method ran); `AutoReplicas` says when replicas="auto" stops
drawing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from estibench.benchmarks.objectives import Objective
from estibench.estimators import Estimator

from .chisquare import variance_interval
from .engine import (
    METHODS,
    WRT,
    Method,
    Target,
    Wrt,
    check_noise,
    common_noise,
    compute_exact_gradient,
    drawn_blocks,
    estimates,
    loss_function,
    measuring,
)
from .errors import MetricsError, NonFiniteGradientError, choice, integer
from .reference import ReferenceGradient
from .streaming import StreamingMoments
from .unbiasedness import UnbiasednessTest


@dataclass(frozen=True, eq=False)
class GradientStats:
    """Statistics of M gradient estimates of P coordinates (tensors are float64 on the CPU).

    mean, variance: per coordinate, shape (P,); variance is unbiased (ddof = 1).
    total_variance: trace of the covariance, sum of `variance`; log10_total_variance its log10.
    snr_mean: mean over coordinates of |mean| / std, coordinates with std = 0 left out (NaN when
        every coordinate has std = 0).
    snr_norm: ||mean|| / sqrt(total_variance), the SNR of Rainforth et al. (2018) (inf for a
        deterministic estimator with a non-zero mean).
    total_variance_ci: 95% interval for the total variance T: T matched to a scaled chi-square
        with effective degrees of freedom nu = 2 T^2 / Var(T) (Satterthwaite), where Var(T) is
        estimated from the M - 1 per-replica squared deviations (Welford increments, see
        `StreamingMoments`), whose mean is exactly T. Why not the Gaussian chi-square with
        M - 1 (or (M - 1) tr(S)^2 / tr(S^2)) degrees of freedom: score-function gradients are
        heavy-tailed, and the Gaussian count, blind to the fourth moments, gives intervals
        far too narrow; the per-replica terms carry those moments and stream as two scalars.
        Coverage is close to nominal for light tails; with heavy tails and small M the
        estimate and its error are correlated (a sample that misses the tail underestimates
        both), so coverage falls short: measured 92% for the pathwise Gaussian toy and 80%
        (M = 200) to 89% (M = 1000) for its score-function gradient (kurtosis ~ 270).
        (nan, nan) when M < 3; (0, 0) for a deterministic estimator.

    Where the exact gradient is known, or a reference gradient is given (otherwise None):
    bias_against: "exact", or the reference's label ("reference: rloo, S = 8, M = 3072");
    exact: the exact gradient (P,), or the reference's value; bias_norm = ||mean - exact||;
        relative_bias = bias_norm / ||exact||; cosine = cos(mean, exact);
    squared_bias: max(0, ||mean - exact||^2 - noise_floor): the squared bias with the Monte
        Carlo error of the mean removed (||mean - exact||^2 alone is about noise_floor even
        for an unbiased estimator); 0 means no bias above the noise;
    noise_floor: total_variance / M, the expected ||mean - exact||^2 of an unbiased estimator
        (the Monte Carlo error of the mean of M);
    squared_bias_se: a standard error of squared_bias. For a mean of M estimates that is
        roughly normal, mean - exact ~ N(b, Sigma / M), Var(||mean - exact||^2) =
        4 b' Sigma b / M + 2 tr(Sigma^2) / M^2; it is estimated with Sigma's diagonal (the
        per-coordinate variances; only the diagonal is streamed) and b = mean - exact. The
        diagonal misses the off-diagonal terms of tr(Sigma^2) and b' Sigma b, so for strongly
        correlated coordinates the SE is too small; read it as an order of magnitude;
    mse: squared_bias + total_variance, the mean squared error of ONE estimate (the
        squared bias plus the variance of a single replica, not of the mean of M);
    p_value: the calibrated unbiasedness test (`unbiasedness`): the error g_m - exact of
        each replica projected on two directions fixed before looking (the exact gradient's
        direction and a fixed random one), Hall's skewness-corrected t-test of each
        projection's mean (Student t, M - 1 degrees of freedom), Bonferroni over the two.
        Its false-positive rate is measured at or near its level on heavy-tailed, rare-event
        and trained-VAE cases (tests/benchmarks/metrics/test_unbiasedness.py), where the
        per-coordinate z-test it replaces rejected unbiased estimators in up to 100% of seeds;
        errors within float rounding count as zero. A bias orthogonal to both directions goes
        undetected (the test has power where it looks). NaN when M < 3.
    Against a reference gradient, its own Monte Carlo error is folded in: noise_floor adds
    its tr(Sigma_ref) / M_ref, squared_bias_se uses Sigma / M + Sigma_ref / M_ref, and the
    test widens each direction's spread by the reference's variance along it (see
    `unbiasedness.hall_p_value`).

    Precision of the total variance (always set):
    total_variance_rse: sqrt(Var(T)) / T, the relative standard error of total_variance from
        the Satterthwaite machinery above (0 for a deterministic estimator, NaN when M < 3);
    precision_target, precision_met: with replicas="auto", the target RSE and whether it was
        reached before the cap on M (None for a fixed M).
    """

    estimator: str
    objective: str
    wrt: str
    method: str
    replicas: int
    num_samples: int
    num_params: int
    mean: Tensor
    variance: Tensor
    total_variance: float
    log10_total_variance: float
    snr_mean: float
    snr_norm: float
    total_variance_ci: tuple[float, float]
    exact: Tensor | None = None
    bias_against: str | None = None
    bias_norm: float | None = None
    relative_bias: float | None = None
    cosine: float | None = None
    squared_bias: float | None = None
    squared_bias_se: float | None = None
    noise_floor: float | None = None
    mse: float | None = None
    p_value: float | None = None
    total_variance_rse: float = math.nan
    precision_target: float | None = None
    precision_met: bool | None = None

    def as_dict(self) -> dict[str, float]:
        """The scalar statistics as flat floats (the vectors and the None fields left out)."""
        out: dict[str, float] = {
            "total_variance": self.total_variance,
            "log10_total_variance": self.log10_total_variance,
            "total_variance_ci_lo": self.total_variance_ci[0],
            "total_variance_ci_hi": self.total_variance_ci[1],
            "total_variance_rse": self.total_variance_rse,
            "snr_mean": self.snr_mean,
            "snr_norm": self.snr_norm,
            "mean_norm": float(self.mean.norm()),
            "replicas": float(self.replicas),
            "num_params": float(self.num_params),
        }
        for name in ("bias_norm", "relative_bias", "cosine", "squared_bias", "squared_bias_se",
                     "noise_floor", "mse", "p_value", "precision_target",
                     "precision_met"):
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value)
        return out


@dataclass(frozen=True)
class AutoReplicas:
    """replicas="auto": draw chunks until the total variance's relative standard error is at
    most `target` (with at least `minimum` replicas) or `maximum` replicas are drawn."""

    target: float = 0.05
    minimum: int = 128
    maximum: int = 4096

    def __post_init__(self) -> None:
        if not (isinstance(self.target, (int, float)) and 0 < self.target < 1):
            raise MetricsError(f"target (relative standard error) must be in (0, 1), got "
                               f"{self.target!r}")
        integer("minimum replicas", self.minimum, 3)
        integer("maximum replicas", self.maximum, self.minimum)


def gradient_stats(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None,
    replicas: int | Literal["auto"] | AutoReplicas = 1000,
    num_samples: int = 1,
    wrt: Wrt = "distribution",
    method: Method = "vectorized",
    seed: int = 0,
    chunk_size: int = 64,
    noise: Tensor | None = None,
    exact: bool = True,
    reference: ReferenceGradient | None = None,
) -> GradientStats:
    """Draw M = `replicas` gradient estimates on the fixed batch x and summarise them.

    objective, estimator: the problem and the estimator, measured as they are (a frozen
        checkpoint). Both are put in eval mode during the measurement (an EMA baseline then uses
        its current value and is not updated) and their modes restored afterwards; no gradient
        is left on any parameter.
    x: the batch (B, D), or None for toys.
    replicas: M, or "auto" / `AutoReplicas(target, minimum, maximum)`: chunks of `chunk_size`
        replicas are drawn until `total_variance_rse <= target` (checked after each chunk once
        `minimum` replicas are in) or `maximum` replicas are drawn. The chunks' noise comes
        from one generator seeded with `seed`, so M and every estimate are a function of the
        seed. Heavy tails make the RSE estimate itself low when the tail has not been seen yet
        (see total_variance_ci), so the minimum matters.
    wrt: "distribution" (the tensor `objective.posterior_params(x)`, detached, as the leaf),
        "encoder" or "decoder" (the parameters named in `objective.parameter_groups()`).
    method: "vectorized" (torch.func, the fast path) or "loop" (the oracle).
    seed: seeds the noise when `noise` is None (see `common_noise`).
    chunk_size: replicas per vectorized pass (and per reduction): peak memory ~ chunk_size x P.
    noise: pre-drawn noise (M, *noise_shape) for common random numbers (fixed M only).
    exact: compute the bias fields and the unbiasedness test when `objective.has_exact`.
    reference: measure the bias against this reference gradient instead (see `reference`);
        it must have been drawn at the same checkpoint, batch and wrt.

    Raises `MetricsError` (a ValueError) for bad arguments and `NonFiniteGradientError` when
    some estimates contain NaN or Inf.
    """
    choice("wrt", wrt, WRT)
    choice("method", method, METHODS)
    integer("num_samples", num_samples, 1)
    integer("chunk_size", chunk_size, 1)
    streams = estimator.noise_streams
    auto = _auto(replicas)
    if auto is None:
        integer("replicas", replicas, 2)
        if noise is None:
            noise = common_noise(objective, x, int(replicas), num_samples, seed,  # type: ignore[arg-type]
                                 streams)
        else:
            check_noise(objective, x, noise, int(replicas), num_samples,  # type: ignore[arg-type]
                         streams)
        blocks: Iterable[Tensor] = noise.split(chunk_size)
    else:
        if noise is not None:
            raise MetricsError("noise= needs a fixed number of replicas, got replicas='auto'")
        blocks = drawn_blocks(objective, x, num_samples, seed, chunk_size, auto.maximum,
                               streams)

    with torch.no_grad():  # parts sized by q (a baseline network) are built outside vmap
        estimator.prepare(objective.posterior(x))
    with measuring(objective, estimator):
        target = Target.of(objective, x, wrt)
        loss = loss_function(objective, estimator, x, num_samples, target)
        if reference is not None:
            if reference.mean.numel() != target.num_params:
                raise MetricsError(
                    f"reference gradient has {reference.mean.numel()} coordinates; wrt={wrt!r} "
                    f"has {target.num_params}")
            exact_gradient: Tensor | None = reference.mean.to(target.values[0].device)
        elif exact and objective.has_exact:
            exact_gradient = compute_exact_gradient(objective, x, target)
        else:
            exact_gradient = None
        chunks, method = estimates(loss, target, blocks, method, seed)
        moments = StreamingMoments()
        eps = torch.finfo(target.values[0].dtype).eps
        if exact_gradient is None:
            test = None
        elif reference is None:
            test = UnbiasednessTest(exact_gradient, eps)
        else:
            test = UnbiasednessTest(exact_gradient, eps, reference.directions,
                                    reference.projection_variance / reference.replicas)
        non_finite = 0
        for chunk in chunks:
            # A row with a NaN or Inf has a non-finite float64 sum: one cheap pass instead of
            # an elementwise isfinite over the whole (n, P) chunk.
            non_finite += int((~torch.isfinite(chunk.sum(1))).sum())
            if non_finite:
                continue
            if test is not None:
                test.update(chunk)
            moments.update(chunk)  # overwrites a float64 chunk: the test reads it first
            if auto is not None and moments.count >= auto.minimum and (
                _relative_se(moments) <= auto.target
            ):
                break
        if non_finite:
            raise NonFiniteGradientError(
                f"estimator '{estimator.name}' on objective '{objective.name}' (wrt={wrt!r}, "
                f"num_samples={num_samples}): {non_finite} of {moments.count + non_finite} "
                f"gradient estimates contain NaN or Inf"
            )
    return _summarise(
        moments,
        exact_gradient,
        test,
        auto,
        reference,
        estimator=estimator.name,
        objective=objective.name,
        wrt=wrt,
        method=method,
        num_samples=num_samples,
    )


def _auto(replicas: object) -> AutoReplicas | None:
    if isinstance(replicas, AutoReplicas):
        return replicas
    if replicas == "auto":
        return AutoReplicas()
    if isinstance(replicas, str):
        raise MetricsError(f"replicas must be an integer >= 2 or 'auto', got {replicas!r}")
    return None


def _relative_se(moments: StreamingMoments) -> float:
    """sqrt(Var(T)) / T for the total variance T; 0 for a deterministic estimator."""
    total = float(moments.variance().sum())
    spread = moments.variance_of_total()
    if total == 0:
        return 0.0
    return math.sqrt(spread) / total if math.isfinite(spread) else math.nan


def _summarise(
    moments: StreamingMoments,
    exact: Tensor | None,
    test: UnbiasednessTest | None,
    auto: AutoReplicas | None,
    reference: ReferenceGradient | None,
    *,
    estimator: str,
    objective: str,
    wrt: str,
    method: str,
    num_samples: int,
) -> GradientStats:
    assert moments.mean is not None
    replicas = moments.count
    mean = moments.mean.cpu()
    variance = moments.variance().cpu()
    std = variance.sqrt()
    total_variance = float(variance.sum())
    mean_norm = float(mean.norm())
    spread = std > 0
    snr_mean = float((mean[spread].abs() / std[spread]).mean()) if bool(spread.any()) else math.nan
    if total_variance > 0:
        snr_norm = mean_norm / math.sqrt(total_variance)
    else:
        snr_norm = math.inf if mean_norm > 0 else math.nan
    rse = _relative_se(moments)
    fields: dict[str, object] = {}
    if exact is not None:
        assert test is not None
        exact64 = exact.detach().to(torch.float64).cpu()
        diff = mean - exact64
        bias_norm = float(diff.norm())
        exact_norm = float(exact64.norm())
        # Var(mean - exact) ~ diag(variance) / M (+ the reference's own, diagonal too).
        spread = variance / replicas
        if reference is not None:
            spread = spread + reference.variance.to(spread) / reference.replicas
        floor = float(spread.sum())
        squared_bias = max(0.0, bias_norm**2 - floor)
        # Var ||mean - exact||^2 = 4 b' S b + 2 tr(S^2) with S = Var(mean - exact).
        se = math.sqrt(float(4 * (diff**2 * spread).sum() + 2 * (spread**2).sum()))
        fields = {
            "exact": exact64,
            "bias_against": "exact" if reference is None else reference.label,
            "bias_norm": bias_norm,
            "relative_bias": bias_norm / exact_norm if exact_norm > 0 else math.nan,
            "cosine": float(mean @ exact64) / (mean_norm * exact_norm)
            if mean_norm > 0 and exact_norm > 0
            else math.nan,
            "squared_bias": squared_bias,
            "squared_bias_se": se,
            "noise_floor": floor,
            "mse": squared_bias + total_variance,
            "p_value": test.p_value(),
        }
    if auto is not None:
        fields["precision_target"] = auto.target
        fields["precision_met"] = bool(rse <= auto.target)
    return GradientStats(
        estimator=estimator,
        objective=objective,
        wrt=wrt,
        method=method,
        replicas=replicas,
        num_samples=num_samples,
        num_params=mean.numel(),
        mean=mean,
        variance=variance,
        total_variance=total_variance,
        log10_total_variance=math.log10(total_variance) if total_variance > 0 else -math.inf,
        snr_mean=snr_mean,
        snr_norm=snr_norm,
        total_variance_ci=variance_interval(total_variance, moments.variance_of_total()),
        total_variance_rse=rse,
        **fields,  # type: ignore[arg-type]
    )


__all__ = ["AutoReplicas", "GradientStats", "gradient_stats"]
