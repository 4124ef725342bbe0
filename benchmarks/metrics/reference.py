"""A reference gradient where there is no exact one: an unbiased estimator averaged over many
replicas, with its own Monte Carlo error kept so that the bias test and the noise floor can
fold it in.

    reference = reference_gradient(objective, estimators.get("reinforce", baseline="loo"), x,
                                   replicas=4096, num_samples=8, wrt="encoder")
    stats = gradient_stats(objective, other, x, replicas=512, wrt="encoder", reference=reference)
    stats.bias_against        # "reference: reinforce(baseline=loo), S = 8, M = 3072"

Why two parts: the unbiasedness test projects errors on directions fixed before the measured
estimates are seen, one of them the gradient's direction. Taken from the same draws as the
reference's value, that direction would correlate with the reference's error (d . ref with
d = ref / ||ref|| is ||ref||, which overshoots d . gradient by about tr(Sigma) / (M ||g||)). So
the first quarter of the replicas fixes the directions and the other three quarters give the
value, its per-coordinate variance and its variance along each direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from estibench.benchmarks.objectives import Objective
from estibench.estimators import Estimator

from .engine import Target, Wrt, drawn_blocks, estimates, loss_function, measuring
from .errors import NonFiniteGradientError, integer
from .streaming import StreamingMoments
from .unbiasedness import fixed_directions


@dataclass(frozen=True, eq=False)
class ReferenceGradient:
    """An estimate of the gradient (P,) from `replicas` draws of an unbiased estimator.

    mean: the reference value; variance: per-coordinate variance of ONE of its estimates;
    directions (K, P): the unbiasedness test's directions (fixed by independent draws);
    projection_variance (K,): variance of one estimate along each direction.
    """

    estimator: str
    num_samples: int
    replicas: int
    mean: Tensor
    variance: Tensor
    directions: Tensor
    projection_variance: Tensor

    @property
    def noise_floor(self) -> float:
        """E ||mean - gradient||^2 = tr(Sigma) / M: the reference's own Monte Carlo error."""
        return float(self.variance.sum()) / self.replicas

    @property
    def label(self) -> str:
        return f"reference: {self.estimator}, S = {self.num_samples}, M = {self.replicas}"


def reference_gradient(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None,
    replicas: int = 4096,
    num_samples: int = 8,
    wrt: Wrt = "distribution",
    seed: int = 0,
    chunk_size: int = 64,
    method: str = "vectorized",
) -> ReferenceGradient:
    """Average `replicas` estimates of `estimator` (unbiased: the caller's choice) into a
    reference gradient; see the module for how the draws are split."""
    integer("reference replicas", replicas, 8)
    integer("num_samples", num_samples, 1)
    first = max(4, replicas // 4)
    with torch.no_grad():
        estimator.prepare(objective.posterior(x))
    with measuring(objective, estimator):
        target = Target.of(objective, x, wrt)
        loss = loss_function(objective, estimator, x, num_samples, target)
        blocks = drawn_blocks(objective, x, num_samples, seed, chunk_size, replicas,
                              estimator.noise_streams)
        chunks, _ = estimates(loss, target, blocks, method, seed)
        direction_part = StreamingMoments()
        value_part = StreamingMoments()
        projections: list[Tensor] = []
        directions: Tensor | None = None
        for chunk in chunks:
            if not bool(torch.isfinite(chunk.sum(1)).all()):
                raise NonFiniteGradientError(
                    f"reference estimator '{estimator.name}' on objective '{objective.name}': "
                    "some gradient estimates contain NaN or Inf")
            rows = chunk.to(torch.float64)
            if direction_part.count < first:
                take = min(first - direction_part.count, rows.shape[0])
                direction_part.update(rows[:take].clone())
                rows = rows[take:]
            if rows.shape[0] == 0:
                continue
            if directions is None:
                assert direction_part.mean is not None
                directions = fixed_directions(direction_part.mean)
            projections.append((rows @ directions.T).cpu())
            value_part.update(rows)
    assert directions is not None and value_part.mean is not None
    projected = torch.cat(projections)
    return ReferenceGradient(
        estimator=estimator.name, num_samples=num_samples, replicas=value_part.count,
        mean=value_part.mean.cpu(), variance=value_part.variance().cpu(),
        directions=directions.cpu(), projection_variance=projected.var(0),
    )


__all__ = ["ReferenceGradient", "reference_gradient"]
