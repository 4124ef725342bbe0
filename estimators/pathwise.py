"""Pathwise (reparameterization) estimator: differentiate f through z = g(noise, phi)."""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution

from .base import Estimator, EstimatorOutput, Integrand, output
from .noise import reparameterized_sample


class Pathwise(Estimator):
    """z = q.rsample(); loss = mean_s f(z_s). Unbiased; needs a reparameterizable q.

    `direct_term=False` detaches q's parameters in `log_q` (inside f only), which turns the
    standard reparameterization gradient of an ELBO with a sampled entropy term into
    "sticking the landing" (Roeder et al. 2017): still unbiased, lower variance near the optimum.
    """

    name = "pathwise"
    supports = "reparameterizable distributions (has_rsample=True), e.g. Normal"

    def __init__(self, direct_term: bool = True) -> None:
        super().__init__(direct_term=direct_term)

    def applies_to(self, q: Distribution) -> bool:
        return bool(q.has_rsample)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        z = (reparameterized_sample(q, noise) if noise is not None
             else q.rsample((num_samples,)))
        return output(self.evaluate(f, z, num_samples, q), z)
