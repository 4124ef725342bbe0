"""Gradient statistics at a frozen checkpoint: M independent estimates on one fixed batch.

    stats = gradient_stats(objective, estimator, x, replicas=1000, num_samples=4, wrt="encoder")
    stats.total_variance, stats.snr_norm, stats.squared_bias, stats.p_value
    auto = gradient_stats(objective, estimator, x, replicas="auto")  # M until a 5% RSE

Conventions. Each replica m is one estimate g_m of the gradient of sum_b E_q[objective_b] (the
objective is maximised; `objective.estimate(x, ...).loss.sum()` is differentiated) with respect to
the parameters chosen by `wrt`, flattened into one vector of P coordinates (in the order of
`parameter_groups()`, each tensor row-major). Replica m consumes noise[m] of one pre-drawn noise
tensor of shape (M, *noise_shape(q, S)) (with replicas="auto", of chunks drawn one after the
other from one generator seeded with `seed`), so results are a function of `seed` (or of
`noise`) alone and the two methods see the same random numbers:

- "vectorized": `torch.func.vmap(torch.func.grad(loss))` over chunks of `chunk_size` replicas
  (parameters enter through `torch.func.functional_call`); what does not depend on the noise
  (the encoder's forward pass) is computed once per chunk, not once per replica.
- "loop": the test oracle, one ordinary `.backward()` per replica on a fresh gradient.

An estimator that draws its own random numbers (`q.sample()` instead of the `noise` argument, a
plugin, say) cannot run under vmap: the vectorized method detects it on the first chunk and
falls back to the loop, where those draws come from torch's generator seeded with `seed`;
`GradientStats.method` says which ran.

Either way the estimates are reduced chunk by chunk into float64 moments (`StreamingMoments`)
and the unbiasedness test's projections (`UnbiasednessTest`, M x 2 scalars), so memory is
O(chunk_size x P), not O(M x P).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from estibench.benchmarks.objectives import Objective
from estibench.estimators import Estimator, sampling

from .chisquare import variance_interval
from .errors import MetricsError, NonFiniteGradientError, choice, integer
from .streaming import StreamingMoments
from .unbiasedness import UnbiasednessTest

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
        per-coordinate
        z-test it replaces rejected unbiased estimators in up to 100% of seeds; errors within
        float rounding count as zero. A bias orthogonal to both directions goes undetected
        (the test has power where it looks). NaN when M < 3.

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
    the parameters' device, in their dtype. `streams` > 1 (an estimator's `noise_streams`)
    draws each further stream from its own generator, so stream 0 is the noise every
    estimator gets, however many replicas are drawn at a time.
    """
    integer("replicas", replicas, 1)
    integer("num_samples", num_samples, 1)
    shape, dtype, device = _noise_spec(objective, x, num_samples)
    return _uniform_streams(replicas, shape, dtype, device, _generators(device, seed, streams))


def _generators(device: torch.device, seed: int, streams: int) -> list[torch.Generator]:
    """One generator per noise stream: stream 0 seeded with `seed`, stream k with an
    independent seed derived from (seed, k)."""
    seeds = [int(seed)] + [
        int(np.random.SeedSequence([int(seed) % 2**63, k]).generate_state(1, np.uint64)[0])
        for k in range(1, streams)
    ]
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def _uniform_streams(n: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                     generators: list[torch.Generator]) -> Tensor:
    """(n, streams * S, ...) uniforms: one (n, S, ...) block from each stream's generator."""
    parts = [sampling.uniform((n, *shape), dtype, device, g) for g in generators]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _noise_spec(
    objective: Objective, x: Tensor | None, num_samples: int
) -> tuple[tuple[int, ...], torch.dtype, torch.device]:
    """The shape of one replica's noise, and the parameters' dtype and device."""
    with torch.no_grad():
        params = objective.posterior_params(x)
        q = objective.distribution(params)
    if not sampling.supports_noise(q):
        raise MetricsError(
            f"objective '{objective.name}': its latent {sampling.describe(q)} has no noise map "
            f"(supported: Normal, Bernoulli, Categorical, OneHotCategorical), so replicas "
            f"cannot be drawn outside the estimator"
        )
    return tuple(sampling.noise_shape(q, num_samples)), params.dtype, params.device


# ------------------------------------------------------------------------------ measurement


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
            _check_noise(objective, x, noise, int(replicas), num_samples,  # type: ignore[arg-type]
                         streams)
        blocks: Iterable[Tensor] = noise.split(chunk_size)
    else:
        if noise is not None:
            raise MetricsError("noise= needs a fixed number of replicas, got replicas='auto'")
        blocks = _drawn_blocks(objective, x, num_samples, seed, chunk_size, auto.maximum,
                               streams)

    with torch.no_grad():  # parts sized by q (a baseline network) are built outside vmap
        estimator.prepare(objective.posterior(x))
    with _measuring(objective, estimator):
        target = _Target.of(objective, x, wrt)
        loss = _loss_function(objective, estimator, x, num_samples, target)
        exact_gradient = (
            _exact_gradient(objective, x, target) if exact and objective.has_exact else None
        )
        chunks, method = _estimates(loss, target, blocks, method, seed)
        moments = StreamingMoments()
        eps = torch.finfo(target.values[0].dtype).eps
        test = None if exact_gradient is None else UnbiasednessTest(exact_gradient, eps)
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


def _drawn_blocks(
    objective: Objective, x: Tensor | None, num_samples: int, seed: int, chunk_size: int,
    maximum: int, streams: int = 1,
) -> Iterator[Tensor]:
    """Noise blocks of `chunk_size` replicas (up to `maximum` in all) from the generators of
    `common_noise` (the same values, block by block), drawn as they are consumed."""
    shape, dtype, device = _noise_spec(objective, x, num_samples)
    generators = _generators(device, seed, streams)
    drawn = 0
    while drawn < maximum:
        n = min(chunk_size, maximum - drawn)
        yield _uniform_streams(n, shape, dtype, device, generators)
        drawn += n


def replica_estimates(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None,
    noise: Tensor,
    num_samples: int = 1,
    wrt: Wrt = "distribution",
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor | None]:
    """The raw estimates (M, P) float64 that `gradient_stats` would reduce for this noise,
    and the exact gradient (P,) (None without one): for statistical studies of the summaries
    (memory M x P, so for small problems)."""
    choice("wrt", wrt, WRT)
    _check_noise(objective, x, noise, noise.shape[0], num_samples, estimator.noise_streams)
    with _measuring(objective, estimator):
        target = _Target.of(objective, x, wrt)
        loss = _loss_function(objective, estimator, x, num_samples, target)
        exact = _exact_gradient(objective, x, target) if objective.has_exact else None
        # each chunk is a view of one reused buffer: copied before the next is computed
        rows = torch.cat([chunk.clone() for chunk in
                          _vectorized_chunks(loss, target, noise.split(chunk_size))])
    return rows.cpu(), None if exact is None else exact.detach().to(torch.float64).cpu()


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
    loss: LossFunction, target: _Target, blocks: Iterable[Tensor]
) -> Iterator[Tensor]:
    """The estimates, chunk by chunk, as float64 (n, P) rows of one buffer: each chunk is
    overwritten by the next, so a consumer reduces it (as `StreamingMoments` does) before
    asking for the next one."""
    per_replica = vmap(grad(loss), in_dims=(None, 0))
    buffer: Tensor | None = None
    for block in blocks:
        # torch.func.grad ignores an outer no_grad; it stops ordinary autograd from also
        # recording a graph for the parameters that are not differentiated.
        with torch.no_grad():
            grads = per_replica(target.values, block)
        if buffer is None or buffer.shape[0] < block.shape[0]:
            buffer = torch.empty((block.shape[0], target.num_params), dtype=torch.float64,
                                 device=grads[0].device)
        yield _flatten(grads, block.shape[0], buffer)


def _loop_chunks(
    loss: LossFunction, target: _Target, blocks: Iterable[Tensor]
) -> Iterator[Tensor]:
    if target.wrt == "distribution":
        leaves: tuple[Tensor, ...] = (target.values[0].clone().requires_grad_(True),)
        values = leaves
    else:
        leaves = target.parameters
        values = tuple(target.parameters)
    try:
        for block in blocks:
            rows: list[Tensor] = []
            for noise in block:
                for leaf in leaves:
                    leaf.grad = None
                loss(values, noise).backward(inputs=list(leaves))
                rows.append(_flatten(
                    [(leaf.grad if leaf.grad is not None else torch.zeros_like(leaf))[None]
                     for leaf in leaves],
                    1,
                ))
            yield torch.cat(rows)
    finally:
        for leaf in leaves:
            leaf.grad = None


def _estimates(
    loss: LossFunction, target: _Target, blocks: Iterable[Tensor], method: str, seed: int
) -> tuple[Iterator[Tensor], str]:
    """The chunks of estimates and the method that computes them (see the module docstring)."""
    device = target.values[0].device
    blocks = iter(blocks)
    if method == "vectorized":
        first_block = next(blocks)
        # One generator for the probe and the rest, so every chunk fills one buffer.
        chunks = _vectorized_chunks(loss, target, itertools.chain([first_block], blocks))
        try:
            first = next(chunks)
        except RuntimeError as err:
            if "random operation" not in str(err):
                raise
            blocks = itertools.chain([first_block], blocks)
        else:
            return itertools.chain([first], chunks), method
    return _seeded(_loop_chunks(loss, target, blocks), device, seed), "loop"


def _seeded(chunks: Iterator[Tensor], device: torch.device, seed: int) -> Iterator[Tensor]:
    """`chunks` with torch's generator seeded by `seed` (and restored afterwards), for
    estimators that draw their own random numbers."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield from chunks


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
    test: UnbiasednessTest | None,
    auto: AutoReplicas | None,
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
        floor = total_variance / replicas
        squared_bias = max(0.0, bias_norm**2 - floor)
        # Var ||mean - exact||^2 = 4 b' S b / M + 2 tr(S^2) / M^2 with S ~ diag(variance).
        se = math.sqrt(float(4 * (diff**2 * variance).sum() / replicas
                             + 2 * (variance**2).sum() / replicas**2))
        fields = {
            "exact": exact64,
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


__all__ = [
    "METHODS", "WRT", "AutoReplicas", "GradientStats", "common_noise", "gradient_stats",
    "replica_estimates",
]
