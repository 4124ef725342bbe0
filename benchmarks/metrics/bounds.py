"""Bound tightness on held-out data: ELBO, IWAE-k for several k, log p(x), and the gap.

    result = bounds(objective, x_test, ks=(1, 10, 100, 1000))
    result.as_dict()  # {"elbo": ..., "iwae_1": ..., "iwae_1000": ..., "log_marginal": ...,
                      #  "log_marginal_exact": 1.0, "gap": ...}

For every example the importance log-weights log w_s = log p(x, z_s) - log q(z_s|x), z_s ~ q,
are drawn in chunks of at most `chunk_size` samples (batches of `batch_size` examples), up to
k_max = max(ks). The IWAE-k bound log (1/k) sum_{s <= k} w_s uses the first k of those samples
(nested: one pass of k_max samples serves every k), through a streaming logsumexp, so memory is
O(batch_size x chunk_size) whatever k is. Sampling uses torch's global generator seeded with
`seed` inside `torch.random.fork_rng`: results are reproducible and the caller's random state is
untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from estibench.benchmarks.objectives import LatentVariableModel, Objective

from .errors import MetricsError, integer
from .streaming import StreamingLogSumExp


@dataclass(frozen=True, eq=False)
class BoundsResult:
    """Bounds on log p(x) for N held-out examples: means over examples, per-example tensors
    (float64, CPU, shape (N,)) and standard errors over examples.

    elbo: the ELBO estimated as the mean of all k_max log-weights per example (lower variance
        than the single-sample `iwae[1]`, which is the textbook k = 1 IWAE).
    iwae: {k: mean IWAE-k}; iwae_per_example likewise.
    log_marginal: exact log p(x) when `log_marginal_exact` (enumeration or closed form), else
        the IWAE-k_max estimate, a lower bound used as the best available reference (never the
        truth; the gap is then underestimated).
    gap: log_marginal - elbo = KL(q(z|x) || p(z|x)) when log p(x) is exact.
    standard_errors: the standard error over examples of each mean ("elbo", "iwae_{k}",
        "log_marginal", "gap"): sd / sqrt(N) of the per-example values (data spread plus
        Monte Carlo noise).
    """

    ks: tuple[int, ...]
    num_examples: int
    elbo: float
    iwae: dict[int, float]
    log_marginal: float
    log_marginal_exact: bool
    gap: float
    elbo_per_example: Tensor
    iwae_per_example: dict[int, Tensor]
    log_marginal_per_example: Tensor
    gap_per_example: Tensor
    standard_errors: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        """Flat floats: elbo, iwae_{k} for each k, log_marginal, log_marginal_exact (0/1), gap."""
        out = {"elbo": self.elbo}
        out.update({f"iwae_{k}": v for k, v in self.iwae.items()})
        out["log_marginal"] = self.log_marginal
        out["log_marginal_exact"] = float(self.log_marginal_exact)
        out["gap"] = self.gap
        return out


def sample_chunks(ks: Iterable[int], chunk_size: int) -> list[int]:
    """Sizes of the successive sample chunks for one batch: at most `chunk_size` each, and
    every k in `ks` falls on a chunk boundary. E.g. ks=(1, 10, 100), chunk_size=50 ->
    [1, 9, 50, 40]."""
    sizes: list[int] = []
    drawn = 0
    for k in sorted(set(ks)):
        while drawn < k:
            n = min(chunk_size, k - drawn)
            sizes.append(n)
            drawn += n
    return sizes


def bounds(
    objective: Objective,
    data: Tensor,
    ks: Sequence[int] = (1, 10, 100, 1000),
    batch_size: int = 100,
    chunk_size: int = 100,
    seed: int = 0,
) -> BoundsResult:
    """ELBO, IWAE-k for each k in `ks`, log p(x) and the gap on held-out `data` (N, D).

    batch_size: examples per pass; chunk_size: importance samples per pass. Peak memory is
    that of `objective.log_weights` on batch_size examples x chunk_size samples.
    """
    if not isinstance(objective, LatentVariableModel):
        raise MetricsError(
            f"objective '{objective.name}' is not a latent-variable model (no log_weights / "
            f"IWAE); bounds apply to the VAEs"
        )
    ks = tuple(ks)
    if not ks:
        raise MetricsError("ks must name at least one number of samples, got ()")
    for k in ks:
        integer("ks entries", k, 1)
    integer("batch_size", batch_size, 1)
    integer("chunk_size", chunk_size, 1)
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[0] < 1:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise MetricsError(f"data must be a tensor of shape (N, D) with N >= 1, got {shape}")

    plan = sample_chunks(ks, chunk_size)
    k_max = sum(plan)
    wanted = set(ks)
    exact = bool(objective.has_log_marginal)
    elbo_parts: list[Tensor] = []
    iwae_parts: dict[int, list[Tensor]] = {k: [] for k in sorted(wanted)}
    marginal_parts: list[Tensor] = []

    modes = [(m, m.training) for m in objective.modules()]
    cuda = [data.device.index or 0] if data.is_cuda else []
    try:
        objective.eval()
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(seed)
            for batch in data.split(batch_size):
                running = StreamingLogSumExp()
                log_weight_sum = torch.zeros(batch.shape[0], dtype=torch.float64,
                                             device=batch.device)
                for n in plan:
                    log_w = objective.log_weights(batch, n)  # (n, B)
                    running.update(log_w)
                    log_weight_sum += log_w.to(torch.float64).sum(0)
                    if running.count in wanted:
                        k = running.count
                        iwae_parts[k].append((running.value() - math.log(k)).cpu())
                elbo_parts.append((log_weight_sum / k_max).cpu())
                if exact:
                    marginal_parts.append(objective.log_marginal(batch).to(torch.float64).cpu())
    finally:
        for m, mode in modes:
            m.training = mode

    elbo = torch.cat(elbo_parts)
    iwae = {k: torch.cat(parts) for k, parts in iwae_parts.items()}
    log_marginal = torch.cat(marginal_parts) if exact else iwae[k_max]
    gap = log_marginal - elbo
    per_example = {"elbo": elbo, "log_marginal": log_marginal, "gap": gap}
    per_example.update({f"iwae_{k}": v for k, v in iwae.items()})
    return BoundsResult(
        ks=tuple(sorted(wanted)),
        num_examples=int(elbo.shape[0]),
        elbo=float(elbo.mean()),
        iwae={k: float(v.mean()) for k, v in iwae.items()},
        log_marginal=float(log_marginal.mean()),
        log_marginal_exact=exact,
        gap=float(gap.mean()),
        elbo_per_example=elbo,
        iwae_per_example=iwae,
        log_marginal_per_example=log_marginal,
        gap_per_example=gap,
        standard_errors={name: standard_error(v) for name, v in per_example.items()},
    )


def standard_error(values: Tensor) -> float:
    """sd / sqrt(n) of a 1-d tensor (nan for fewer than two values)."""
    if values.numel() < 2:
        return math.nan
    return float(values.to(torch.float64).std() / math.sqrt(values.numel()))


__all__ = ["BoundsResult", "bounds", "sample_chunks", "standard_error"]
