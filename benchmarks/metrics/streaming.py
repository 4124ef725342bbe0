"""Streaming accumulators: per-coordinate moments (with the error of their total) and a running
logsumexp.

They let the measurements see M gradient estimates (or k importance weights) a chunk at a time,
so memory stays at one chunk whatever M (or k) is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class StreamingMoments:
    """Per-coordinate count, mean and variance of a stream of vectors (float64), and the
    scalar per-replica terms that measure the sampling error of the total variance.

    Moments: sums S1 = sum (g - c) and S2 = sum (g - c)^2 about a shift c, the first vector of
    the stream. Shifting by one draw keeps the cancellation in S2 - S1^2 / M to a factor of
    1 + (mean - c)^2 / variance (harmless in float64), and identical estimates give a variance
    of exactly 0.

    Per-replica terms: Welford's increment of replica m (1-based, in stream order),
    e_m = (m - 1) / m * ||g_m - mean of g_1..g_{m-1}||^2, is an unbiased estimate of the total
    variance tr(Sigma) for every m >= 2, and the M - 1 increments sum to the total M2, so the
    total variance T is exactly their mean; their sample variance estimates Var(T) as
    s^2(e) / (M - 1) from M - 1 terms, the fourth moments of heavy-tailed gradients included.
    Within a block of rows they come from the block's Gram matrix (one batched matrix product
    for all the blocks of a chunk, no per-row pass), and since e_m depends only on the
    replicas before m, the results do not depend on how the stream is chunked.
    Memory: O(P) plus a few scalars.
    """

    block = 16  # rows per Gram matrix: its cost is block x P per row

    def __init__(self) -> None:
        self.count = 0
        self.shift: Tensor | None = None  # (P,) float64
        self.sum: Tensor | None = None  # S1 (P,)
        self.sum_sq: Tensor | None = None  # S2 (P,)
        self.increments = 0  # number of e_m kept (m >= 2)
        self.increment_sum = 0.0
        self.increment_sum_sq = 0.0

    def update(self, chunk: Tensor) -> None:
        """Add the rows of `chunk` (n, P). A float64 chunk is overwritten (used as scratch)."""
        if chunk.shape[0] == 0:
            return
        y = chunk.to(torch.float64)
        if self.shift is None:
            self.shift = y[0].clone()
            self.sum = torch.zeros_like(self.shift)
            self.sum_sq = torch.zeros_like(self.shift)
        assert self.sum is not None and self.sum_sq is not None
        y.sub_(self.shift)
        full = y.shape[0] // self.block * self.block
        for part in (y[:full], y[full:]):
            if part.shape[0]:
                rows = min(self.block, part.shape[0])
                self._increments(part.reshape(-1, rows, part.shape[1]))
        self.sum_sq += y.mul_(y).sum(0)

    def _increments(self, y: Tensor) -> None:
        """Accumulate e_m for the blocks of rows y (blocks, n, P) (shifted, in stream order),
        given the sums of earlier rows, and add them to the sums: all blocks in one batch of
        Gram matrices (blocks x n x n), the sum before each block from the blocks' sums."""
        assert self.sum is not None
        blocks, n = y.shape[0], y.shape[1]
        block_sums = y.sum(1)  # (blocks, P)
        before = torch.cumsum(block_sums, 0).sub_(block_sums).add_(self.sum)  # S1 before each
        gram = torch.bmm(y, y.transpose(1, 2))  # (blocks, n, n)
        v = torch.bmm(y, before.unsqueeze(2)).squeeze(2)  # y_i . S1_before, (blocks, n)
        # b_i = S1_before + sum_{j<i} y_j, the sum of everything before row i; e_m needs
        # y_i . b_i and ||b_i||^2, both from the Gram matrix and v.
        y_dot_b = v + torch.tril(gram, -1).sum(2)
        inner = torch.cumsum(torch.cumsum(gram, 1), 2).diagonal(dim1=1, dim2=2)
        inner = torch.cat([inner.new_zeros(blocks, 1), inner[:, :-1]], 1)  # sum_{j,k<i}
        v_before = torch.cumsum(v, 1) - v
        b_sq = (before * before).sum(1, keepdim=True) + 2 * v_before + inner
        m = torch.arange(self.count + 1, self.count + blocks * n + 1, dtype=torch.float64,
                         device=y.device).view(blocks, n)
        self.sum += block_sums.sum(0)
        self.count += blocks * n
        keep = m >= 2
        if not bool(keep.any()):
            return
        m, prev = m[keep], m[keep] - 1
        diagonal = gram.diagonal(dim1=1, dim2=2)[keep]
        e = prev / m * (diagonal - 2 * y_dot_b[keep] / prev + b_sq[keep] / prev**2)
        self.increments += int(e.numel())
        self.increment_sum += float(e.sum())
        self.increment_sum_sq += float((e**2).sum())

    @property
    def mean(self) -> Tensor | None:
        """Per-coordinate mean (P,), None before the first update."""
        if self.shift is None or self.sum is None:
            return None
        return self.shift + self.sum / self.count

    def variance(self) -> Tensor:
        """Unbiased per-coordinate variance (ddof = 1), shape (P,); needs count >= 2."""
        assert self.sum is not None and self.sum_sq is not None and self.count >= 2
        m2 = (self.sum_sq - self.sum**2 / self.count).clamp_min(0.0)
        return m2 / (self.count - 1)

    def variance_of_total(self) -> float:
        """Estimated variance of the total variance sum(variance()): s^2(e) / (M - 1); NaN with
        fewer than 3 replicas (two increments are needed for a spread)."""
        k = self.increments
        if k < 2:
            return math.nan
        mean = self.increment_sum / k
        spread = max(0.0, self.increment_sum_sq - k * mean**2) / (k - 1)
        return spread / k


class StreamingLogSumExp:
    """logsumexp over a stream of chunks along dim 0, per column, in float64.

    Keeps the running max and the sum of exp(value - max); a chunk that raises the max rescales
    the sum. All -inf columns stay -inf (never NaN).
    """

    def __init__(self) -> None:
        self.count = 0
        self.max: Tensor | None = None
        self.sum: Tensor | None = None

    def update(self, chunk: Tensor) -> None:
        """Add the rows of `chunk` (n, B)."""
        if chunk.shape[0] == 0:
            return
        chunk = chunk.to(torch.float64)
        chunk_max = chunk.max(0).values
        if self.max is None or self.sum is None:
            new_max = chunk_max
            old = torch.zeros_like(chunk_max)
        else:
            new_max = torch.maximum(self.max, chunk_max)
            old = self.sum * _exp_shift(self.max, new_max)
        self.sum = old + _exp_shift(chunk, new_max).sum(0)
        self.max = new_max
        self.count += chunk.shape[0]

    def value(self) -> Tensor:
        """logsumexp of everything seen so far, shape (B,)."""
        assert self.max is not None and self.sum is not None
        finite_max = torch.where(torch.isfinite(self.max), self.max, torch.zeros_like(self.max))
        return finite_max + torch.log(self.sum)


def _exp_shift(values: Tensor, shift: Tensor) -> Tensor:
    """exp(values - shift), with exp(-inf - (-inf)) taken as 0 rather than NaN."""
    safe = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    return torch.exp(values - safe)


__all__ = ["StreamingLogSumExp", "StreamingMoments"]
