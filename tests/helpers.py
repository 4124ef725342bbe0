"""Shared statistics and fixtures-as-functions for the estimator and objective tests.

The statistical tests compare a Monte Carlo mean against a known value per coordinate, with a
tolerance in standard errors corrected for the number of coordinates (Bonferroni), and pair each
such check with evidence of power: the same data must *reject* a slightly wrong target.

Independent replicas come cheap from the contract: a surrogate has one entry per batch element,
and each element's gradient with respect to its own row of the distribution parameters is an
independent estimate. So the data batch is repeated, the distribution parameters are kept as a
tensor that retains its gradient, and one backward pass yields one estimate per replica. The
encoder and decoder parameters receive the *sum* over a replicated batch, so they are estimated by
batch means: `groups` backward passes, each over `replicas` copies, give `groups` independent
estimates (each the mean of `replicas` replicas).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import Tensor

from estibench.benchmarks import objectives
from estibench.benchmarks.objectives import Objective

ALPHA = 1e-3  # family-wise false-alarm rate of one statistical assertion


def bonferroni_bound(num_tests: int, alpha: float = ALPHA) -> float:
    """max(4, the two-sided normal quantile at alpha / num_tests): the z bound per coordinate."""
    return max(4.0, NormalDist().inv_cdf(1.0 - alpha / (2 * max(int(num_tests), 1))))


@dataclass(frozen=True)
class Summary:
    """Per-coordinate mean and standard error of n independent estimates (rows)."""

    mean: Tensor
    se: Tensor
    n: int

    @staticmethod
    def of(estimates: Tensor) -> Summary:
        """Summary of estimates shaped (n, ...): flattened to coordinates, in float64."""
        rows = estimates.detach().double().reshape(estimates.shape[0], -1)
        n = rows.shape[0]
        assert n >= 2, "need at least two estimates for a standard error"
        return Summary(rows.mean(0), rows.std(0) / math.sqrt(n), n)

    def z(self, target: Tensor) -> Tensor:
        """(mean - target) / se per coordinate. A coordinate with zero spread (a deterministic
        gradient) gets a float64 rounding floor instead of a zero standard error."""
        target = target.detach().double().reshape(-1)
        floor = 1e-9 * (1.0 + target.abs())
        return (self.mean - target) / torch.sqrt(self.se**2 + floor**2)

    def assert_matches(self, target: Tensor, label: str) -> float:
        """Every coordinate within the Bonferroni bound of `target`; returns the max |z|."""
        z = self.z(target).abs()
        bound = bonferroni_bound(z.numel())
        worst = int(z.argmax())
        assert float(z.max()) <= bound, (
            f"{label}: coordinate {worst} mean {float(self.mean[worst]):.6g} vs exact "
            f"{float(target.reshape(-1)[worst]):.6g}, |z| = {float(z.max()):.2f} > {bound:.2f} "
            f"(n = {self.n}, se = {float(self.se[worst]):.3g})"
        )
        return float(z.max())

    def assert_rejects(self, target: Tensor, label: str) -> float:
        """Some coordinate beyond the Bonferroni bound of `target` (evidence of power)."""
        z = self.z(target).abs()
        bound = bonferroni_bound(z.numel())
        assert float(z.max()) > bound, (
            f"{label}: the test cannot tell this target apart (max |z| = "
            f"{float(z.max()):.2f} <= {bound:.2f}, n = {self.n}): it has no power"
        )
        return float(z.max())


def assert_unbiased_with_power(
    summary: Summary, exact: Tensor, label: str, detectable: float = 0.25
) -> None:
    """The mean matches `exact`, and the same estimates reject `exact * (1 + detectable)`:
    a relative bias of that size would have been caught."""
    summary.assert_matches(exact, label)
    summary.assert_rejects(exact * (1 + detectable), f"{label} (power, {detectable:+.0%} bias)")


# Small objectives ------------------------------------------------------------------------

def small_categorical_vae(kl: str = "analytic", seed: int = 0, **options) -> Objective:
    """input 8, 2 variables x 3 categories (9 configurations), hidden 8; float64."""
    torch.manual_seed(seed)
    settings = dict(input_dim=8, variables=2, categories=3, hidden=8, kl=kl)
    settings.update(options)
    return objectives.get("categorical_vae", **settings).double()


def small_bernoulli_vae(kl: str = "analytic", seed: int = 0, **options) -> Objective:
    """input 8, 3 latent bits (8 configurations), hidden 8; float64."""
    torch.manual_seed(seed)
    settings = dict(input_dim=8, latent_dim=3, hidden=8, kl=kl)
    settings.update(options)
    return objectives.get("bernoulli_vae", **settings).double()


def small_linear_gaussian(kl: str = "analytic", seed: int = 0) -> Objective:
    """input 6, latent 2; float64; the encoder is left away from the posterior."""
    torch.manual_seed(seed)
    return objectives.get("linear_gaussian", input_dim=6, latent_dim=2, kl=kl, seed=seed).double()


def binary_batch(batch: int, dim: int, seed: int = 1) -> Tensor:
    """A fixed batch of binary float64 data."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, dim, generator=g) < 0.5).double()


def gaussian_batch(objective: Objective, batch: int, seed: int = 1) -> Tensor:
    """Data drawn from a linear-Gaussian model's own marginal."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return objective.marginal().sample((batch,)).double()


# Gradients -------------------------------------------------------------------------------

def role_parameters(objective: Objective, role: str) -> list[torch.nn.Parameter]:
    names = set(objective.parameter_groups()[role])
    return [p for n, p in objective.named_parameters() if n in names]


def flat(grads: Iterable[Tensor | None], like: Iterable[Tensor]) -> Tensor:
    """Gradients (None for unused parameters) as one flat vector."""
    pairs = zip(grads, like, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in pairs])


def exact_gradients(objective: Objective, x: Tensor) -> dict[str, Tensor]:
    """Autograd of `objective.exact(x).sum()`: w.r.t. the distribution parameters ('params',
    shape (B, ...)) and the flattened encoder and decoder parameters."""
    params = objective.posterior_params(x)
    params.retain_grad()
    enc, dec = role_parameters(objective, "encoder"), role_parameters(objective, "decoder")
    value = objective.exact(x, params=params).sum()
    grads = torch.autograd.grad(value, [params, *enc, *dec], allow_unused=True)
    return {
        "params": grads[0].detach(),
        "encoder": flat(grads[1:1 + len(enc)], enc).detach(),
        "decoder": flat(grads[1 + len(enc):], dec).detach(),
    }


@dataclass(frozen=True)
class GradientEstimates:
    """params: per-replica gradients w.r.t. the distribution parameters, shape (M, B, ...);
    encoder / decoder: per-group estimates of the gradient of sum_b E[f] (groups, P)."""

    params: Tensor
    encoder: Tensor
    decoder: Tensor


def gradient_estimates(
    objective: Objective,
    x: Tensor,
    estimator,
    num_samples: int,
    replicas: int,
    groups: int,
) -> GradientEstimates:
    """`groups` backward passes over x repeated `replicas` times (see the module docstring)."""
    enc, dec = role_parameters(objective, "encoder"), role_parameters(objective, "decoder")
    xr = x.repeat(replicas, *[1] * (x.dim() - 1))
    per_replica, per_group_enc, per_group_dec = [], [], []
    for _ in range(groups):
        params = objective.posterior_params(xr)
        params.retain_grad()
        out = objective.estimate(xr, estimator, num_samples, params=params)
        assert out.loss.shape == (xr.shape[0],)
        grads = torch.autograd.grad(out.loss.sum(), [params, *enc, *dec], allow_unused=True)
        per_replica.append(grads[0].detach().reshape(replicas, *x.shape[:1], *grads[0].shape[1:]))
        per_group_enc.append(flat(grads[1:1 + len(enc)], enc).detach() / replicas)
        per_group_dec.append(flat(grads[1 + len(enc):], dec).detach() / replicas)
    return GradientEstimates(
        torch.cat(per_replica), torch.stack(per_group_enc), torch.stack(per_group_dec)
    )


def toy_gradient_estimates(objective: Objective, estimator, num_samples: int, copies: int
                           ) -> tuple[Tensor, Tensor]:
    """(estimates (copies, *param shape), exact gradient) for a toy: its parameters repeated
    `copies` times as one leaf, so one backward pass gives `copies` independent estimates."""
    phi = objective.phi.detach()
    leaf = phi[0].expand(copies, *phi.shape[1:]).clone().requires_grad_(True)
    out = objective.estimate(None, estimator, num_samples, params=leaf)
    assert out.loss.shape == (copies,)
    (grad,) = torch.autograd.grad(out.loss.sum(), [leaf])
    one = phi[:1].clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(objective.exact(None, params=one).sum(), [one])
    return grad, exact[0]
