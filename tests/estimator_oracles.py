"""Oracles for estimators called directly on a distribution: replicated estimates, the exact
gradient by enumeration, exact moments of estimates that are functions of finitely many
outcomes or of a 1-D / 2-D uniform (Gauss-Legendre quadrature split at the thresholds), and a
variance check whose sample size is derived from the fourth moment."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from estibench import estimators

BuildQ = Callable[[Tensor], Distribution]


def replica_estimates(estimator, build_q: BuildQ, phi: Tensor, f, num_samples: int,
                      copies: int | None = None, noise: Tensor | None = None) -> Tensor:
    """Gradient estimates (M, *phi.shape), one per copy of phi: q = build_q(leaf) with the
    leaf (M, *phi.shape) has batch shape (M,), and each copy's gradient comes only from its
    own row. M = `copies`, or the batch size `noise` implies."""
    m = copies if noise is None else noise.shape[1]
    leaf = phi.detach().expand(m, *phi.shape).clone().requires_grad_(True)
    out = estimator(build_q(leaf), f, num_samples, noise=noise)
    (grad,) = torch.autograd.grad(out.loss.sum(), [leaf])
    return grad


def exact_gradient(build_q: BuildQ, phi: Tensor, f) -> Tensor:
    """Autograd of the enumerated expectation sum_z q(z) f(z), shape phi.shape."""
    leaf = phi.detach()[None].clone().requires_grad_(True)
    out = estimators.get("exact")(build_q(leaf), f)
    (grad,) = torch.autograd.grad(out.loss.sum(), [leaf])
    return grad[0]


def moments(values: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-coordinate (mean, variance, fourth central moment) of outcomes `values` (n, ...)
    with probabilities `weights` (n,), in float64."""
    w = weights.double() / weights.double().sum()
    v = values.double().reshape(values.shape[0], -1)
    mean = (w[:, None] * v).sum(0)
    centred = v - mean
    return mean, (w[:, None] * centred**2).sum(0), (w[:, None] * centred**4).sum(0)


def legendre_pieces(breaks: list[float], nodes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1] split at `breaks`: exact for an integrand
    that is a polynomial of degree < 2 * nodes on each piece."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = sorted({0.0, 1.0, *breaks})
    points, weights = [], []
    for a, b in itertools.pairwise(edges):
        points.append(a + (b - a) * (x + 1) / 2)
        weights.append((b - a) * w / 2)
    return np.concatenate(points), np.concatenate(weights)


def legendre_grid(breaks: list[float], dims: int, nodes: int = 8) -> tuple[Tensor, Tensor]:
    """The tensor product of `legendre_pieces` over `dims` coordinates: (n, dims), (n,)."""
    x, w = legendre_pieces(breaks, nodes)
    grid = np.stack(np.meshgrid(*[x] * dims, indexing="ij"), -1).reshape(-1, dims)
    weights = np.prod(np.stack(np.meshgrid(*[w] * dims, indexing="ij"), -1), -1).reshape(-1)
    return torch.tensor(grid), torch.tensor(weights)


def bernoulli_noise(phi: Tensor, b: Tensor) -> Tensor:
    """Uniforms that the engine maps to the Bernoulli sample b (b = 1[u > sigmoid(-phi)])."""
    threshold = torch.sigmoid(-phi.double())
    return torch.where(b > 0.5, (1 + threshold) / 2, threshold / 2)


def estimates_needed(variance: float, fourth: float, tolerance: float) -> int:
    """The smallest M (up to rounding) with 4 standard errors of the sample variance <=
    tolerance x variance (the standard error from the exact fourth central moment)."""
    m = max(1000, math.ceil((fourth / variance**2 - 1) * (4 / tolerance) ** 2) + 10)
    while 4 * variance_se(variance, fourth, m) > tolerance * variance:
        m = math.ceil(m * 1.1)
    return m


def variance_se(variance: float, fourth: float, m: int) -> float:
    """Exact standard error of the unbiased sample variance of m iid draws."""
    return math.sqrt(max(fourth / m - variance**2 * (m - 3) / (m * (m - 1)), 0.0))


def check_variance(samples: Tensor, variance: float, fourth: float, tolerance: float,
                   label: str) -> None:
    """The sample variance of `samples` (M,) within `tolerance` (relative) of `variance`,
    with M large enough that the tolerance exceeds 4 standard errors."""
    m = samples.shape[0]
    assert 4 * variance_se(variance, fourth, m) <= tolerance * variance, (
        f"{label}: M = {m} too small for a {tolerance:.0%} check")
    measured = float(samples.double().var())
    assert abs(measured - variance) <= tolerance * variance, (
        f"{label}: variance {measured:.6g} vs closed form {variance:.6g} "
        f"({measured / variance - 1:+.2%})")
