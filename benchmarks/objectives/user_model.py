"""A researcher's own model as an objective: `Model`, the small contract, and `ModelObjective`,
the `Objective` estibench makes of it.

    import torch
    from torch import nn
    from torch.distributions import OneHotCategorical, Independent
    import estibench

    policy = nn.Linear(4, 3)                       # the encoder: x -> logits of q(z | x)
    rewards = nn.Linear(3, 1)                      # anything else that is trained

    def make_objective():
        return estibench.Model(
            posterior=lambda x: OneHotCategorical(logits=policy(x)),
            f=lambda z, x: rewards(z).squeeze(-1),  # (S, B, 3) -> (S, B), to maximise
            encoder=policy, model=rewards, example_input=torch.zeros(1, 4))

The researcher gives q(z|x) as a `torch.distributions` object built from their encoder, and
f(z, x), the quantity whose expectation E_q[f] is maximised (a log-joint, a reward, a negative
loss). estibench rebuilds q from one parameter tensor (`posterior_params`: the logits, or loc and
log-scale stacked on a last dimension) so that gradient statistics can treat it as a leaf, and
computes the exact value by enumeration where the latent is discrete and small.

The parameters trained are those of `encoder` (the inference network, phi: reported as
"encoder") and `model` (every other trained parameter, theta: reported as "decoder"). posterior
and f must read them through these modules when called (`policy(x)`, not a tensor taken out of
it once): the gradient statistics substitute the modules' parameters to differentiate with
respect to them. Fixed tensors that f reads (a reward table) belong in a module as buffers, so
that they move with the objective to a GPU or to float64.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)

from estibench.estimators import Estimator, EstimatorError, EstimatorOutput, Exact, distributions
from estibench.estimators.exact import support_size

from .base import NoExactValue, Objective, ObjectiveError

FAMILIES: tuple[type[Distribution], ...] = (Bernoulli, Categorical, OneHotCategorical, Normal)
ALLOWED = ("Bernoulli, Categorical, OneHotCategorical or Normal, optionally inside "
           "Independent")
CHECK_SAMPLES = 2  # samples f is called with when the model is checked


@dataclass(frozen=True, eq=False)
class Model:
    """A researcher's model: what estibench needs to run every estimator on it.

    posterior: x -> q(z | x), a `torch.distributions` object of family Bernoulli, Categorical,
        OneHotCategorical or Normal, optionally inside `Independent`; its batch shape is (B,)
        for x of shape (B, D) (the latent's own dimensions in its event shape: wrap them in
        `Independent(q, n)`), or any batch shape for a model without data (x is None).
    f: (z, x) -> the value to maximise at each sample, shape (S, *q.batch_shape) = (S, B) for z
        of shape (S, *q.batch_shape, *q.event_shape); it may read `model`'s parameters.
    encoder: the module whose parameters q depends on (reported as "encoder").
    model: the module of every other trained parameter (reported as "decoder"), or None.
    data: the model's own examples (N, D), or None; its first rows check the model when it is
        loaded, and its first row is the example input unless `example_input` is given. A suite
        reads its data from its [data] table (the dataset "file" reads .npy, .npz, .pt and .csv).
    example_input: one batch of inputs (B, D) to check the model and ask which estimators apply
        without data, or None for a model that reads no data.
    name: how messages and the objective name it.
    max_configurations: a discrete latent with at most this many configurations per example
        gets an exact value and gradient by enumeration.
    differentiable: whether f is differentiable in z and defined off the support (at relaxed,
        fractional z); False refuses the estimators that evaluate f there (Gumbel-Softmax, the
        straight-through family, MuProp, REBAR, RELAX).
    """

    posterior: Callable[[Tensor | None], Distribution]
    f: Callable[[Tensor, Tensor | None], Tensor]
    encoder: nn.Module | None = None
    model: nn.Module | None = None
    data: Tensor | None = None
    example_input: Tensor | None = None
    name: str = "model"
    max_configurations: int = 4096
    differentiable: bool = True


def _last_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def _family(q: Distribution, name: str) -> type[Distribution]:
    """q's family (inside Independent), or an `ObjectiveError` naming it and what is allowed."""
    base = distributions.base_of(q)
    if type(base) not in FAMILIES:
        raise ObjectiveError(f"model '{name}': posterior(x) returned "
                             f"{distributions.describe(q)}; allowed: {ALLOWED}")
    return type(base)


def _params_of(q: Distribution) -> Tensor:
    """The parameters of q as one tensor: logits (Bernoulli, Categorical, OneHotCategorical), or
    (loc, log scale) stacked on a new last dimension (Normal)."""
    base = distributions.base_of(q)
    if type(base) is Normal:
        return torch.stack((base.loc, base.scale.log()), -1)
    return base.logits


class ModelObjective(Objective):
    """The `Objective` of a `Model`: E_q[f] estimated by any estimator that applies to q.

    Exact value and gradient by enumeration (the `exact` estimator) when q is discrete with at
    most `max_configurations` configurations per example. Checked when built: q's family and
    batch shape, and f's shape at a few samples, each an `ObjectiveError` that says what was
    expected and what came instead.
    """

    name = "model"

    def __init__(self, model: Model) -> None:
        super().__init__()
        if not isinstance(model, Model):
            raise ObjectiveError(f"ModelObjective needs an estibench Model, got "
                                 f"{type(model).__name__}")
        for role in ("encoder", "model"):
            module = getattr(model, role)
            if module is not None and not isinstance(module, nn.Module):
                raise ObjectiveError(f"model '{model.name}': {role} must be a torch.nn.Module "
                                     f"(or None), got {type(module).__name__}")
        for role in ("posterior", "f"):
            if not callable(getattr(model, role)):
                raise ObjectiveError(f"model '{model.name}': {role} must be callable, got "
                                     f"{type(getattr(model, role)).__name__}")
        if not isinstance(model.name, str) or not model.name:
            raise ObjectiveError(f"Model.name must be a non-empty string, got {model.name!r}")
        if isinstance(model.max_configurations, bool) or not isinstance(
                model.max_configurations, int) or model.max_configurations < 1:
            raise ObjectiveError(f"model '{model.name}': max_configurations must be an integer "
                                 f">= 1, got {model.max_configurations!r}")
        self.name = model.name
        self.spec = model
        self.encoder = model.encoder
        self.model = model.model
        self.max_configurations = model.max_configurations
        self.differentiable_integrand = bool(model.differentiable)
        self.data = self._checked_input("data", model.data, min_rows=1)
        example = self._checked_input("example_input", model.example_input, min_rows=1)
        self._example = example if example is not None or self.data is None else self.data[:1]
        if next(self.parameters(), None) is None:
            raise ObjectiveError(f"model '{self.name}' has no trainable parameters: give the "
                                 "modules q and f read as encoder= (and model=)")
        self._family, self._independent, self._configurations = self._check()

    # ---------------------------------------------------------------------------- checks
    def _checked_input(self, role: str, x: object, min_rows: int) -> Tensor | None:
        if x is None:
            return None
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < min_rows:
            found = (f"a tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor)
                     else type(x).__name__)
            raise ObjectiveError(f"model '{self.name}': {role} must be a tensor (N, D) with at "
                                 f"least {min_rows} row, got {found}")
        return x

    def _check(self) -> tuple[type[Distribution], int, int | None]:
        """Call posterior and f once on the example input (a few rows of it): the family, the
        number of Independent dimensions and the number of configurations (None: continuous)."""
        x = None if self._example is None else self._example[:CHECK_SAMPLES]
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            try:
                q = self.spec.posterior(x)
            except Exception as err:
                raise ObjectiveError(f"model '{self.name}': posterior(x) failed on the example "
                                     f"input: {_last_line(err)}") from err
            if not isinstance(q, Distribution):
                raise ObjectiveError(f"model '{self.name}': posterior(x) returned "
                                     f"{type(q).__name__}; expected a torch.distributions "
                                     f"object ({ALLOWED})")
            family = _family(q, self.name)
            if x is not None and tuple(q.batch_shape) != (x.shape[0],):
                raise ObjectiveError(
                    f"model '{self.name}': posterior(x) for x of shape {tuple(x.shape)} has "
                    f"batch shape {tuple(q.batch_shape)}; expected ({x.shape[0]},), one per "
                    f"example (the latent's dimensions belong in the event shape: "
                    f"Independent(q, {len(q.batch_shape) - 1}))")
            base = distributions.base_of(q)
            independent = len(q.event_shape) - len(base.event_shape)
            z = q.sample((CHECK_SAMPLES,))
            self._check_value(self._call_f(z, x), z, q)
        configurations = None
        if family is not Normal:
            k, n = support_size(q)
            configurations = k**n
        return family, independent, configurations

    def _call_f(self, z: Tensor, x: Tensor | None) -> Tensor:
        try:
            return self.spec.f(z, x)
        except ObjectiveError:
            raise
        except Exception as err:
            raise ObjectiveError(f"model '{self.name}': f(z, x) failed on samples of shape "
                                 f"{tuple(z.shape)}: {_last_line(err)}") from err

    def _check_value(self, value: object, z: Tensor, q: Distribution) -> Tensor:
        expected = (z.shape[0], *q.batch_shape)
        if not isinstance(value, Tensor):
            raise ObjectiveError(f"model '{self.name}': f(z, x) returned "
                                 f"{type(value).__name__}; expected a tensor of shape "
                                 f"(S, *batch) = {expected}")
        if tuple(value.shape) != expected:
            raise ObjectiveError(
                f"model '{self.name}': f(z, x) returned shape {tuple(value.shape)}; expected "
                f"(S, *batch) = {expected} for z of shape {tuple(z.shape)} (one value per "
                f"sample and example: sum over the latent's own dimensions)")
        if not value.is_floating_point():
            raise ObjectiveError(f"model '{self.name}': f(z, x) returned {value.dtype}; "
                                 "expected a floating-point tensor")
        return value

    # ------------------------------------------------------------------------ the contract
    def example_input(self) -> Tensor | None:
        return self._example

    def posterior_params(self, x: Tensor | None) -> Tensor:
        """q's parameters as one tensor: logits (*batch, *event[, K]), or for a Normal latent
        (loc, log scale) stacked on a last dimension of 2."""
        q = self.spec.posterior(x)
        if not isinstance(q, Distribution) or type(distributions.base_of(q)) is not self._family:
            found = (distributions.describe(q) if isinstance(q, Distribution)
                     else type(q).__name__)
            raise ObjectiveError(f"model '{self.name}': posterior(x) returned {found}, where it "
                                 f"returned {self._family.__name__} before: one family always")
        return _params_of(q)

    def distribution(self, params: Tensor) -> Distribution:
        family = self._family
        if family is Normal:
            base: Distribution = distributions.normal(params[..., 0], params[..., 1].exp())
        elif family is Bernoulli:
            base = distributions.bernoulli(params)
        elif family is OneHotCategorical:
            base = distributions.one_hot_categorical(params)
        else:
            base = Categorical(logits=params, validate_args=False)
        if self._independent:
            return Independent(base, self._independent, validate_args=False)
        return base

    def integrand(self, x: Tensor | None, q: Distribution) -> Callable[[Tensor], Tensor]:
        """f(., x) for samples of q, its shape checked on every call (an `ObjectiveError` with
        the expected and the returned shape)."""
        return lambda z: self._check_value(self._call_f(z, x), z, q)

    def check_bound(self, estimator: Estimator) -> None:
        super().check_bound(estimator)
        relaxes = (estimator.relaxed_samples
                   or type(estimator).relax is not Estimator.relax)
        if relaxes and not self.differentiable_integrand:
            raise EstimatorError(
                f"estimator '{estimator.name}' evaluates f at relaxed samples or differentiates "
                f"it in z; model '{self.name}' has differentiable=False")

    def estimate(
        self,
        x: Tensor | None,
        estimator: Estimator,
        num_samples: int = 1,
        *,
        noise: Tensor | None = None,
        params: Tensor | None = None,
    ) -> EstimatorOutput:
        """E_q[f(z, x)] for batch x estimated by `estimator`: `loss` of q's batch shape."""
        self.check_bound(estimator)
        q = self.distribution(self.posterior_params(x) if params is None else params)
        return estimator(q, self.integrand(x, q), num_samples, noise=noise)

    @property
    def num_configurations(self) -> int | None:
        """Configurations of the latent per example (K^n), None for a continuous latent."""
        return self._configurations

    @property
    def has_exact(self) -> bool:
        n = self._configurations
        return n is not None and n <= self.max_configurations

    def exact(self, x: Tensor | None, params: Tensor | None = None) -> Tensor:
        """E_q[f] per example by enumerating the latent's configurations, differentiable."""
        if not self.has_exact:
            why = ("a continuous latent" if self._configurations is None else
                   f"{self._configurations} latent configurations, more than "
                   f"max_configurations={self.max_configurations}")
            raise NoExactValue(f"objective '{self.name}' has {why}: nothing exact")
        return self.estimate(x, Exact(self.max_configurations), params=params).loss

    def extra_repr(self) -> str:
        size = "continuous" if self._configurations is None else (
            f"{self._configurations} configurations")
        return (f"name={self.name!r}, latent={self._family.__name__}, {size}, "
                f"reads_data={self._example is not None}")


__all__ = ["ALLOWED", "FAMILIES", "Model", "ModelObjective"]
