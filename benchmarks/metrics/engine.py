"""The gradient engine: M independent gradient estimates of one (objective, estimator) pair on
one fixed batch, at a frozen checkpoint, drawn chunk by chunk by `torch.func.vmap` or by a loop.

    noise = common_noise(objective, x, replicas=1000, num_samples=4)
    rows, exact = replica_estimates(objective, estimator, x, noise, num_samples=4)  # (M, P)

Conventions. Each replica m is one estimate g_m of the gradient of sum_b E_q[objective_b] (the
objective is maximised; `objective.estimate(x, ...).loss.sum()` is differentiated) with respect to
the parameters chosen by `wrt`, flattened into one vector of P coordinates (in the order of
`parameter_groups()`, each tensor row-major). Replica m consumes noise[m] of one pre-drawn noise
tensor of shape (M, *noise_shape(q, S)) (`common_noise`; or of chunks drawn one after the other
from one generator seeded with `seed`, `drawn_blocks`), so results are a function of `seed` (or
of `noise`) alone and the two methods see the same random numbers:

- "vectorized": `torch.func.vmap(torch.func.grad(loss))` over chunks of `chunk_size` replicas
  (parameters enter through `torch.func.functional_call`); what does not depend on the noise
  (the encoder's forward pass) is computed once per chunk, not once per replica.
- "loop": the test oracle, one ordinary `.backward()` per replica on a fresh gradient.

An estimator that draws its own random numbers (`q.sample()` instead of the `noise` argument, a
plugin, say) cannot run under vmap: the vectorized method detects it on the first chunk and
falls back to the loop, where those draws come from torch's generator seeded with `seed`;
`estimates` returns the chunks and the method that ran.

Either way the estimates come as float64 (n, P) chunks (the vectorized ones rows of one reused
buffer, each overwritten by the next), so a consumer reduces one before asking for the next
(`gradient_statistics.gradient_stats` does); `replica_estimates` keeps them all, for small
problems. `measuring` puts the objective and the estimator in eval mode for the measurement
and restores their state afterwards, and `compute_exact_gradient` differentiates the exact
objective, where there is one, with respect to the same target.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from estibench.benchmarks.objectives import Objective
from estibench.estimators import Estimator, distributions
from estibench.estimators.noise import noise_shape, supports_noise, uniform

from .errors import MetricsError, choice, integer

Wrt = Literal["distribution", "encoder", "decoder"]
Method = Literal["vectorized", "loop"]
WRT: tuple[str, ...] = ("distribution", "encoder", "decoder")
METHODS: tuple[str, ...] = ("vectorized", "loop")


# ------------------------------------------------------------------------------------- noise


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
    parts = [uniform((n, *shape), dtype, device, g) for g in generators]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _noise_spec(
    objective: Objective, x: Tensor | None, num_samples: int
) -> tuple[tuple[int, ...], torch.dtype, torch.device]:
    """The shape of one replica's noise, and the parameters' dtype and device."""
    with torch.no_grad():
        params = objective.posterior_params(x)
        q = objective.distribution(params)
    if not supports_noise(q):
        raise MetricsError(
            f"objective '{objective.name}': its latent {distributions.describe(q)} has no noise "
            "map (supported: Normal, Bernoulli, Categorical, OneHotCategorical), so replicas "
            f"cannot be drawn outside the estimator"
        )
    return tuple(noise_shape(q, num_samples)), params.dtype, params.device


def drawn_blocks(
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


def check_noise(
    objective: Objective, x: Tensor | None, noise: Tensor, replicas: int, num_samples: int,
    streams: int,
) -> None:
    with torch.no_grad():
        q = objective.posterior(x)
    expected = (replicas, *noise_shape(q, num_samples, streams))
    if tuple(noise.shape) != expected:
        raise MetricsError(
            f"noise has shape {tuple(noise.shape)}; expected (replicas, *noise_shape) = "
            f"{expected} for replicas={replicas}, num_samples={num_samples}"
        )


# ----------------------------------------------------------------------------- the estimates


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
    check_noise(objective, x, noise, noise.shape[0], num_samples, estimator.noise_streams)
    with measuring(objective, estimator):
        target = Target.of(objective, x, wrt)
        loss = loss_function(objective, estimator, x, num_samples, target)
        exact = compute_exact_gradient(objective, x, target) if objective.has_exact else None
        # each chunk is a view of one reused buffer: copied before the next is computed
        rows = torch.cat([chunk.clone() for chunk in
                          _vectorized_chunks(loss, target, noise.split(chunk_size))])
    return rows.cpu(), None if exact is None else exact.detach().to(torch.float64).cpu()


@dataclass
class Target:
    """What is differentiated: named tensors (detached copies of their current values) and,
    for the network groups, the live parameters they came from (for the loop oracle)."""

    wrt: str
    names: list[str]
    values: tuple[Tensor, ...]
    parameters: tuple[nn.Parameter, ...]

    @staticmethod
    def of(objective: Objective, x: Tensor | None, wrt: str) -> Target:
        if wrt == "distribution":
            with torch.no_grad():
                params = objective.posterior_params(x).detach()
            return Target(wrt, ["params"], (params,), ())
        names = objective.parameter_groups().get(wrt, [])
        if not names:
            raise MetricsError(
                f"wrt={wrt!r}: objective '{objective.name}' has no {wrt} parameters "
                f"(parameter_groups()[{wrt!r}] is empty); use wrt='distribution'"
            )
        named = dict(objective.named_parameters())
        parameters = tuple(named[n] for n in names)
        return Target(wrt, names, tuple(p.detach() for p in parameters), parameters)

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


def loss_function(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None,
    num_samples: int,
    target: Target,
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
    loss: LossFunction, target: Target, blocks: Iterable[Tensor]
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
    loss: LossFunction, target: Target, blocks: Iterable[Tensor]
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


def estimates(
    loss: LossFunction, target: Target, blocks: Iterable[Tensor], method: str, seed: int
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


def compute_exact_gradient(objective: Objective, x: Tensor | None, target: Target) -> Tensor:
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


@contextmanager
def measuring(objective: Objective, estimator: Estimator) -> Iterator[None]:
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


__all__ = ["METHODS", "WRT", "common_noise", "replica_estimates"]
