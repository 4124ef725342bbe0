"""Tests for the streaming accumulators and the chi-square helpers behind the measurements:
each fast path against the obvious computation on the whole data."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from estibench.benchmarks.metrics.chisquare import chi2_ppf, chi2_sf, variance_interval
from estibench.benchmarks.metrics.streaming import StreamingLogSumExp, StreamingMoments


def split(total: int, cuts: list[int]) -> list[int]:
    """Chunk sizes summing to `total` from arbitrary cut points."""
    points = sorted({c % (total + 1) for c in cuts} | {0, total})
    return [b - a for a, b in zip(points[:-1], points[1:], strict=True)]


def welford_increments(g: torch.Tensor) -> torch.Tensor:
    """e_m = (m - 1) / m ||g_m - mean(g_1..g_{m-1})||^2 for m = 2..M, one row at a time."""
    out = [(m - 1) / m * ((g[m - 1] - g[: m - 1].mean(0)) ** 2).sum() for m in range(2, len(g) + 1)]
    return torch.stack(out)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(2, 150),
    cols=st.integers(1, 6),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    offset=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_moments_equal_the_whole_data_computation_for_any_chunking(
    rows: int, cols: int, cuts: list[int], offset: float, seed: int
) -> None:
    g = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64) * 3 + offset
    moments = StreamingMoments()
    start = 0
    for size in split(rows, cuts):
        moments.update(g[start : start + size].clone())  # update may overwrite its input
        start += size
    assert moments.count == rows
    assert moments.mean is not None
    torch.testing.assert_close(moments.mean, g.mean(0))
    torch.testing.assert_close(moments.variance(), g.var(0), rtol=1e-9, atol=1e-9)
    e = welford_increments(g)
    assert moments.increments == rows - 1
    assert moments.increment_sum == pytest.approx(float(e.sum()), rel=1e-9)
    assert moments.increment_sum == pytest.approx(float(((g - g.mean(0)) ** 2).sum()), rel=1e-9)
    assert moments.increment_sum_sq == pytest.approx(float((e**2).sum()), rel=1e-8)
    if rows >= 3:
        expected = float(e.var()) / (rows - 1)
        assert moments.variance_of_total() == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_identical_rows_have_exactly_zero_variance() -> None:
    moments = StreamingMoments()
    row = torch.tensor([[0.1, -3.7, 1e6]], dtype=torch.float64)
    for n in (1, 5, 64, 3):
        moments.update(row.expand(n, 3).clone())
    assert torch.equal(moments.variance(), torch.zeros(3, dtype=torch.float64))
    assert moments.variance_of_total() == 0.0


def test_variance_of_total_matches_its_sampling_variance() -> None:
    """Over many independent streams, the estimated Var(T) averages to the spread of T."""
    g = torch.Generator().manual_seed(0)
    totals, estimates = [], []
    for _ in range(400):
        x = torch.randn(100, 3, generator=g, dtype=torch.float64) ** 2  # skewed coordinates
        moments = StreamingMoments()
        moments.update(x)
        totals.append(float(moments.variance().sum()))
        estimates.append(moments.variance_of_total())
    spread = torch.tensor(totals).var().item()
    mean_estimate = sum(estimates) / len(estimates)
    # the sample variance of 400 values has a relative SE of about sqrt(2 / 399) * sqrt(kurt)
    assert mean_estimate == pytest.approx(spread, rel=0.25)


@settings(max_examples=30, deadline=None)
@given(cols=st.integers(1, 4), cuts=st.lists(st.integers(0, 60), max_size=5),
       seed=st.integers(0, 2**16))
def test_streaming_logsumexp_equals_logsumexp(cols: int, cuts: list[int], seed: int) -> None:
    rows = 50
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 30
    x[::7, 0] = -math.inf  # some impossible samples
    if cols > 1:
        x[:, 1] = -math.inf  # a column with no mass at all
    running = StreamingLogSumExp()
    start = 0
    for size in split(rows, cuts):
        running.update(x[start : start + size])
        start += size
    torch.testing.assert_close(running.value(), torch.logsumexp(x.double(), 0))
    assert running.count == rows


@pytest.mark.parametrize(("p", "dof", "quantile"), [
    (0.975, 1, 5.023886187),
    (0.025, 10, 3.246972780),
    (0.95, 4, 9.487729037),
    (0.5, 2, 1.386294361),  # 2 ln 2: chi-square(2) is exponential with mean 2
    (0.99, 100, 135.8067232),
])
def test_chi2_quantiles_match_tables(p: float, dof: float, quantile: float) -> None:
    assert chi2_ppf(p, dof) == pytest.approx(quantile, rel=1e-7)
    assert chi2_sf(quantile, dof) == pytest.approx(1 - p, rel=1e-6)


def test_chi2_edges_and_errors() -> None:
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(math.inf, 3) == 0.0
    assert chi2_sf(2.0, 2) == pytest.approx(math.exp(-1.0))
    with pytest.raises(ValueError, match="p must be in"):
        chi2_ppf(1.0, 3)
    with pytest.raises(ValueError, match="dof"):
        chi2_sf(1.0, 0)


def test_variance_interval() -> None:
    # Var(T) = 2 T^2 / nu recovers the textbook interval for a Gaussian sample variance
    nu, t = 19, 4.0
    lo, hi = variance_interval(t, 2 * t**2 / nu)
    assert lo == pytest.approx(nu * t / chi2_ppf(0.975, nu))
    assert hi == pytest.approx(nu * t / chi2_ppf(0.025, nu))
    assert lo < t < hi
    assert variance_interval(0.0, 1.0) == (0.0, 0.0)
    assert all(math.isnan(v) for v in variance_interval(1.0, math.nan))
