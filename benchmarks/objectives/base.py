"""The objective contract: a problem with a latent z whose expectation estimators differentiate.

Sign convention (the one place it is fixed): every objective is a quantity to *maximise* (an
ELBO, or a toy's negative cost); estimators estimate its gradient; a training loop minimises
`-objective.estimate(...).loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from estibench.estimators import (
    Estimator,
    EstimatorError,
    EstimatorOutput,
    Exact,
    distributions,
    kl_divergence,
)
from estibench.estimators.base import cached_constant
from estibench.estimators.exact import enumerate_support

from .kl import sampled_kl

KL = Literal["analytic", "sampled", "k1", "k2", "k3", "k3_unbiased"]
KL_CHOICES = ("analytic", "sampled", "k1", "k2", "k3", "k3_unbiased")
Bound = Literal["elbo", "iwae"]
BOUND_CHOICES = ("elbo", "iwae")


class ObjectiveError(ValueError):
    """Bad use of an objective (unknown name or option, bad value)."""


class NoExactValue(ObjectiveError):
    """The objective has no exact value (or log-marginal) to compare against."""


class Objective(nn.Module):
    """A problem E_{q_phi}[f] shared by all estimators.

    The distribution parameters (`posterior_params`) are one tensor, so gradient statistics can
    treat them as a leaf; `distribution(params)` builds q from it. Inference-network parameters
    live under `self.encoder`; every other parameter is generative ("decoder").
    """

    name: ClassVar[str] = "objective"
    encoder: nn.Module | None  # set by subclasses that have an inference network
    # Whether f is differentiable in z and defined off the support (relaxed or mean-field
    # inputs): estimators that differentiate f (`needs_grad_f`) apply only where it is.
    differentiable_integrand: ClassVar[bool] = True
    bound: str = "elbo"  # what is estimated: "elbo" (E_q[f]) or "iwae" (log-weights, IWAE-S)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        """The parameters of q(z|x) as one tensor (logits, or loc and log-scale stacked)."""
        raise NotImplementedError

    def distribution(self, params: Tensor) -> Distribution:
        """q built from `posterior_params`; batch shape = the data batch."""
        raise NotImplementedError

    def posterior(self, x: Tensor | None) -> Distribution:
        """q(z|x) for a batch x of shape (B, D) (toys take x=None)."""
        return self.distribution(self.posterior_params(x))

    def example_input(self) -> Tensor | None:
        """A one-example input, to ask which estimators apply without data."""
        return None

    def check(self, estimator: Estimator) -> None:
        """Raise `EstimatorError` (`UnsupportedDistributionError` for the latent's family) if
        `estimator` does not apply to this objective, with the reason."""
        x = self.example_input()
        reference = next(self.parameters(), None)
        if x is not None and reference is not None:
            x = x.to(reference)  # a model moved to float64 or a GPU is asked in its own terms
        with torch.no_grad():
            estimator.check(self.posterior(x))
        self.check_bound(estimator)

    def check_bound(self, estimator: Estimator) -> None:
        """The estimator must estimate what this objective is (`bound`) and, if it
        differentiates f, f must allow it."""
        if estimator.estimates == "iwae" and self.bound != "iwae":
            raise EstimatorError(
                f"estimator '{estimator.name}' estimates the IWAE bound (f = per-sample "
                f"log-weights); objective '{self.name}' has bound={self.bound!r}"
                + (" (set bound = \"iwae\")" if isinstance(self, LatentVariableModel) else "")
            )
        if estimator.estimates != "iwae" and self.bound == "iwae":
            raise EstimatorError(
                f"objective '{self.name}' with bound='iwae' needs an estimator of the IWAE "
                f"bound; estimator '{estimator.name}' estimates E_q[f]"
            )
        if estimator.needs_grad_f and not self.differentiable_integrand:
            raise EstimatorError(
                f"estimator '{estimator.name}' differentiates f at relaxed or mean-field "
                f"inputs; objective '{self.name}' has an f that is not differentiable in z"
            )

    def estimate(
        self,
        x: Tensor | None,
        estimator: Estimator,
        num_samples: int = 1,
        *,
        noise: Tensor | None = None,
        params: Tensor | None = None,
    ) -> EstimatorOutput:
        """The objective for batch x estimated by `estimator`: `loss` (B,) to maximise.

        noise: base noise for the estimator (see `estibench.estimators.noise`);
        params: distribution parameters to use instead of `posterior_params(x)`.
        """
        raise NotImplementedError

    def exact(self, x: Tensor | None, params: Tensor | None = None) -> Tensor:
        """The exact objective per example (B,), differentiable: its autograd is the exact
        gradient. Raises `NoExactValue` where none exists."""
        raise NoExactValue(f"objective '{self.name}' has no exact value")

    @property
    def has_exact(self) -> bool:
        """Whether `exact` is available (for discrete latents: small enough to enumerate)."""
        return False

    def constant(self, name: str, build: Callable[[torch.dtype, torch.device], Distribution],
                 like: Tensor | None = None) -> Distribution:
        """A distribution without parameters (a fixed prior), built once per dtype and device:
        rebuilding it on every step costs more than the arithmetic on small models. The dtype
        and device are those of `like` (an input the encoder reads, so they are the
        parameters'), else of the first parameter (a walk over the modules: ~10 us a call)."""
        reference = next(self.parameters()) if like is None else like
        return cached_constant(self, (name, reference.dtype, reference.device),
                               lambda: build(reference.dtype, reference.device))

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter names by role: 'encoder' (inference network) and 'decoder' (the rest)."""
        names = [n for n, _ in self.named_parameters()]
        return {
            "encoder": [n for n in names if n.startswith("encoder.")],
            "decoder": [n for n in names if not n.startswith("encoder.")],
        }


class LatentVariableModel(Objective):
    """p(z) p_theta(x|z) with amortized q_phi(z|x); the objective is the ELBO, or with
    bound="iwae" the IWAE-S bound E log (1/S) sum_s p(x, z_s) / q(z_s | x) with S the number of
    samples (Burda et al. 2016), estimated by estimators of that bound (vimco, iwae, dreg)."""

    def __init__(self, kl: KL = "analytic", bound: Bound = "elbo") -> None:
        super().__init__()
        if kl not in KL_CHOICES:
            raise ObjectiveError(f"kl must be one of {', '.join(KL_CHOICES)}, got {kl!r}")
        if bound not in BOUND_CHOICES:
            raise ObjectiveError(
                f"bound must be one of {', '.join(BOUND_CHOICES)}, got {bound!r}")
        self.kl = kl
        self.bound = bound

    def prior(self, x: Tensor | None = None) -> Distribution:
        """p(z) (or p(z|x) for conditional models), broadcastable to q's batch shape."""
        raise NotImplementedError

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for z of shape (S, B, *event): shape (S, B)."""
        raise NotImplementedError

    def elbo(
        self,
        x: Tensor,
        estimator: Estimator,
        num_samples: int = 1,
        kl: KL | None = None,
        *,
        noise: Tensor | None = None,
        params: Tensor | None = None,
    ) -> EstimatorOutput:
        """ELBO(x) = E_q[log p(x|z)] - KL(q || p), estimated with `estimator`.

        kl="analytic": the KL in closed form, added exactly (the estimator sees log p(x|z));
        kl="sampled" (also named "k1"): f = log p(x|z) + log p(z) - log q(z) at the estimator's
        samples, with densities as the estimator sees them (`estimator.relax`: Concrete
        densities at relaxed samples; `estimator.log_q`: whether the zero-mean direct term is
        kept);
        kl="k2", "k3", "k3_unbiased": f = log p(x|z) - k(z), a Monte Carlo estimator of the KL
        from `sampled_kl` (module `kl`) inside f, read as that module describes.
        """
        kl = kl or self.kl
        if kl not in KL_CHOICES:
            raise ObjectiveError(f"kl must be one of {', '.join(KL_CHOICES)}, got {kl!r}")
        q = self.distribution(self.posterior_params(x) if params is None else params)
        prior = self.prior(x)
        if kl == "analytic":
            out = estimator(q, lambda z: self.log_likelihood(x, z), num_samples, noise=noise)
            return out.minus(kl_divergence(q, prior))

        def integrand(z: Tensor) -> Tensor:
            # Relaxed inside f: by the time the estimator calls f it has checked that q (and so
            # the prior) is a family it applies to; relaxing first would crash on the others.
            log_prior = distributions.log_prob(estimator.relax(prior), z)
            if kl in ("sampled", "k1"):
                return self.log_likelihood(x, z) + log_prior - estimator.log_q(q, z)
            return self.log_likelihood(x, z) - sampled_kl(kl, estimator, q, z, log_prior)

        return estimator(q, integrand, num_samples, noise=noise)

    def iwae_bound(
        self,
        x: Tensor,
        estimator: Estimator,
        num_samples: int = 1,
        *,
        noise: Tensor | None = None,
        params: Tensor | None = None,
    ) -> EstimatorOutput:
        """The IWAE-S bound of x estimated by an estimator of that bound: f returns the
        per-sample log-weights log p(x|z) + log p(z) - log q(z|x), with log q as the estimator
        sees it (`estimator.log_q`: DReG and STL stop its parameters, IWAE and VIMCO keep them)."""
        q = self.distribution(self.posterior_params(x) if params is None else params)
        prior = self.prior(x)

        def log_weights(z: Tensor) -> Tensor:
            log_prior = distributions.log_prob(prior, z)
            return self.log_likelihood(x, z) + log_prior - estimator.log_q(q, z)

        return estimator(q, log_weights, num_samples, noise=noise)

    def estimate(self, x, estimator, num_samples=1, *, noise=None, params=None):  # type: ignore[override]
        self.check_bound(estimator)
        if self.bound == "iwae":
            return self.iwae_bound(x, estimator, num_samples, noise=noise, params=params)
        return self.elbo(x, estimator, num_samples, noise=noise, params=params)

    @torch.no_grad()
    def log_weights(self, x: Tensor, num_samples: int) -> Tensor:
        """log p(x, z_s) - log q(z_s|x) for z_s ~ q: shape (S, B), no gradient (evaluation)."""
        q = self.posterior(x)
        z = q.sample((num_samples,))
        return self.log_likelihood(x, z) + self.prior(x).log_prob(z) - q.log_prob(z)

    @torch.no_grad()
    def iwae(self, x: Tensor, k: int) -> Tensor:
        """The IWAE-k bound log (1/k) sum_s w_s, shape (B,) (k = 1 is the ELBO)."""
        return torch.logsumexp(self.log_weights(x, k), 0) - math.log(k)

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact log p(x), shape (B,); raises `NoExactValue` where it is not tractable."""
        raise NoExactValue(f"objective '{self.name}' has no exact log p(x)")

    @property
    def has_log_marginal(self) -> bool:
        return False


def standard_normal(dim: int, dtype: torch.dtype, device: torch.device) -> Distribution:
    """N(0, I_dim) as an Independent Normal (the fixed prior of the Gaussian models)."""
    zeros = torch.zeros(dim, dtype=dtype, device=device)
    return distributions.marked_standard_normal(Independent(
        Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False))


class DiscreteLatentModel(LatentVariableModel):
    """A latent-variable model with a discrete latent: exact ELBO and log p(x) by enumeration
    when the number of configurations is at most `max_configurations`."""

    def __init__(self, kl: KL = "analytic", max_configurations: int = 4096,
                 bound: Bound = "elbo") -> None:
        super().__init__(kl, bound)
        self.max_configurations = int(max_configurations)

    @property
    def num_configurations(self) -> int:
        raise NotImplementedError

    @property
    def has_log_marginal(self) -> bool:
        return self.num_configurations <= self.max_configurations

    @property
    def has_exact(self) -> bool:
        # The exact IWAE-S bound depends on S (an enumeration over S-tuples): only the ELBO.
        return self.bound == "elbo" and self.has_log_marginal

    def _require_small(self) -> None:
        if not self.has_log_marginal:
            raise NoExactValue(
                f"objective '{self.name}' has {self.num_configurations} latent configurations, "
                f"more than max_configurations={self.max_configurations}: nothing exact"
            )

    def exact(self, x: Tensor | None, params: Tensor | None = None) -> Tensor:
        self._require_small()
        if self.bound != "elbo":
            raise NoExactValue(f"objective '{self.name}' with bound={self.bound!r} has no "
                               "exact value (it depends on the number of samples)")
        assert x is not None
        # The ELBO itself, whichever Monte Carlo estimator of the KL the objective trains with
        # (E_q[k2] is not the KL): enumeration of the sampled KL, or the closed form.
        kl = "analytic" if self.kl == "analytic" else "sampled"
        return self.elbo(x, Exact(self.max_configurations), kl=kl, params=params).loss

    @torch.no_grad()
    def log_marginal(self, x: Tensor, chunk: int = 256) -> Tensor:
        """log p(x) = logsumexp_z [log p(x|z) + log p(z)], enumerated in chunks of `chunk`."""
        self._require_small()
        prior = self.prior(x).expand(torch.Size([x.shape[0]]))
        support = enumerate_support(prior)
        parts = [
            self.log_likelihood(x, z) + prior.log_prob(z) for z in support.split(chunk)
        ]
        return torch.logsumexp(torch.cat(parts), 0)
