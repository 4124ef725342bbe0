"""Measure-valued derivatives of a diagonal Gaussian (Mohamed et al. 2020, JMLR, section 6;
after Pflug 1989): the derivative of the density written as a difference of two densities.

For q = N(mu, sigma^2) per coordinate i (the other coordinates at a base sample of q):
- d/dmu N(x) = (x - mu) / sigma^2 N(x), whose positive and negative parts are each
  1 / (sigma sqrt(2 pi)) times the density of mu +- sigma w, w ~ Weibull(scale sqrt 2, shape 2)
  (t phi(t) on t > 0, the Rayleigh law):
  d/dmu_i E f = E[f(x_i <- mu_i + sigma_i w) - f(x_i <- mu_i - sigma_i w)] / (sigma_i sqrt(2 pi)),
  coupled: the same w in both terms;
- d/dsigma N(x) = ((x - mu)^2 / sigma^2 - 1) N(x) / sigma = (Maxwell - Normal) / sigma, with
  m ~ double-sided Maxwell (t^2 phi(t)) and, coupled, u m ~ N(0, 1) for u ~ U(0, 1):
  d/dsigma_i E f = E[f(x_i <- mu_i + sigma_i m) - f(x_i <- mu_i + sigma_i u m)] / sigma_i.

f is evaluated at 4 D sample sets per sample (D = the number of event coordinates), never
differentiated in z: f need not be differentiable. Each scale "negative" point is itself a sample
of q, so `value` and the gradient of f's own parameters are their average. Unbiased.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal

from . import distributions
from .base import Estimator, EstimatorOutput, Integrand
from .noise import reparameterized_sample, split_streams


def weibull(u: Tensor) -> Tensor:
    """Weibull(scale sqrt 2, shape 2) variates by the inverse CDF, sqrt(-2 log u)."""
    return torch.sqrt(-2 * torch.log(u))


def double_sided_maxwell(u_radial: Tensor, u_normal: Tensor, u_sign: Tensor) -> Tensor:
    """Double-sided Maxwell(0, 1) variates: +-sqrt(chi-square with 3 degrees of freedom), the
    chi-square as an exponential (2 dof) plus a squared standard normal (1 dof)."""
    normal = torch.special.ndtri(u_normal)
    radius = torch.sqrt(-2 * torch.log(u_radial) + normal**2)
    return torch.where(u_sign < 0.5, -radius, radius)


class MeasureValued(Estimator):
    """Measure-valued derivative for Normal / Independent(Normal) q (see the module docstring).

    Noise streams: base sample, Weibull, Maxwell radial / normal / sign, coupling uniform."""

    name = "measure_valued"
    supports = "Normal (optionally inside Independent): diagonal Gaussians"
    noise_streams = 6

    def __init__(self) -> None:
        super().__init__(direct_term=True)

    def applies_to(self, q: Distribution) -> bool:
        return isinstance(distributions.base_of(q), Normal)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        base = distributions.base_of(q)
        shape = (*q.batch_shape, *q.event_shape)
        loc, scale = base.loc, base.scale
        if loc.shape != shape or scale.shape != shape:  # a shared parameter, broadcast
            loc, scale = loc.expand(shape), scale.expand(shape)
        coords = math.prod(q.event_shape)
        u0, u_w, u_r, u_n, u_s, u_c = split_streams(noise, self.noise_streams)
        with torch.no_grad():
            x = reparameterized_sample(q, u0)
            w = weibull(u_w)
            m = double_sided_maxwell(u_r, u_n, u_s)
            mu, sigma = loc.detach(), scale.detach()
            values = torch.stack([mu + sigma * w, mu - sigma * w, mu + sigma * m,
                                  mu + sigma * u_c * m])  # (4, S, *B, *E)
            # Sets (4, D, S, *B, *E): set (j, i) is x with coordinate i replaced by values[j].
            flat_x = x.reshape(*x.shape[: x.dim() - len(q.event_shape)], coords)
            flat_v = values.reshape(*values.shape[:-len(q.event_shape) or None], coords)
            sets = torch.where(self.diagonal(coords, flat_x.dim(), x.device),
                               flat_v.unsqueeze(1), flat_x)
            sets = sets.reshape(4 * coords * num_samples, *q.batch_shape, *q.event_shape)
        fz = self.evaluate_many(f, sets, q).reshape(4, coords, num_samples, *q.batch_shape)
        # The four weak derivatives' means, coordinates last, in the parameters' shape (*B, *E).
        diff = fz.detach().mean(2).movedim(1, -1).reshape(4, *shape)
        grad_mu = (diff[0] - diff[1]) / (sigma * math.sqrt(2 * math.pi))
        grad_sigma = (diff[2] - diff[3]) / sigma
        # grad_mu . (mu - sg mu) + grad_sigma . (sigma - sg sigma): zero-valued, these gradients
        linear = grad_mu * (loc - mu) + grad_sigma * (scale - sigma)
        mean = fz[3].mean((0, 1))  # every point of set 3 is a sample of q
        if q.event_shape:  # (a sum over no dimensions would sum over all of them)
            linear = linear.sum(tuple(range(len(q.batch_shape), len(shape))))
        surrogate = mean + linear
        return EstimatorOutput(surrogate, mean.detach(), x)

    def diagonal(self, coords: int, dims: int, device: torch.device) -> Tensor:
        """The identity mask (D, 1, ..., 1, D) over `dims` - 1 middle dimensions
        (`Estimator.constant`)."""
        return self.constant(("diagonal", coords, dims, device), lambda: torch.eye(
            coords, dtype=torch.bool, device=device).reshape(coords, *[1] * (dims - 1), coords))
