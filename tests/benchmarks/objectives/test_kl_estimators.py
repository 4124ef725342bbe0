"""The Monte Carlo KL estimators of the VAEs (kl = "k1" | "k2" | "k3" | "k3_unbiased").

With z ~ q and log r = log p(z) - log q(z): k1 = -log r, k2 = (log r)^2 / 2, k3 = (r - 1) - log r,
inside f = log p(x|z) - k(z). A score-function estimator sees k through its value, with q's
parameters held fixed inside k (REINFORCE's default), except for "k3_unbiased", whose k3 reads
q's live parameters. Its expected gradient is therefore, by the score-function identity,

    G_v = grad sum_z [ stop_grad(q(z)) f_v(z) + q(z) stop_grad(f_v(z)) ],

which the tests enumerate over the latent's configurations (a Bernoulli VAE with 3 bits and a
learned prior; a categorical VAE with 2 x 3 categories and a uniform prior), writing the densities
by hand. The implementation's expected gradient is enumerated too: REINFORCE with one sample,
forced to each configuration by its noise, weighted by q(z). The two must agree to rounding.

What the enumeration shows, with G the true ELBO gradient and phi q's parameters (derived in
`estibench.benchmarks.objectives.kl`): G_k1 = G and G_k3_unbiased = G for every parameter;
G_k3 - G = grad_phi KL(p || q) = -sum_z p(z) grad_phi log q(z), and
G_k2 - G = 2 grad_phi KL(q || p) - grad_phi E_q[k2], both far from zero; the realistic estimator
(RLOO, S = 3) matches G_v in mean and tells k2 and k3 apart from G (calibrated test,
tests/helpers.py).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.objectives import ObjectiveError
from tests.estimator_oracles import bernoulli_noise
from tests.helpers import (
    Summary,
    binary_batch,
    exact_gradients,
    flat,
    gradient_estimates,
    role_parameters,
    small_bernoulli_vae,
    small_categorical_vae,
)

KINDS = ("k1", "k2", "k3", "k3_unbiased")
MODELS = {"bernoulli_vae": small_bernoulli_vae, "categorical_vae": small_categorical_vae}
ROLES = ("params", "encoder", "decoder")


def configurations(objective) -> torch.Tensor:
    """Every latent configuration: (C, D) bits or (C, N, K) one-hot rows, float64."""
    if objective.name == "bernoulli_vae":
        return torch.tensor(list(itertools.product((0.0, 1.0), repeat=objective.latent_dim)),
                            dtype=torch.float64)
    eye = torch.eye(objective.categories, dtype=torch.float64)
    rows = itertools.product(range(objective.categories), repeat=objective.variables)
    return torch.stack([eye[list(r)] for r in rows])


def log_q_by_hand(objective, logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log q(z | x): logits (B, ...) and configurations z (C, ...) -> (C, B)."""
    z = z[:, None]
    if objective.name == "bernoulli_vae":
        return (z * F.logsigmoid(logits) + (1 - z) * F.logsigmoid(-logits)).sum(-1)
    return (z * torch.log_softmax(logits, -1)).sum((-1, -2))


def log_prior_by_hand(objective, z: torch.Tensor) -> torch.Tensor:
    """log p(z), (C, 1): the learned factorised Bernoulli prior, or the uniform categorical."""
    if objective.name == "bernoulli_vae":
        a = objective.prior_logits
        return (z * F.logsigmoid(a) + (1 - z) * F.logsigmoid(-a)).sum(-1)[:, None]
    return torch.full((z.shape[0], 1), -objective.variables * math.log(objective.categories),
                      dtype=torch.float64)


def k_by_hand(kind: str, log_ratio: torch.Tensor) -> torch.Tensor:
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return log_ratio**2 / 2
    return log_ratio.exp() - 1 - log_ratio


def gradients(objective, x: torch.Tensor, surrogate) -> dict[str, torch.Tensor]:
    """Autograd of surrogate(params).sum() w.r.t. q's parameters (B, ...), the encoder and
    the decoder (the prior's logits included)."""
    enc, dec = role_parameters(objective, "encoder"), role_parameters(objective, "decoder")
    params = objective.posterior_params(x)
    grads = torch.autograd.grad(surrogate(params).sum(), [params, *enc, *dec],
                                allow_unused=True)
    return {"params": grads[0], "encoder": flat(grads[1:1 + len(enc)], enc),
            "decoder": flat(grads[1 + len(enc):], dec)}


def expected_gradient(objective, x: torch.Tensor, kind: str | None) -> dict[str, torch.Tensor]:
    """G_v by enumeration (module docstring); kind None: the true ELBO's gradient,
    grad sum_z q(z) (log p(x|z) + log p(z) - log q(z))."""
    z = configurations(objective)
    log_lik = objective.log_likelihood(x, z[:, None].expand(-1, x.shape[0],
                                                             *z.shape[1:]))  # (C, B)
    log_prior = log_prior_by_hand(objective, z)

    def surrogate(params: torch.Tensor) -> torch.Tensor:
        log_q = log_q_by_hand(objective, params, z)
        q = log_q.exp()
        if kind is None:
            return (q * (log_lik + log_prior - log_q)).sum(0)
        held = log_q if kind == "k3_unbiased" else log_q_by_hand(objective, params.detach(), z)
        f = log_lik - k_by_hand(kind, log_prior - held)
        return (q.detach() * f + q * f.detach()).sum(0)

    return gradients(objective, x, surrogate)


def forcing_noise(objective, logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Uniforms (1, B, ...) that the noise maps send to the configuration z for every input:
    the Bernoulli threshold's side, or a Gumbel of about +28 on the chosen category and -3.3
    on the others."""
    target = z.expand_as(logits)
    if objective.name == "bernoulli_vae":
        return bernoulli_noise(logits.detach(), target)[None]
    return torch.where(target > 0.5, 1 - 1e-12, 1e-12)[None]


def implementation_expectation(objective, x: torch.Tensor,
                               estimator_name: str = "reinforce") -> dict[str, torch.Tensor]:
    """sum_z q(z) (the estimate from the sample z), REINFORCE with S = 1 and no baseline."""
    estimator = estimators.get(estimator_name)
    configs = configurations(objective)

    def surrogate(params: torch.Tensor) -> torch.Tensor:
        total = 0.0
        q = log_q_by_hand(objective, params, configs).exp().detach()  # (C, B)
        for c, z in enumerate(configs):
            noise = forcing_noise(objective, params, z)
            out = objective.estimate(x, estimator, 1, noise=noise, params=params)
            assert torch.equal(out.samples[0], z.expand_as(out.samples[0]))  # forced
            total = total + q[c] * out.loss
        return total

    return gradients(objective, x, surrogate)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("model", list(MODELS))
def test_each_kl_estimator_has_its_enumerated_expected_gradient(model: str) -> None:
    x = binary_batch(3, 8)
    truth = expected_gradient(MODELS[model]("analytic"), x, None)
    library = exact_gradients(MODELS[model]("analytic"), x)
    for role in ROLES:  # the by-hand reference is the library's exact gradient
        assert close(truth[role], library[role]), role
    for kind in ("sampled", *KINDS):
        objective = MODELS[model](kind)
        derived = expected_gradient(objective, x, "k1" if kind == "sampled" else kind)
        implemented = implementation_expectation(objective, x)
        for role in ROLES:
            assert close(implemented[role], derived[role]), (kind, role)


@pytest.mark.parametrize("model", list(MODELS))
def test_k1_and_k3_unbiased_give_the_kl_gradient_k2_and_k3_do_not(model: str) -> None:
    x = binary_batch(3, 8)
    objective = MODELS[model]("analytic")
    truth = expected_gradient(objective, x, None)
    got = {kind: expected_gradient(objective, x, kind) for kind in KINDS}
    for kind in ("k1", "k3_unbiased"):
        for role in ROLES:
            assert close(got[kind][role], truth[role]), (kind, role)

    # The closed forms of the two biases for q's parameters, enumerated.
    z = configurations(objective)
    log_prior = log_prior_by_hand(objective, z).detach()

    def forward_kl(params):  # KL(p || q) = sum_z p(z) (log p(z) - log q(z))
        return (log_prior.exp() * (log_prior - log_q_by_hand(objective, params, z))).sum(0)

    def reverse_kl(params):
        log_q = log_q_by_hand(objective, params, z)
        return (log_q.exp() * (log_q - log_prior)).sum(0)

    def expected_k2(params):
        log_q = log_q_by_hand(objective, params, z)
        return (log_q.exp() * (log_prior - log_q) ** 2 / 2).sum(0)

    grad_forward = gradients(objective, x, forward_kl)["params"]
    grad_reverse = gradients(objective, x, reverse_kl)["params"]
    grad_k2 = gradients(objective, x, expected_k2)["params"]
    k3_bias = got["k3"]["params"] - truth["params"]
    k2_bias = got["k2"]["params"] - truth["params"]
    assert close(k3_bias, grad_forward)
    assert close(k2_bias, 2 * grad_reverse - grad_k2)
    scale = float(truth["params"].norm())
    assert float(k3_bias.norm()) > 0.05 * scale and float(k2_bias.norm()) > 0.05 * scale
    for kind in ("k2", "k3"):
        assert float((got[kind]["encoder"] - truth["encoder"]).norm()) > 1e-3, kind


# The realistic estimator: RLOO (S = 3), its mean against G_v ---------------------------------

@pytest.mark.parametrize("kind", ["k2", "k3", "k3_unbiased"])
@pytest.mark.parametrize("model", list(MODELS))
def test_rloo_mean_matches_the_enumerated_gradient(model: str, kind: str) -> None:
    x = binary_batch(3, 8)
    objective = MODELS[model](kind)
    derived = expected_gradient(objective, x, kind)
    truth = expected_gradient(objective, x, None)
    torch.manual_seed(31)
    estimates = gradient_estimates(objective, x, estimators.get("reinforce", baseline="loo"),
                                   3, 200, 40)
    for role in ROLES:
        Summary.of(getattr(estimates, role)).assert_matches(derived[role],
                                                            f"{model} {kind} {role}")
    if kind != "k3_unbiased":  # biased for the KL: the same estimates reject the truth
        Summary.of(estimates.params).assert_rejects(truth["params"], f"{model} {kind}")


# Options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(MODELS))
def test_k1_is_sampled_and_exact_is_the_elbo(model: str) -> None:
    """kl="k1" and kl="sampled" are one computation (the same numbers from the same noise, for
    a score-function and a relaxed estimator); `exact` is the ELBO whatever the estimator of
    the KL (E_q[k2] is not the KL)."""
    x = binary_batch(3, 8)
    sampled, k1 = MODELS[model]("sampled"), MODELS[model]("k1")
    for name, options in (("reinforce", {"baseline": "loo"}), ("gumbel_softmax", {})):
        outs = []
        for objective in (sampled, k1):
            torch.manual_seed(5)
            outs.append(objective.estimate(x, estimators.get(name, **options), 3))
        assert torch.equal(outs[0].loss, outs[1].loss) and torch.equal(outs[0].value,
                                                                       outs[1].value)
    analytic = MODELS[model]("analytic").exact(x)
    for kind in KINDS:
        torch.testing.assert_close(MODELS[model](kind).exact(x), analytic, rtol=1e-10,
                                   atol=1e-10)


def test_bad_kl_values_are_refused_by_name() -> None:
    with pytest.raises(ObjectiveError) as err:
        objectives.get("bernoulli_vae", kl="k4")
    for part in ("kl", "'k4'", "analytic, sampled, k1, k2, k3, k3_unbiased"):
        assert part in str(err.value), str(err.value)
    with pytest.raises(ObjectiveError) as err:
        objectives.get("sbn", kl="k3")
    for part in ("kl", "'k3'", "analytic, sampled, k1", "sigmoid belief net"):
        assert part in str(err.value), str(err.value)
    objectives.get("sbn", kl="k1")  # k1 is the sampled KL there too
