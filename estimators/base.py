"""The estimator contract: a surrogate whose gradient estimates the gradient of an expectation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn
from torch.distributions import Distribution

from . import sampling
from .errors import ContractError, EstimatorError, UnsupportedDistributionError

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
    """

    loss: Tensor
    value: Tensor
    samples: Tensor
    aux_loss: Tensor | None = None

    def plus(self, term: Tensor) -> EstimatorOutput:
        """Add an exactly computed term (an analytic KL, say) to the loss and the value."""
        return EstimatorOutput(self.loss + term, self.value + term.detach(), self.samples,
                               self.aux_loss)


class Estimator(nn.Module):
    """Base class of every estimator.

    Subclasses set `name`, `supports` (what they apply to, in words), `unbiased`, implement
    `applies_to(q)` and `estimate(q, f, num_samples, noise)`. Estimators are `nn.Module`s so that
    state (an EMA baseline) and trainable parameters (a learned baseline) live on the estimator,
    visible to `.parameters()`, `.to()` and `state_dict()`; nothing is global.
    """

    name: ClassVar[str] = "estimator"
    supports: ClassVar[str] = "any distribution"
    unbiased: ClassVar[bool] = True
    relaxed_samples: ClassVar[bool] = False

    def __init__(self, direct_term: bool = True) -> None:
        super().__init__()
        self.direct_term = direct_term

    def applies_to(self, q: Distribution) -> bool:
        return True

    def check(self, q: Distribution) -> None:
        """Raise `UnsupportedDistributionError` unless this estimator applies to `q`."""
        if not self.applies_to(q):
            raise UnsupportedDistributionError(self.name, sampling.describe(q), self.supports)

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
        noise: optional base noise of shape `sampling.noise_shape(q, S)` (uniforms); drawn from
            the global generator when None. Passing the same noise gives the same samples.
        """
        self.check(q)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise EstimatorError(
                f"estimator '{self.name}': num_samples must be an integer >= 1, got {num_samples!r}"
            )
        if noise is not None:
            expected = sampling.noise_shape(q, num_samples)
            if not sampling.supports_noise(q):
                raise EstimatorError(
                    f"estimator '{self.name}': explicit noise is supported for "
                    f"Normal, Bernoulli, Categorical and OneHotCategorical, not "
                    f"{sampling.describe(q)}"
                )
            if noise.shape != expected:
                raise EstimatorError(
                    f"estimator '{self.name}': noise has shape {tuple(noise.shape)}, "
                    f"expected {tuple(expected)} for {num_samples} samples"
                )
        elif sampling.supports_noise(q):
            noise = sampling.draw_noise(q, num_samples)
        out = self.estimate(q, f, num_samples, noise)
        # Checked here, once for every estimator: a plugin's (S, *B) loss would otherwise be
        # summed as S times the batch and give S^2 times the variance.
        if not isinstance(out, EstimatorOutput):
            raise ContractError(f"estimator '{self.name}' returned {type(out).__name__}, "
                                "not an EstimatorOutput")
        if out.loss.shape != q.batch_shape:
            raise ContractError(
                f"estimator '{self.name}': loss has shape {tuple(out.loss.shape)}; expected "
                f"q.batch_shape = {tuple(q.batch_shape)} (average over the samples)")
        return out

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        raise NotImplementedError

    # What the integrand sees -------------------------------------------------------------
    def relax(self, p: Distribution) -> Distribution:
        """The distribution whose density applies to the samples f receives: `p` itself, or its
        Concrete relaxation for estimators that feed f relaxed samples."""
        return p

    def log_q(self, q: Distribution, z: Tensor) -> Tensor:
        """log q(z) for use *inside* f (a sampled KL or entropy term).

        The zero-mean "direct" term E_q[grad_phi log q_phi(z)] (z held fixed) is kept only if
        `direct_term` is True; otherwise q's parameters are detached here. Objectives call this
        instead of `q.log_prob` so the choice lives with the estimator.
        """
        density = q if self.direct_term else sampling.detached(q)
        return self.relax(density).log_prob(z)

    def evaluate(self, f: Integrand, z: Tensor, num_samples: int, q: Distribution) -> Tensor:
        """f(z), checked to have shape (S, *batch)."""
        fz = f(z)
        expected = (num_samples, *q.batch_shape)
        if fz.shape != expected:
            raise EstimatorError(
                f"estimator '{self.name}': f returned shape {tuple(fz.shape)}; expected "
                f"(num_samples, *batch_shape) = {expected}"
            )
        return fz

    def extra_repr(self) -> str:
        return f"name={self.name!r}, direct_term={self.direct_term}"


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
    value = fz.detach().mean(0)
    # Samples are returned detached for every family: they are a record, not a graph node.
    return EstimatorOutput(fz.mean(0) if loss is None else loss, value, samples.detach())


__all__ = [
    "Estimator",
    "EstimatorOutput",
    "Integrand",
    "check_temperature",
    "output",
]
