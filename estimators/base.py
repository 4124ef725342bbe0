"""The estimator contract: a surrogate whose gradient estimates the gradient of an expectation."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from . import distributions
from .errors import ContractError, EstimatorError, UnsupportedDistributionError
from .noise import draw_noise, noise_shape, supports_noise

T = TypeVar("T")
Integrand = Callable[[Tensor], Tensor]
"""f(z) -> Tensor: z has shape (S, *batch, *event), the result shape (S, *batch)."""


@dataclass(frozen=True)
class EstimatorOutput:
    """What an estimator returns for E_q[f].

    loss: the surrogate, shape = q.batch_shape. `loss.sum().backward()` accumulates the
        estimate of the gradient of sum_b E_q[f]_b (sign of the expectation: to maximise E_q[f],
        minimise `-loss`). Its forward value equals `value` for the unbiased families.
    value: the detached Monte Carlo estimate of E_q[f], shape = q.batch_shape (for relaxed
        estimators, of the relaxed expectation).
    samples: the (detached) samples f was evaluated at, shape (S, *batch, *event) (for `exact`, the
        enumerated support, S = number of configurations).
    aux_loss: a loss to *minimise* for the estimator's own trainable parameters (learned
        baselines, control variates), or None.
    evaluations: how many times f was evaluated per batch element to make this estimate
        (REINFORCE with S samples: S; an antithetic pair: 2; IndeCateR: S x D x K). Counted by
        the contract (`Estimator.evaluate`, `evaluate_many`, `evaluate_sets`), so estimators
        are compared per evaluation as well as per sample and per second.
    gradient_scale: a positive, detached factor the estimator applied to its learning signal
        (NVIL's variance normalisation: 1 / sqrt(v)), or None. `plus` and `minus` apply it to
        the gradient of the exact term they add, so that the whole objective's gradient is
        normalised and its direction is the unnormalised one (scaling one part alone would
        bend it); the term's value is added unscaled.
    """

    loss: Tensor
    value: Tensor
    samples: Tensor
    aux_loss: Tensor | None = None
    evaluations: int | None = None
    gradient_scale: Tensor | float | None = None

    def plus(self, term: Tensor) -> EstimatorOutput:
        """Add an exactly computed term (an analytic KL, say) to the loss and the value (its
        gradient scaled by `gradient_scale` when the estimator set one)."""
        return EstimatorOutput(self.loss + self._scaled(term), self.value + term.detach(),
                               self.samples, self.aux_loss, self.evaluations,
                               self.gradient_scale)

    def minus(self, term: Tensor) -> EstimatorOutput:
        """Subtract an exactly computed term (a KL): `plus(-term)` without the negation."""
        return EstimatorOutput(self.loss - self._scaled(term), self.value - term.detach(),
                               self.samples, self.aux_loss, self.evaluations,
                               self.gradient_scale)

    def _scaled(self, term: Tensor) -> Tensor:
        """`term` in value, `gradient_scale` x its gradient."""
        if self.gradient_scale is None:
            return term
        scale = self.gradient_scale
        return term * scale + term.detach() * (1 - scale)


class Estimator(nn.Module):
    """Base class of every estimator.

    Subclasses set `name`, `supports` (what they apply to, in words), `unbiased`, implement
    `applies_to(q)` and `estimate(q, f, num_samples, noise)`. Estimators are `nn.Module`s so that
    state (an EMA baseline) and trainable parameters (a learned baseline) live on the estimator,
    visible to `.parameters()`, `.to()` and `state_dict()`; nothing is global.

    What an estimator declares about itself (class attributes):
    - `unbiased`: whether E[estimate] is the gradient of E_q[f] for every parameter value;
    - `relaxed_samples`: f receives relaxed (continuous) samples instead of samples of q;
    - `needs_grad_f`: the estimate uses the derivative of f with respect to its input, at the
      sample or at relaxed / mean-field points (straight-through, MuProp, REBAR, RELAX), so f
      must be differentiable in z and defined off the support; objectives whose f is not refuse
      such estimators as not applicable;
    - `estimates`: "expectation" (value and gradient of E_q[f]) or "iwae" (f returns per-sample
      log-weights (S, *B); value and gradient are those of the IWAE-S bound E log mean_s e^f);
    - `noise_streams`: how many independent uniforms per sample coordinate the estimator
      consumes (REBAR and RELAX: 2, u and v). The noise of stream k is drawn after streams
      0..k-1 from the same generator and concatenated along the sample dimension, so stream 0
      is exactly the noise every other estimator gets (common random numbers hold) and coupled
      noise (u and 1 - u, or v given the sample) is derived from it inside the estimator.

    Trainable parameters (a baseline network, a control variate, a temperature) are trained by
    the caller from `aux_loss` alone, with their own optimizer at `aux_learning_rate`; parts
    sized by q's shapes are built by `prepare(q)`.
    """

    name: ClassVar[str] = "estimator"
    supports: ClassVar[str] = "any distribution"
    unbiased: bool = True  # a class default; an option may set it per instance
    relaxed_samples: ClassVar[bool] = False
    needs_grad_f: ClassVar[bool] = False
    estimates: ClassVar[str] = "expectation"
    noise_streams: int = 1  # a class default; an option may set it per instance

    def __init__(self, direct_term: bool = True) -> None:
        super().__init__()
        self.direct_term = direct_term
        self._evaluations = 0  # f evaluations in the current call (see `evaluate_many`)
        self._log_prob_memo: tuple[Distribution, Tensor, Tensor] | None = None  # `sample_log_prob`

    def applies_to(self, q: Distribution) -> bool:
        return True

    def check(self, q: Distribution) -> None:
        """Raise `UnsupportedDistributionError` unless this estimator applies to `q`."""
        if not self.applies_to(q):
            raise UnsupportedDistributionError(self.name, distributions.describe(q), self.supports)

    def forward(
        self,
        q: Distribution,
        f: Integrand,
        num_samples: int = 1,
        *,
        noise: Tensor | None = None,
    ) -> EstimatorOutput:
        """Estimate E_q[f] and its gradient.

        q: a distribution of batch shape B whose parameters carry the graph to what is trained.
        f: maps samples (S, *B, *event) to values (S, *B); may depend on other parameters.
        num_samples: S, the number of samples averaged.
        noise: optional base noise of shape `self.noise_shape(q, S)` (uniforms); drawn from
            the global generator when None. Passing the same noise gives the same samples.
        """
        self.check(q)
        self.prepare(q)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise EstimatorError(
                f"estimator '{self.name}': num_samples must be an integer >= 1, got {num_samples!r}"
            )
        if noise is not None:
            expected = self.noise_shape(q, num_samples)
            if not supports_noise(q):
                raise EstimatorError(
                    f"estimator '{self.name}': explicit noise is supported for "
                    f"Normal, Bernoulli, Categorical and OneHotCategorical, not "
                    f"{distributions.describe(q)}"
                )
            if noise.shape != expected:
                raise EstimatorError(
                    f"estimator '{self.name}': noise has shape {tuple(noise.shape)}, "
                    f"expected {tuple(expected)} for {num_samples} samples"
                )
        elif supports_noise(q):
            noise = draw_noise(q, num_samples, streams=self.noise_streams)
        return self.counted_estimate(q, f, num_samples, noise)

    def prepare(self, q: Distribution) -> None:
        """Build what is sized by q's shapes (a baseline network reading q's parameters).
        `forward` calls it; parameters cannot be created inside a torch.func transform, so a
        caller whose first call is vectorized, or that builds an optimizer over `parameters()`,
        calls it first. Default: nothing to build."""

    def aux_learning_rate(self, model_learning_rate: float) -> float:
        """The default learning rate of this estimator's own parameters (from its paper's
        code), given the model's; the default: the model's."""
        return model_learning_rate

    def counted_estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        """`estimate`, with the evaluations of f it made recorded in the output."""
        # Set past nn.Module.__setattr__ (its checks cost more than a step's small ops).
        object.__setattr__(self, "_evaluations", 0)
        object.__setattr__(self, "_log_prob_memo", None)
        try:
            out = self.estimate(q, f, num_samples, noise)
        finally:  # the memo holds this call's graph: it must not outlive the call
            object.__setattr__(self, "_log_prob_memo", None)
        # Checked here, once for every estimator: a plugin's (S, *B) loss would otherwise be
        # summed as S times the batch and give S^2 times the variance.
        if not isinstance(out, EstimatorOutput):
            raise ContractError(f"estimator '{self.name}' returned {type(out).__name__}, "
                                "not an EstimatorOutput")
        if out.loss.shape != q.batch_shape:
            raise ContractError(
                f"estimator '{self.name}': loss has shape {tuple(out.loss.shape)}; expected "
                f"q.batch_shape = {tuple(q.batch_shape)} (average over the samples)")
        if out.evaluations is None:  # a fresh output: set in place, not copied
            object.__setattr__(out, "evaluations", self._evaluations)
        return out

    def noise_shape(self, q: Distribution, num_samples: int) -> torch.Size:
        """The shape of the base noise this estimator consumes for `num_samples` samples."""
        return noise_shape(q, num_samples, self.noise_streams)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        raise NotImplementedError

    # What the integrand sees -------------------------------------------------------------
    def relax(self, p: Distribution) -> Distribution:
        """The distribution whose density applies to the samples f receives: `p` itself, or, for
        the relaxed and straight-through estimators, the densities `estibench.estimators.densities`
        derives (Concrete, in log space, at relaxed samples)."""
        return p

    def log_q(self, q: Distribution, z: Tensor) -> Tensor:
        """log q(z) for use *inside* f (a sampled KL or entropy term).

        The zero-mean "direct" term E_q[grad_phi log q_phi(z)] (z held fixed) is kept only if
        `direct_term` is True; otherwise q's parameters are detached here. Objectives call this
        instead of `q.log_prob` so the choice lives with the estimator.
        """
        if type(self).relax is Estimator.relax:  # f sees samples of q: from its parameters
            if self.direct_term:  # the same tensor the score term reads (`sample_log_prob`)
                return self.sample_log_prob(q, z, distributions.log_prob)
            # Detached parameters, not a detached result: z may carry a gradient (DReG, REBAR).
            return distributions.log_prob(q, z, detach=True)
        density = q if self.direct_term else distributions.detached(q)
        return self.relax(density).log_prob(z)

    def sample_log_prob(
        self, q: Distribution, z: Tensor,
        compute: Callable[[Distribution, Tensor], Tensor] = distributions.hard_log_prob,
    ) -> Tensor:
        """log q(z), with its gradient to q's parameters, computed once per call for a given q
        and z: f's `log_q(q, z)` (a sampled KL, the log-weights) and the estimator's score term
        read the same tensor. A score-function estimator calls it for the samples it drew
        (`compute`: `distributions.hard_log_prob`, which reads a one-hot sample as z . logits). The
        memo is keyed by object identity (the same q, the same z: the same value) and cleared
        when the call returns; `log_q` reads it only where the direct term is kept."""
        memo = self._log_prob_memo
        if memo is not None and memo[0] is q and memo[1] is z:
            return memo[2]
        log_q = compute(q, z)
        object.__setattr__(self, "_log_prob_memo", (q, z, log_q))
        return log_q

    def constant(self, key: tuple, build: Callable[[], T]) -> T:
        """The tensors `build()` makes for `key` (shapes and device: an identity mask, a range
        of category values), kept on the estimator (`cached_constant`): rebuilding such
        constants on every call costs more than using them at small batch."""
        return cached_constant(self, key, build)

    def evaluate(self, f: Integrand, z: Tensor, num_samples: int, q: Distribution) -> Tensor:
        """f(z) for the S = `num_samples` samples z, checked to have shape (S, *batch)."""
        if z.shape[0] != num_samples:
            raise EstimatorError(
                f"estimator '{self.name}': {z.shape[0]} samples given where num_samples = "
                f"{num_samples}"
            )
        return self.evaluate_many(f, z, q)

    def evaluate_many(self, f: Integrand, z: Tensor, q: Distribution) -> Tensor:
        """f at n stacked sample sets z (n, *batch, *event), for any n, checked to return
        (n, *batch); the n evaluations are counted in the output's `evaluations`. One call of f
        serves them all (one batched forward pass of a decoder)."""
        fz = f(z)
        expected = (z.shape[0], *q.batch_shape)
        if fz.shape != expected:
            raise EstimatorError(
                f"estimator '{self.name}': f returned shape {tuple(fz.shape)}; expected "
                f"(number of samples, *batch_shape) = {expected}"
            )
        object.__setattr__(self, "_evaluations", self._evaluations + z.shape[0])
        return fz

    def evaluate_sets(self, f: Integrand, sets: Sequence[Tensor], q: Distribution
                      ) -> list[Tensor]:
        """f at several sample sets (an antithetic pair, a sample and its mean-field point),
        each (n_i, *batch, *event), in one call of f: returns [f(set_i)] of shapes (n_i, *B)."""
        sizes = [s.shape[0] for s in sets]
        # split_with_sizes, the aten op: Tensor.split is a Python wrapper around it.
        return list(self.evaluate_many(f, torch.cat(list(sets)), q).split_with_sizes(sizes))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, direct_term={self.direct_term}"


def inside_transform() -> bool:
    """Whether a torch.func transform (grad, vmap) is active: tensors built there belong to it
    (and random initialisation is refused there)."""
    try:
        return torch._C._functorch.peek_interpreter_stack() is not None
    except AttributeError:  # a torch without the functorch interpreter stack: assume so
        return True


def cached_constant(owner: object, key: Hashable, build: Callable[[], T]) -> T:
    """`build()` for `key`, built once and kept in `owner`'s `_constants` (an estimator's shape
    constants, an objective's fixed prior); not kept when built inside a torch.func transform,
    whose tensors belong to it. setdefault: an owner unpickled from before it had the cache."""
    cache = owner.__dict__.setdefault("_constants", {})
    if key in cache:
        return cache[key]
    built = build()
    if not inside_transform():
        cache[key] = built
    return built


MIN_TEMPERATURE = 1e-6  # below it logits / temperature overflow in float32


def check_temperature(estimator: str, temperature: float) -> float:
    """Temperatures must be finite numbers >= MIN_TEMPERATURE."""
    t = float(temperature)
    if not (t >= MIN_TEMPERATURE and t < float("inf")):
        raise EstimatorError(
            f"estimator '{estimator}': temperature must be a positive finite number >= "
            f"{MIN_TEMPERATURE:g}, got {temperature!r}"
        )
    return t


def output(fz: Tensor, samples: Tensor, loss: Tensor | None = None) -> EstimatorOutput:
    """The output for per-sample values `fz` (S, *B): mean over samples, value detached."""
    if loss is None:
        loss = fz.mean(0)
        value = loss.detach()  # the same numbers as fz.detach().mean(0), one mean fewer
    else:
        value = fz.detach().mean(0)
    # Samples are returned detached for every family: they are a record, not a graph node.
    return EstimatorOutput(loss, value, samples.detach() if samples.requires_grad else samples)


__all__ = [
    "Estimator",
    "EstimatorOutput",
    "Integrand",
    "cached_constant",
    "check_temperature",
    "inside_transform",
    "output",
]
