"""Learned baselines and control variates for the score function: NVIL, MuProp, REBAR, RELAX.

Each subtracts something correlated with f from the learning signal and adds its expectation
back, so the mean is unchanged and the variance can fall:

- nvil: a baseline b_psi(x) and running centring c, independent of the sample;
- muprop: the first-order Taylor expansion of f around the mean-field point, whose expectation
  and gradient are known in closed form;
- rebar, relax: a control variate c evaluated at the relaxed sample z and at z~ ~ p(z | b), the
  relaxed noise re-drawn conditionally on the discrete sample b (the conditional re-noising).

REBAR and RELAX consume two noise streams (u gives b and z, v gives z~; stream 0 is the noise
every other estimator gets, so b is their sample). Their own parameters (eta, the
log-temperature, the network c_psi) minimise the squared gradient estimate with respect to q's
parameters, built with create_graph=True (`aux_loss`); in eval mode that graph is not built.
The caller trains these parameters from `aux_loss` alone (see `Estimator`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical
from torch.nn import functional as F

from . import distributions
from .base import Estimator, EstimatorOutput, Integrand, check_temperature, inside_transform
from .errors import EstimatorError
from .noise import gumbel_max, hard_sample, logistic, neg_gumbel, split_streams
from .score_function import follow_device

DISCRETE = "Bernoulli and OneHotCategorical (optionally inside Independent)"


def _discrete(q: Distribution) -> bool:
    return type(distributions.base_of(q)) in (Bernoulli, OneHotCategorical)


def _per_example(t: Tensor, leading: torch.Size) -> Tensor:
    """t (*leading, ...) flattened after `leading`: (*leading, n)."""
    return t.reshape(*leading, -1)


def _network(estimator: Estimator, current: nn.Module | None, inputs: int, hidden: int,
             like: Tensor) -> nn.Sequential:
    """The one-hidden-layer tanh network R^inputs -> R of `estimator`, built on first use in
    `like`'s dtype and device (outside any torch.func transform), or checked against `inputs`."""
    if current is not None:
        assert isinstance(current, nn.Sequential)
        built = current[0].in_features
        if built != inputs:
            raise EstimatorError(
                f"estimator '{estimator.name}': its network was built for {built} inputs per "
                f"example; this distribution gives {inputs}"
            )
        return current
    if inside_transform():
        raise EstimatorError(
            f"estimator '{estimator.name}': its network is sized by the distribution and cannot "
            f"be built inside a torch.func transform; call estimator.prepare(q) first"
        )
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, 1)).to(
        dtype=like.dtype, device=like.device)


def _apply(network: nn.Module, inputs: Tensor) -> Tensor:
    """network (built by `_network`) on inputs (..., n) -> (...), in the network's dtype,
    returned in the inputs'."""
    first = network[0]  # type: ignore[index]  # an nn.Sequential built by `_network`
    dtype = first.weight.dtype  # next(network.parameters()) walks the modules: 2x slower
    return distributions.cast(network(distributions.cast(inputs, dtype)).squeeze(-1), inputs.dtype)


def _score_surrogate(fz: Tensor, signal: Tensor, log_q: Tensor) -> Tensor:
    """mean_S f + signal * (log q - sg log q): value f, gradient grad f + signal grad log q."""
    return (fz + signal.detach() * (log_q - log_q.detach())).mean(0)


def _linear(theta: Tensor, gradient: Tensor, batch_shape: torch.Size) -> Tensor:
    """A zero-valued term (B,) whose gradient with respect to theta is `gradient` (detached)."""
    return _per_example((theta - theta.detach()) * gradient.detach(), batch_shape).sum(-1)


def _broadcast(coefficient: Tensor, like: Tensor) -> Tensor:
    """coefficient (S, *B) with trailing unit dimensions to multiply `like` (S, *B, ...)."""
    return coefficient.reshape(*coefficient.shape, *[1] * (like.dim() - coefficient.dim()))


# NVIL ----------------------------------------------------------------------------------------


class NVIL(Estimator):
    """NVIL (Mnih & Gregor 2014, "Neural Variational Inference and Learning in Belief
    Networks", arXiv:1402.0030): score function with an input-dependent learned baseline.

    Signal l = f(z); centred l~ = l - c - b_psi(x), with c a running mean of l - b_psi and
    b_psi a one-hidden-layer tanh network reading q's detached parameters (they depend on x,
    so the baseline is input-dependent without a change of signature); normalized
    l^ = l~ / max(1, sqrt(v)) with v a running mean of l~^2 (decay 0.8, v initialised at 1).
    Estimate: l^ grad log q(z) plus f's own gradient. Unbiased before the normalization:
    c and b_psi do not depend on z, and E[grad log q] = 0 kills any such constant. The
    normalization divides by a data-dependent positive scalar: the direction is unbiased, the
    magnitude is not, so `unbiased` is True only with variance_normalization=False. c and v
    come from earlier calls and are updated after each call in training mode only (measuring
    in eval mode freezes them). aux_loss = mean_S (sg(l) - c - b_psi)^2 trains b_psi.

    variance_normalization defaults to True, as in the paper. ZhuSuan's `reinforce` and the
    REBAR code's NVIL drop it (centring only); `variance_normalization=False` is that variant.
    The paper's signal is the whole log p(x, h) - log q(h|x), so the normalization divides the
    whole encoder gradient. An objective that adds an exact term outside f (a VAE's analytic
    KL, `kl="analytic"`) does so through `EstimatorOutput.plus` / `minus`, which scale that
    term's gradient by the same 1 / sqrt(v) (`gradient_scale`): the whole objective's
    gradient is normalized, and its direction is the unnormalized estimator's (scaling the
    score term alone bends the direction, and training then collapses to the prior). A learned
    prior's gradient through such a term is scaled too, unlike the paper's, where the
    generative parameters' gradient is never normalized.
    The baseline learns at 10x the model's learning rate by default, as in the REBAR code.
    Discrete latents only (the paper's belief networks; Gaussian latents have the pathwise
    gradient).

    Cost: 1 evaluation of f per sample, but more than 1.3x REINFORCE's overhead per evaluation
    (`python -m estibench.benchmarks.regression.speed.per_evaluation`): the baseline network's
    forward pass, and the
    backward pass of aux_loss into it, are not evaluations of f.
    """

    name = "nvil"
    supports = "Bernoulli, Categorical and OneHotCategorical (optionally inside Independent)"
    centre: Tensor  # buffers (register_buffer): the running centre and variance of the signal
    variance: Tensor

    def __init__(self, hidden: int = 100, decay: float = 0.8,
                 variance_normalization: bool = True, direct_term: bool = False) -> None:
        super().__init__(direct_term=direct_term)
        if not (isinstance(hidden, int) and hidden >= 1):
            raise EstimatorError(f"estimator 'nvil': hidden must be an integer >= 1, got "
                                 f"{hidden!r}")
        if not 0.0 <= float(decay) < 1.0:
            raise EstimatorError(f"estimator 'nvil': decay must be in [0, 1), got {decay!r}")
        self.hidden, self.decay = hidden, float(decay)
        self.variance_normalization = bool(variance_normalization)
        # the normalization scales the estimate by a data-dependent 1/s: biased in magnitude
        self.unbiased = not self.variance_normalization
        self.register_buffer("centre", torch.zeros(()))
        self.register_buffer("variance", torch.ones(()))
        self.baseline: nn.Module | None = None

    def applies_to(self, q: Distribution) -> bool:
        return type(distributions.base_of(q)) in (Bernoulli, Categorical, OneHotCategorical)

    def features(self, q: Distribution) -> Tensor:
        """q's detached logits per example (*B, n): the baseline's input."""
        return _per_example(distributions.base_of(q).logits.detach(), q.batch_shape)

    def prepare(self, q: Distribution) -> None:
        logits = distributions.base_of(q).logits
        inputs = math.prod(logits.shape[len(q.batch_shape):])  # `features(q)`'s width
        network = _network(self, self.baseline, inputs, self.hidden, logits)
        if network is not self.baseline:  # assigned once: nn.Module.__setattr__ is not free
            self.baseline = network

    def aux_learning_rate(self, model_learning_rate: float) -> float:
        return 10 * model_learning_rate

    def estimate(self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
                 ) -> EstimatorOutput:
        assert self.baseline is not None
        z = hard_sample(q, noise) if noise is not None else q.sample((num_samples,))
        fz = self.evaluate(f, z, num_samples, q)
        learned = _apply(self.baseline, self.features(q))  # (*B)
        signal = fz.detach()
        follow_device(self, ("centre", "variance"), signal)
        centre, variance = (distributions.cast(self.centre, signal.dtype),
                            distributions.cast(self.variance, signal.dtype))
        centred = signal - centre - learned.detach()
        scale = variance.sqrt().clamp_min(1.0) if self.variance_normalization else 1.0
        loss = _score_surrogate(fz, centred / scale, self.sample_log_prob(q, z))
        aux = ((signal - centre - learned) ** 2).mean(0)
        if self.training:
            with torch.no_grad():
                self.centre.mul_(self.decay).add_((1 - self.decay) * (signal - learned).mean())
                self.variance.mul_(self.decay).add_((1 - self.decay) * centred.pow(2).mean())
        return EstimatorOutput(loss, signal.mean(0), z, aux,
                               gradient_scale=1.0 / scale if self.variance_normalization
                               else None)

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, decay={self.decay}, variance_normalization="
                f"{self.variance_normalization}, direct_term={self.direct_term}")


# MuProp --------------------------------------------------------------------------------------


class MuProp(Estimator):
    """MuProp (Gu, Levine, Sutskever, Mnih 2016, "MuProp: Unbiased Backpropagation for
    Stochastic Neural Networks", arXiv:1511.05176): the first-order Taylor expansion of f
    around the mean-field point mu = E[b] as a control variate.

    h(b) = f(mu) + f'(mu).(b - mu) has E_q[h] = f(mu), so grad E[f] = E[(f(b) - h(b)) grad log
    q(b)] + f'(mu).grad mu. Bernoulli: (f(b) - h(b))(b - sigma) + f'(sigma) sigma(1 - sigma);
    categorical: (f(D) - h(D))(D - pi) + J(pi) grad f(pi). Unbiased for every f; the plain
    paper form (the REBAR code's learned scales eta_0, eta_1 and baseline are not offered).
    f is evaluated once at the S samples and once at mu (one call), and differentiated at mu
    with respect to its input only: f's own parameters get grad f(b) alone. Its overhead per
    evaluation can exceed 1.3x REINFORCE's
    (`estibench.benchmarks.regression.speed.per_evaluation`): the slope at
    mu is one more backward pass through f (autograd.grad), not an evaluation.
    """

    name = "muprop"
    supports = DISCRETE
    needs_grad_f = True

    def __init__(self, direct_term: bool = False) -> None:
        super().__init__(direct_term=direct_term)

    def applies_to(self, q: Distribution) -> bool:
        return _discrete(q)

    def estimate(self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
                 ) -> EstimatorOutput:
        assert noise is not None
        b = hard_sample(q, noise)
        mean = distributions.mean_of(q)
        point = mean[None]  # in theta's graph (requires_grad_ is refused inside torch.func)
        fb, f_mean = self.evaluate_sets(f, [b, point], q)
        if torch.is_grad_enabled() and point.requires_grad:
            (slope,) = torch.autograd.grad(f_mean.sum(), point, retain_graph=True)
        else:  # nothing differentiates q's parameters: the slope cannot matter
            slope = torch.zeros_like(point)
        taylor = f_mean.detach() + _per_example(slope * (b - point.detach()),
                                                fb.shape).sum(-1)
        loss = _score_surrogate(fb, fb.detach() - taylor, self.sample_log_prob(q, b))
        added_back = _per_example((mean - mean.detach()) * slope[0], q.batch_shape).sum(-1)
        return EstimatorOutput(loss + added_back, fb.detach().mean(0), b)


# REBAR and RELAX -----------------------------------------------------------------------------


def _conditional_logistic(theta: Tensor, v: Tensor, b: Tensor) -> Tensor:
    """z~ = theta + logit(v') with v' uniform on the part of (0, 1) that maps to b:
    v' = v (1 - sigma) for b = 0 and v sigma + 1 - sigma for b = 1 (in logs, for stability);
    differentiable in theta at fixed (v, b)."""
    one_log_v = torch.log1p(-(1 - v) * torch.sigmoid(theta))  # b = 1: log v'
    one_log_rest = torch.log1p(-v) + F.logsigmoid(theta)  # b = 1: log (1 - v')
    zero_log_v = torch.log(v) + F.logsigmoid(-theta)
    zero_log_rest = torch.log1p(-v * torch.sigmoid(-theta))
    return theta + torch.where(b > 0, one_log_v - one_log_rest, zero_log_v - zero_log_rest)


def _conditional_gumbel(log_pi: Tensor, v: Tensor, b: Tensor) -> Tensor:
    """z~ ~ p(z | argmax z = b) for z = log pi + Gumbel (normalized log pi): the maximum is a
    standard Gumbel, z~_b = -log(-log v_b), and the others are Gumbels of location log pi_i
    truncated below it, z~_i = -log(-log v_i / pi_i - log v_b)."""
    exponential = -torch.log(v)
    log_top = torch.log((exponential * b).sum(-1, keepdim=True))
    others = -torch.logaddexp(torch.log(exponential) - log_pi, log_top)
    return torch.where(b > 0, -log_top, others)


class _ConditionalRelaxation(Estimator):
    """The shared REBAR / RELAX estimate, for a control variate c of the relaxed sample:

        g = (f(b) - c(z~)) grad log q(b) + grad c(z) - grad c(z~),

    z = theta + noise(u) (b = H(z)), z~ ~ p(z | b) from v, both differentiated in theta at
    fixed noise (and b). Unbiased for every c: E[c(z~) grad log q(b)] + E[grad c(z~)] =
    grad E_b E_{z~|b}[c(z~)] = grad E[c(z)], as z~ given b, with b ~ q, is distributed as z.
    The pathwise part is taken with respect to q's parameters only (f's own parameters get
    grad f(b)); g is the gradient with respect to q's logits theta (for a categorical q, in
    the unnormalized logits' coordinates: see `estimate`), and aux_loss = |g|^2."""

    supports = DISCRETE
    needs_grad_f = True
    noise_streams = 2

    def __init__(self, temperature: float, direct_term: bool) -> None:
        super().__init__(direct_term=direct_term)
        check_temperature(self.name, temperature)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(float(temperature))))

    def applies_to(self, q: Distribution) -> bool:
        return _discrete(q)

    def controls(self, f: Integrand, q: Distribution, b: Tensor, relaxed: Tensor
                 ) -> tuple[Tensor, Tensor]:
        """(f(b) (S, *B), c at the relaxed samples [sigma(z), sigma(z~)] (2S, *B))."""
        raise NotImplementedError

    def estimate(self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
                 ) -> EstimatorOutput:
        assert noise is not None
        u, v = split_streams(noise, 2)
        base = distributions.base_of(q)
        theta = base.logits
        temperature = self.log_temperature.exp()
        categorical = not isinstance(base, Bernoulli)
        if categorical:  # theta = log pi, normalized (Categorical keeps its logits so)
            mapped = neg_gumbel(u)  # -Gumbel(u), for b and z alike
            b = gumbel_max(q, mapped)
            z = theta - mapped
            z_tilde = _conditional_gumbel(theta, v, b)
            y = torch.cat([z, z_tilde]) / temperature
            # softmax as exp(y - logsumexp y): over a few categories faster on CPU, and in
            # the double backward of aux_loss
            relaxed = (y - y.logsumexp(-1, keepdim=True)).exp()
            mean = theta.exp()
        else:
            b = hard_sample(q, u)
            z = theta + logistic(u)
            z_tilde = _conditional_logistic(theta, v, b)
            relaxed = torch.sigmoid(torch.cat([z, z_tilde]) / temperature)
            mean = torch.sigmoid(theta)
        fb, c = self.controls(f, q, b, relaxed)
        c_z, c_tilde = c.chunk(2)
        score = _broadcast(fb.detach() - c_tilde, b) * (b - mean)  # per coordinate of theta
        if torch.is_grad_enabled() and theta.requires_grad:
            (pathwise,) = torch.autograd.grad((c_z - c_tilde).sum(), theta,
                                              create_graph=self.training, retain_graph=True)
            if categorical:  # in the unnormalized logits r: theta = r - logsumexp r has the
                # Jacobian I - 1 pi^T, so grad_r = grad_theta - pi sum(grad_theta) (and its
                # derivative in r, through pi = exp(theta), is that of softmax(r))
                pathwise = pathwise - mean * pathwise.sum(-1, keepdim=True)
        else:
            pathwise = torch.zeros_like(theta)
        gradient = score.mean(0) + pathwise / num_samples
        loss = fb.mean(0) + _linear(theta, gradient, q.batch_shape)
        aux = _per_example(gradient.pow(2), q.batch_shape).sum(-1) if self.training else None
        return EstimatorOutput(loss, fb.detach().mean(0), b, aux)

    @property
    def current_temperature(self) -> float:
        return self.log_temperature.detach().exp().item()


class REBAR(_ConditionalRelaxation):
    """REBAR (Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein 2017, "REBAR: Low-variance,
    unbiased gradient estimates for discrete latent variable models", arXiv:1703.07370):
    c = eta f(sigma_lambda(.)), f itself at the Concrete relaxation (sigmoid(z / lambda), or
    softmax(z / lambda) for categorical latents, Tucker et al.'s appendix and Grathwohl et
    al.'s "generalized REBAR").

    eta (init 1) and the log-temperature (lambda init 0.5, as in the REBAR code) are trained
    on the squared estimate ("dynamic REBAR"), at 10x the model's learning rate as the REBAR
    code's extra optimizer. 3 evaluations of f per sample (b, sigma(z), sigma(z~)), in one
    call; the paper's formula, without the NN baseline the official code also subtracts.
    Overhead per evaluation above 1.3x REINFORCE's
    (`estibench.benchmarks.regression.speed.per_evaluation`): the
    conditional re-noising, the gradient of f at the two relaxed points taken with
    autograd.grad, and in training the double backward of the variance objective.
    """

    name = "rebar"

    def __init__(self, temperature: float = 0.5, eta: float = 1.0,
                 direct_term: bool = False) -> None:
        super().__init__(temperature, direct_term)
        self.eta = nn.Parameter(torch.tensor(float(eta)))

    def aux_learning_rate(self, model_learning_rate: float) -> float:
        return 10 * model_learning_rate

    def controls(self, f, q, b, relaxed):  # type: ignore[no-untyped-def]
        fb, f_relaxed = self.evaluate_sets(f, [b, relaxed], q)
        return fb, self.eta * f_relaxed

    def extra_repr(self) -> str:
        return (f"temperature={self.current_temperature:.4g}, eta={self.eta.item():.4g}, "
                f"direct_term={self.direct_term}")


class RELAX(_ConditionalRelaxation):
    """RELAX (Grathwohl, Choi, Wu, Roeder, Duvenaud 2018, "Backpropagation through the Void",
    arXiv:1711.00123): c = c_psi, a learned network of the relaxed sample (input
    2 sigma_lambda(z) - 1 per example, one hidden layer of `hidden` tanh units, as the paper's
    toy), plus f(sigma_lambda(.)) with relaxed_f=True (the paper's VAE form; with c_psi = 0 that
    is REBAR at eta = 1).

    psi and the log-temperature are trained on the squared estimate with Adam at lr 0.01 (the
    paper's toy code). Initial log-temperature: 0.5 (lambda = e^0.5), the RELAX toy code's;
    google-research's disarm/binary RELAX starts at log 0.1 (pass temperature=0.1). Cost: 1
    evaluation of f per sample (3 with relaxed_f), 2 of c_psi, and a double backward when
    training: the overhead per evaluation of f is several times REINFORCE's
    (`estibench.benchmarks.regression.speed.per_evaluation`), as the network's two passes, its
    gradient in the relaxed sample and the double backward are not evaluations of f.
    """

    name = "relax"

    def __init__(self, temperature: float = math.exp(0.5), hidden: int = 10,
                 relaxed_f: bool = False, direct_term: bool = False) -> None:
        super().__init__(temperature, direct_term)
        if not (isinstance(hidden, int) and hidden >= 1):
            raise EstimatorError(f"estimator 'relax': hidden must be an integer >= 1, got "
                                 f"{hidden!r}")
        self.hidden, self.relaxed_f = hidden, bool(relaxed_f)
        self.network: nn.Module | None = None

    def prepare(self, q: Distribution) -> None:
        if not _discrete(q):
            return  # refused by `check`
        logits = distributions.base_of(q).logits
        inputs = math.prod(q.event_shape)
        network = _network(self, self.network, inputs, self.hidden, logits)
        if network is not self.network:  # assigned once: nn.Module.__setattr__ is not free
            self.network = network

    def aux_learning_rate(self, model_learning_rate: float) -> float:
        return 0.01

    def controls(self, f, q, b, relaxed):  # type: ignore[no-untyped-def]
        assert self.network is not None
        leading = relaxed.shape[: relaxed.dim() - len(q.event_shape)]
        c = _apply(self.network, _per_example(2 * relaxed - 1, leading))
        if not self.relaxed_f:
            return self.evaluate(f, b, b.shape[0], q), c
        fb, f_relaxed = self.evaluate_sets(f, [b, relaxed], q)
        return fb, c + f_relaxed

    def extra_repr(self) -> str:
        return (f"temperature={self.current_temperature:.4g}, hidden={self.hidden}, "
                f"relaxed_f={self.relaxed_f}, direct_term={self.direct_term}")
