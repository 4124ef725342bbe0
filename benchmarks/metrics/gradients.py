"""Gradient statistics at a frozen checkpoint: M independent estimates on one fixed batch.

    stats = gradient_stats(objective, estimator, x, replicas=1000, num_samples=4, wrt="encoder")
    stats.total_variance, stats.snr_norm, stats.relative_bias, stats.p_value

Conventions. Each replica m is one estimate g_m of the gradient of sum_b E_q[objective_b] (the
objective is maximised; `objective.estimate(x, ...).loss.sum()` is differentiated) with respect to
the parameters chosen by `wrt`, flattened into one vector of P coordinates (in the order of
`parameter_groups()`, each tensor row-major). Replica m consumes noise[m] of one pre-drawn noise
tensor of shape (M, *noise_shape(q, S)), so results are a function of `seed` (or of `noise`) alone
and the two methods see the same random numbers:

- "vectorized": `torch.func.vmap(torch.func.grad(loss))` over chunks of `chunk_size` replicas
  (parameters enter through `torch.func.functional_call`); what does not depend on the noise
  (the encoder's forward pass) is computed once per chunk, not once per replica.
- "loop": the test oracle, one ordinary `.backward()` per replica on a fresh gradient.

Either way the estimates are reduced chunk by chunk into float64 moments (`StreamingMoments`),
so memory is O(chunk_size x P), not O(M x P).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from benchmarks.objectives import Objective
from estimators import Estimator, sampling

from .chisquare import chi2_sf, variance_interval
from .errors import MetricsError, NonFiniteGradientError, choice, integer
from .streaming import StreamingMoments

Wrt = Literal["distribution", "encoder", "decoder"]
Method = Literal["vectorized", "loop"]
WRT: tuple[str, ...] = ("distribution", "encoder", "decoder")
METHODS: tuple[str, ...] = ("vectorized", "loop")


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

    Where the exact gradient is known (otherwise None):
    exact: the exact gradient (P,); bias_norm = ||mean - exact||; relative_bias = bias_norm /
        ||exact||; cosine = cos(mean, exact);
    squared_bias: max(0, ||mean - exact||^2 - total_variance / M): the squared bias with the
        Monte Carlo error of the mean of M removed (||mean - exact||^2 alone is about
        total_variance / M even for an unbiased estimator); 0 means no detectable bias;
    mse: squared_bias + total_variance, the mean squared error of ONE estimate (the
        squared bias plus the variance of a single replica, not of the mean of M);
    z_max, chi2, p_value, z_dof: the z-test of unbiasedness, z_p = (mean_p - exact_p) /
        (std_p / sqrt(M)) over the z_dof coordinates with std_p > 0; z_max = max |z_p|, chi2 =
        sum z_p^2, p_value = P(chi-square(z_dof) > chi2). The chi-square reference treats the
        coordinates as independent; gradient coordinates are correlated (softmax logits sum to
        zero, network weights share inputs): for a large correlated parameter vector chi2 is
        far more spread than chi-square(z_dof) and p_value comes out too small, so read it as a
        screening statistic. p_value_max = min(1, 2 z_dof (1 - Phi(z_max))), the Bonferroni
        p-value of z_max, is valid under any correlation (conservative).
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
    bias_norm: float | None = None
    relative_bias: float | None = None
    cosine: float | None = None
    squared_bias: float | None = None
    mse: float | None = None
    z_max: float | None = None
    chi2: float | None = None
    p_value: float | None = None
    p_value_max: float | None = None
    z_dof: int | None = None

    def as_dict(self) -> dict[str, float]:
        """The scalar statistics as flat floats (the vectors and the None fields left out)."""
        out: dict[str, float] = {
            "total_variance": self.total_variance,
            "log10_total_variance": self.log10_total_variance,
            "total_variance_ci_lo": self.total_variance_ci[0],
            "total_variance_ci_hi": self.total_variance_ci[1],
            "snr_mean": self.snr_mean,
            "snr_norm": self.snr_norm,
            "replicas": float(self.replicas),
            "num_params": float(self.num_params),
        }
        for name in ("bias_norm", "relative_bias", "cosine", "squared_bias", "mse", "z_max",
                     "chi2", "p_value", "p_value_max", "z_dof"):
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value)
        return out


# --------------------------------------------------------------------------------- noise


def common_noise(
    objective: Objective,
    x: Tensor | None,
    replicas: int,
    num_samples: int = 1,
    seed: int = 0,
    streams: int = 1,
) -> Tensor:
    """Uniform base noise (M, *noise_shape(q, S, streams)) for `replicas` estimates on batch x.

    Estimators that map noise to samples the same way (reinforce, st_gumbel, straight_through
    and gumbel_softmax on a categorical latent) see the same base noise, hence the same hard
    samples: pass the result as `noise=` to several `gradient_stats` calls for paired
    comparisons (common random numbers). Drawn from a `torch.Generator` seeded with `seed` on
    the parameters' device, in their dtype. `streams` > 1 (an estimator's `noise_streams`) draws
    the further streams after the first, so stream 0 is the noise every estimator gets.
    """
    integer("replicas", replicas, 1)
    integer("num_samples", num_samples, 1)
    with torch.no_grad():
        params = objective.posterior_params(x)
        q = objective.distribution(params)
    if not sampling.supports_noise(q):
        raise MetricsError(
            f"objective '{objective.name}': its latent {sampling.describe(q)} has no noise map "
            f"(supported: Normal, Bernoulli, Categorical, OneHotCategorical), so replicas "
            f"cannot be drawn outside the estimator"
        )
    generator = torch.Generator(device=params.device).manual_seed(int(seed))
    shape = (replicas, *sampling.noise_shape(q, num_samples))
    parts = [sampling.uniform(shape, params.dtype, params.device, generator)
             for _ in range(streams)]
    return parts[0] if streams == 1 else torch.cat(parts, dim=1)


# ------------------------------------------------------------------------------ measurement


def gradient_stats(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None,
    replicas: int = 1000,
    num_samples: int = 1,
    wrt: Wrt = "distribution",
    method: Method = "vectorized",
    seed: int = 0,
    chunk_size: int = 64,
    noise: Tensor | None = None,
    exact: bool = True,
) -> GradientStats:
    """Draw M = `replicas` gradient estimates on the fixed batch x and summarise them.

    objective, estimator: the problem and the estimator, measured as they are (a frozen
        checkpoint). Both are put in eval mode during the measurement (an EMA baseline then uses
        its current value and is not updated) and their modes restored afterwards; no gradient
        is left on any parameter.
    x: the batch (B, D), or None for toys.
    wrt: "distribution" (the tensor `objective.posterior_params(x)`, detached, as the leaf),
        "encoder" or "decoder" (the parameters named in `objective.parameter_groups()`).
    method: "vectorized" (torch.func, the fast path) or "loop" (the oracle).
    seed: seeds the noise when `noise` is None (see `common_noise`).
    chunk_size: replicas per vectorized pass (and per reduction): peak memory ~ chunk_size x P.
    noise: pre-drawn noise (M, *noise_shape) for common random numbers.
    exact: compute the bias fields when `objective.has_exact`.

    Raises `MetricsError` (a ValueError) for bad arguments and `NonFiniteGradientError` when
    some estimates contain NaN or Inf.
    """
    choice("wrt", wrt, WRT)
    choice("method", method, METHODS)
    integer("replicas", replicas, 2)
    integer("num_samples", num_samples, 1)
    integer("chunk_size", chunk_size, 1)
    streams = estimator.noise_streams
    if noise is None:
        noise = common_noise(objective, x, replicas, num_samples, seed, streams)
    else:
        _check_noise(objective, x, noise, replicas, num_samples, streams)

    with _measuring(objective, estimator):
        target = _Target.of(objective, x, wrt)
        loss = _loss_function(objective, estimator, x, num_samples, target)
        chunks = (
            _vectorized_chunks(loss, target, noise, chunk_size)
            if method == "vectorized"
            else _loop_chunks(loss, target, noise, chunk_size)
        )
        moments = StreamingMoments()
        non_finite = 0
        for chunk in chunks:
            # A row with a NaN or Inf has a non-finite float64 sum: one cheap pass instead of
            # an elementwise isfinite over the whole (n, P) chunk.
            non_finite += int((~torch.isfinite(chunk.sum(1))).sum())
            if non_finite == 0:
                moments.update(chunk)
        if non_finite:
            raise NonFiniteGradientError(
                f"estimator '{estimator.name}' on objective '{objective.name}' (wrt={wrt!r}, "
                f"num_samples={num_samples}): {non_finite} of {replicas} gradient estimates "
                f"contain NaN or Inf"
            )
        exact_gradient = (
            _exact_gradient(objective, x, target) if exact and objective.has_exact else None
        )
    return _summarise(
        moments,
        exact_gradient,
        estimator=estimator.name,
        objective=objective.name,
        wrt=wrt,
        method=method,
        num_samples=num_samples,
    )


# ------------------------------------------------------------------------------- internals


@dataclass
class _Target:
    """What is differentiated: named tensors (detached copies of their current values) and,
    for the network groups, the live parameters they came from (for the loop oracle)."""

    wrt: str
    names: list[str]
    values: tuple[Tensor, ...]
    parameters: tuple[nn.Parameter, ...]

    @staticmethod
    def of(objective: Objective, x: Tensor | None, wrt: str) -> _Target:
        if wrt == "distribution":
            with torch.no_grad():
                params = objective.posterior_params(x).detach()
            return _Target(wrt, ["params"], (params,), ())
        names = objective.parameter_groups().get(wrt, [])
        if not names:
            raise MetricsError(
                f"wrt={wrt!r}: objective '{objective.name}' has no {wrt} parameters "
                f"(parameter_groups()[{wrt!r}] is empty); use wrt='distribution'"
            )
        named = dict(objective.named_parameters())
        parameters = tuple(named[n] for n in names)
        return _Target(wrt, names, tuple(p.detach() for p in parameters), parameters)

    @property
    def num_params(self) -> int:
        return sum(v.numel() for v in self.values)


LossFunction = Callable[[tuple[Tensor, ...], Tensor], Tensor]


class _EstimateLoss(nn.Module):
    """objective.estimate(...).loss.sum() as a module's forward, so that
    `torch.func.functional_call` can substitute the objective's parameters."""

    def __init__(
        self, objective: Objective, estimator: Estimator, x: Tensor | None, num_samples: int
    ) -> None:
        super().__init__()
        self.objective = objective
        self.estimator = estimator
        self.x = x
        self.num_samples = num_samples

    def forward(self, noise: Tensor, params: Tensor | None = None) -> Tensor:
        out = self.objective.estimate(
            self.x, self.estimator, self.num_samples, noise=noise, params=params
        )
        return out.loss.sum()


def _loss_function(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None,
    num_samples: int,
    target: _Target,
) -> LossFunction:
    """loss(values, noise) -> scalar, with `values` substituted for the target tensors."""
    module = _EstimateLoss(objective, estimator, x, num_samples)
    if target.wrt == "distribution":
        return lambda values, noise: module(noise, params=values[0])
    names = [f"objective.{n}" for n in target.names]

    def loss(values: tuple[Tensor, ...], noise: Tensor) -> Tensor:
        return functional_call(module, dict(zip(names, values, strict=True)), (noise,))

    return loss


def _flatten(grads: tuple[Tensor, ...] | list[Tensor], batch: int,
             buffer: Tensor | None = None) -> Tensor:
    """Per-replica gradients (each (n, *shape)) as one float64 (n, P) matrix: the cast and the
    concatenation happen in one copy into a preallocated buffer (`buffer`'s first n rows when
    given: reusing one buffer spares the page faults of a fresh multi-megabyte allocation per
    chunk, a third of the copy's time)."""
    sizes = [g[0].numel() if batch else 0 for g in grads]
    out = (torch.empty((batch, sum(sizes)), dtype=torch.float64, device=grads[0].device)
           if buffer is None else buffer[:batch])
    start = 0
    for g, size in zip(grads, sizes, strict=True):
        out[:, start : start + size].copy_(g.reshape(batch, size))
        start += size
    return out


def _vectorized_chunks(
    loss: LossFunction, target: _Target, noise: Tensor, chunk_size: int
) -> Iterator[Tensor]:
    """The estimates, chunk by chunk, as float64 (n, P) rows of one buffer: each chunk is
    overwritten by the next, so a consumer reduces it (as `StreamingMoments` does) before
    asking for the next one."""
    per_replica = vmap(grad(loss), in_dims=(None, 0))
    buffer = None
    for start in range(0, noise.shape[0], chunk_size):
        block = noise[start : start + chunk_size]
        # torch.func.grad ignores an outer no_grad; it stops ordinary autograd from also
        # recording a graph for the parameters that are not differentiated.
        with torch.no_grad():
            grads = per_replica(target.values, block)
        if buffer is None:
            buffer = torch.empty((min(chunk_size, noise.shape[0]), target.num_params),
                                 dtype=torch.float64, device=grads[0].device)
        yield _flatten(grads, block.shape[0], buffer)


def _loop_chunks(
    loss: LossFunction, target: _Target, noise: Tensor, chunk_size: int
) -> Iterator[Tensor]:
    if target.wrt == "distribution":
        leaves: tuple[Tensor, ...] = (target.values[0].clone().requires_grad_(True),)
        values = leaves
    else:
        leaves = target.parameters
        values = tuple(target.parameters)
    rows: list[Tensor] = []
    for m in range(noise.shape[0]):
        for leaf in leaves:
            leaf.grad = None
        loss(values, noise[m]).backward(inputs=list(leaves))
        rows.append(_flatten(
            [(leaf.grad if leaf.grad is not None else torch.zeros_like(leaf))[None]
             for leaf in leaves],
            1,
        ))
        if len(rows) == chunk_size:
            yield torch.cat(rows)
            rows = []
    for leaf in leaves:
        leaf.grad = None
    if rows:
        yield torch.cat(rows)


def _exact_gradient(objective: Objective, x: Tensor | None, target: _Target) -> Tensor:
    """The autograd gradient of objective.exact(x).sum() w.r.t. the target, flattened (P,)."""
    if target.wrt == "distribution":
        leaf = target.values[0].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(objective.exact(x, params=leaf).sum(), [leaf])
        return g.reshape(-1)
    grads = torch.autograd.grad(
        objective.exact(x).sum(), list(target.parameters), allow_unused=True
    )
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1)
        for g, p in zip(grads, target.parameters, strict=True)
    ])


def _check_noise(
    objective: Objective, x: Tensor | None, noise: Tensor, replicas: int, num_samples: int,
    streams: int,
) -> None:
    with torch.no_grad():
        q = objective.posterior(x)
    expected = (replicas, *sampling.noise_shape(q, num_samples, streams))
    if tuple(noise.shape) != expected:
        raise MetricsError(
            f"noise has shape {tuple(noise.shape)}; expected (replicas, *noise_shape) = "
            f"{expected} for replicas={replicas}, num_samples={num_samples}"
        )


@contextmanager
def _measuring(objective: Objective, estimator: Estimator) -> Iterator[None]:
    """Eval mode and grad-enabled during the measurement; every module's mode, the parameters'
    requires_grad flags and existing .grad restored afterwards."""
    modules = [*objective.modules(), *estimator.modules()]
    modes = [m.training for m in modules]
    parameters = list(objective.parameters())
    flags = [p.requires_grad for p in parameters]
    saved = [p.grad for p in parameters]
    try:
        objective.eval()
        estimator.eval()
        for p in parameters:
            p.grad = None
            p.requires_grad_(True)  # the loop oracle and the exact gradient need it
        with torch.enable_grad():
            yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.training = mode
        for p, flag, g in zip(parameters, flags, saved, strict=True):
            p.requires_grad_(flag)
            p.grad = g


def _summarise(
    moments: StreamingMoments,
    exact: Tensor | None,
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
    fields: dict[str, object] = {}
    if exact is not None:
        exact64 = exact.detach().to(torch.float64).cpu()
        diff = mean - exact64
        bias_norm = float(diff.norm())
        exact_norm = float(exact64.norm())
        z = diff[spread] / (std[spread] / math.sqrt(replicas))
        dof = int(spread.sum())
        chi2 = float((z**2).sum())
        fields = {
            "exact": exact64,
            "bias_norm": bias_norm,
            "relative_bias": bias_norm / exact_norm if exact_norm > 0 else math.nan,
            "cosine": float(mean @ exact64) / (mean_norm * exact_norm)
            if mean_norm > 0 and exact_norm > 0
            else math.nan,
            # ||mean - exact||^2 over-states the squared bias by the error of the mean, tr/M.
            "squared_bias": max(0.0, bias_norm**2 - total_variance / replicas),
            "mse": max(0.0, bias_norm**2 - total_variance / replicas) + total_variance,
            "z_max": float(z.abs().max()) if dof else math.nan,
            "chi2": chi2 if dof else math.nan,
            "p_value": chi2_sf(chi2, dof) if dof else math.nan,
            "p_value_max": _bonferroni(float(z.abs().max()), dof) if dof else math.nan,
            "z_dof": dof,
        }
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
        **fields,  # type: ignore[arg-type]
    )


def _bonferroni(z_max: float, dof: int) -> float:
    """min(1, dof * P(|N(0, 1)| > z_max)), with erfc for accuracy far in the tail."""
    return min(1.0, dof * math.erfc(z_max / math.sqrt(2)))


__all__ = ["METHODS", "WRT", "GradientStats", "common_noise", "gradient_stats"]
