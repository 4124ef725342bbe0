"""estimators: Monte Carlo gradient estimators behind one contract.

    est = estimators.get("reinforce", baseline="loo")
    out = est(q, f, num_samples=S)        # q: torch Distribution, batch shape B
    (-out.loss).sum().backward()          # ascend E_q[f]; out.value: the MC estimate (B,)

An estimator turns E_q[f] into a surrogate `out.loss` (shape B) whose gradient is the estimate of
grad E_q[f] (the sign is that of the expectation; a training loop that maximises minimises
`-out.loss`). `f(z)` maps samples (S, *B, *event) to (S, *B) and may depend on any parameters;
q's parameters carry the graph back to whatever produced them. Families: `pathwise`,
`reinforce` (baselines none | ema | loo, and the group baselines grpo | drgrpo |
drgrpo_rescaled), `gumbel_softmax`, `st_gumbel`, `straight_through`, and `exact` (enumeration,
the ground truth), the antithetic `arm`, `disarm` (alias `u2g`; Bernoulli and, by coupled
stick breaking, categorical) and `carms` (S jointly antithetic samples; the reference code's
clipped ratio as `carms-clipped`), `vimco` (IWAE bound), the partly enumerating `indecater`
and `unordered_set`; the learned baselines and control variates `nvil`, `muprop`, `rebar`,
`relax`; the straight-through family `reinmax` (alias `zgr`), `gumbel_rao`, `gapped_st`; the
IWAE-bound estimators `iwae` (STL-IWAE with direct_term=False) and `dreg`; `measure_valued`
for diagonal Gaussians. Each declares what
it supports (`check`, `applies_to`) and refuses anything else with
`UnsupportedDistributionError`. New estimators are added with `estimators.register` or, from
another package, the entry-point group `estibench.estimators`.

How the stateful and multi-sample families fit the same contract (NVIL and RELAX are in
`control_variates`, where the baseline network is built by `prepare(q)`):

- NVIL (learned baseline): an `Estimator` whose baseline is a small `nn.Module` b_psi reading q's
  detached parameters (which already depend on x, so the baseline is input-dependent). It returns
  `aux_loss = (f - b_psi)^2` averaged over samples; the training loop minimises `aux_loss` with
  `estimator.parameters()` in its own optimizer. No hidden optimizer, no global state.
- VIMCO (multi-sample, IWAE bound): f still returns per-sample log-weights (S, *B); the estimator
  combines them into log mean_s exp f_s, uses the leave-one-out geometric-mean baselines across
  the S samples, and its `value` is the IWAE-S bound. It declares that it estimates the IWAE
  bound, so objectives hand it log-weights rather than a per-sample ELBO integrand.
- RELAX (control variate with trainable parameters): an `nn.Module` holding the control variate
  network c_psi evaluated at the relaxed and conditional relaxed samples (the same noise maps as
  `gumbel_softmax`); its `aux_loss` is the single-sample variance surrogate (the squared gradient
  estimate, built with create_graph=True), minimised over `estimator.parameters()`.
"""

from __future__ import annotations

from typing import Any

from . import distributions, noise
from .antithetic import ARM, CARMS, DisARM
from .base import Estimator, EstimatorOutput, Integrand
from .control_variates import NVIL, REBAR, RELAX, MuProp
from .errors import EstimatorError, UnsupportedDistributionError
from .exact import Exact
from .kl import kl_divergence  # torch.distributions.kl_divergence in closed form, faster
from .measure_valued import MeasureValued
from .multi_sample import IWAE, VIMCO, DReG
from .partial_enumeration import IndeCateR, UnorderedSet
from .pathwise import Pathwise
from .registry import Registry, did_you_mean
from .relaxed import GumbelSoftmax
from .score_function import Reinforce
from .straight_through import GappedST, GumbelRao, ReinMax, STGumbel, StraightThrough

registry: Registry[Estimator] = Registry("estimator", "estibench.estimators")
for _cls in (Pathwise, Reinforce, GumbelSoftmax, STGumbel, StraightThrough, Exact,
             ARM, DisARM, CARMS, VIMCO, IndeCateR, UnorderedSet, NVIL, MuProp, REBAR, RELAX,
             ReinMax, GumbelRao, GappedST, IWAE, DReG, MeasureValued):
    registry.register(_cls.name, _cls)
registry.alias("u2g", "disarm")  # Yin et al. 2020: the same estimator (estimators-zoo.md 1.8)
registry.alias("carms-clipped", "carms", ratio="clipped")  # the reference code's biased ratio
registry.alias("zgr", "reinmax", temperature=1.0)  # ReinMax at tau = 1 is ZGR, sample by sample


def get(name: str, **options: Any) -> Estimator:
    """Build the estimator registered as `name` with its keyword options."""
    return registry.get(name, **options)


def available() -> list[str]:
    """Names of every registered estimator, plugins included."""
    return registry.available()


def register(name: str, factory: Any = None) -> Any:
    """Register an estimator factory (usually an `Estimator` subclass); works as a decorator."""
    return registry.register(name, factory)


__all__ = [
    "ARM",
    "CARMS",
    "VIMCO",
    "kl_divergence",
    "DisARM",
    "DReG",
    "Estimator",
    "EstimatorError",
    "EstimatorOutput",
    "Exact",
    "GappedST",
    "GumbelRao",
    "GumbelSoftmax",
    "IndeCateR",
    "IWAE",
    "Integrand",
    "MeasureValued",
    "MuProp",
    "NVIL",
    "REBAR",
    "RELAX",
    "Pathwise",
    "ReinMax",
    "Reinforce",
    "Registry",
    "STGumbel",
    "StraightThrough",
    "UnorderedSet",
    "UnsupportedDistributionError",
    "available",
    "did_you_mean",
    "distributions",
    "get",
    "noise",
    "register",
    "registry",
]
