"""Objectives: the registry, which estimator applies where, every pair runs or refuses, bounds,
exact values against brute force, the linear-Gaussian closed forms, the conditional VAE split."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.objectives import NoExactValue, ObjectiveError
from estibench.estimators import UnsupportedDistributionError
from tests.helpers import (
    Summary,
    binary_batch,
    bonferroni_bound,
    gaussian_batch,
    small_bernoulli_vae,
    small_categorical_vae,
    small_linear_gaussian,
)

ALL = ["bernoulli_toy", "bernoulli_vae", "categorical_vae", "conditional_vae", "gaussian_toy",
       "gaussian_vae", "linear_gaussian"]
TOYS = {"bernoulli_toy", "gaussian_toy"}
SMALL = {
    "bernoulli_toy": dict(dims=3),
    "gaussian_toy": dict(dims=3),
    "linear_gaussian": dict(input_dim=8, latent_dim=2),
    "gaussian_vae": dict(input_dim=8, latent_dim=2, hidden=8),
    "categorical_vae": dict(input_dim=8, variables=2, categories=3, hidden=8),
    "bernoulli_vae": dict(input_dim=8, latent_dim=3, hidden=8),
    "conditional_vae": dict(input_dim=8, latent_dim=2, hidden=8),
}
ESTIMATORS = {
    "pathwise": {},
    "reinforce": {},
    "reinforce_ema": {"baseline": "ema"},
    "reinforce_loo": {"baseline": "loo"},
    "gumbel_softmax": {},
    "st_gumbel": {},
    "straight_through": {},
    "exact": {},
}
GAUSSIAN = {"gaussian_toy", "linear_gaussian", "gaussian_vae", "conditional_vae"}
DISCRETE = {"bernoulli_toy", "categorical_vae", "bernoulli_vae"}
RELAXED = {"gumbel_softmax", "st_gumbel", "straight_through"}


def build_estimator(key: str) -> estimators.Estimator:
    return estimators.get(key.split("_")[0] if key.startswith("reinforce") else key,
                          **ESTIMATORS[key])


def applies(objective: str, estimator: str, small: bool) -> bool:
    """The applicability table as it should be."""
    if estimator.startswith("reinforce"):
        return True
    if estimator == "pathwise":
        return objective in GAUSSIAN
    if estimator in RELAXED:
        return objective in DISCRETE
    assert estimator == "exact"
    return objective == "bernoulli_toy" or (small and objective in DISCRETE)


def test_available_lists_all_seven() -> None:
    assert len(ALL) == 7 and set(ALL) <= set(objectives.available())


@pytest.mark.parametrize("small", [True, False], ids=["small", "default-size"])
@pytest.mark.parametrize("name", ALL)
def test_applicability_table(name: str, small: bool) -> None:
    torch.manual_seed(80)
    objective = objectives.get(name, **(SMALL[name] if small else {}))
    for key in ESTIMATORS:
        if applies(name, key, small):
            objective.check(build_estimator(key))
        else:
            with pytest.raises(UnsupportedDistributionError) as info:
                objective.check(build_estimator(key))
            assert f"'{key.split('_')[0] if key.startswith('reinforce') else key}'" in str(
                info.value)
    assert objective.has_exact == (name in TOYS or name == "linear_gaussian"
                                   or (small and name in DISCRETE))


def data_for(name: str, batch: int = 3) -> torch.Tensor | None:
    return None if name in TOYS else binary_batch(batch, SMALL[name]["input_dim"]).float()


def _pairs():
    for name in ALL:
        for kl in ([None] if name in TOYS else ["analytic", "sampled"]):
            for key in ESTIMATORS:
                yield name, kl, key


@pytest.mark.parametrize(("name", "kl", "key"), list(_pairs()))
def test_every_objective_with_every_estimator_runs_or_refuses(name, kl, key) -> None:
    torch.manual_seed(81)
    objective = objectives.get(name, **SMALL[name], **({} if kl is None else {"kl": kl}))
    estimator = build_estimator(key)
    x = data_for(name)
    if not applies(name, key, small=True):
        with pytest.raises(UnsupportedDistributionError):
            objective.check(estimator)
        with pytest.raises(UnsupportedDistributionError):  # estimate refuses the same way
            objective.estimate(x, estimator, 2)
        return
    objective.check(estimator)
    out = objective.estimate(x, estimator, 2)
    assert out.loss.shape == out.value.shape == (3,)
    assert torch.isfinite(out.loss).all() and torch.isfinite(out.value).all()
    (-out.loss).sum().backward()
    grads = {n: p.grad for n, p in objective.named_parameters() if p.grad is not None}
    assert grads, "no parameter received a gradient"
    for n, g in grads.items():
        assert torch.isfinite(g).all(), n
    if name not in TOYS:
        # The encoder and the decoder both learn from every estimator.
        groups = objective.parameter_groups()
        assert any(n in grads for n in groups["encoder"])
        assert any(n in grads for n in groups["decoder"])


# Errors --------------------------------------------------------------------------------------

def refusal(call, *fragments: str) -> str:
    with pytest.raises(ObjectiveError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_objective_errors_name_the_field_the_value_and_what_is_allowed() -> None:
    message = refusal(lambda: objectives.get("categorical_vea"),
                      "unknown objective 'categorical_vea'", "did you mean 'categorical_vae'?")
    assert all(name in message for name in ALL)
    refusal(lambda: objectives.get("categorical_vae", variabels=3),
            "objective 'categorical_vae' has no option 'variabels'",
            "did you mean 'variables'?", "categories")
    refusal(lambda: objectives.get("bernoulli_vae", kl="exact"), "kl", "'exact'",
            "analytic, sampled")
    objective = small_categorical_vae()
    refusal(lambda: objective.elbo(binary_batch(2, 8), estimators.get("exact"), kl="mc"),
            "kl", "'mc'", "analytic, sampled")
    refusal(lambda: objectives.get("gaussian_toy", std=0.0), "std", "0.0", "> 0")
    refusal(lambda: objectives.get("bernoulli_toy", dims=0), "dims", "0", ">= 1")
    refusal(lambda: objectives.get("linear_gaussian", noise_std=-1.0), "noise_std", "-1.0")
    refusal(lambda: objectives.get("gaussian_vae", activation="gelu"), "activation", "'gelu'",
            "tanh")


def test_no_exact_value_where_there_is_none() -> None:
    big = objectives.get("categorical_vae", input_dim=8, variables=8, categories=8, hidden=8)
    x = binary_batch(2, 8).float()
    for call in (lambda: big.exact(x), lambda: big.log_marginal(x)):
        with pytest.raises(NoExactValue, match="16777216 latent configurations"):
            call()
    gaussian = objectives.get("gaussian_vae", **SMALL["gaussian_vae"])
    with pytest.raises(NoExactValue, match="gaussian_vae"):
        gaussian.exact(x)
    with pytest.raises(NoExactValue, match="gaussian_vae"):
        gaussian.log_marginal(x)
    assert not gaussian.has_exact and not gaussian.has_log_marginal


@pytest.mark.parametrize("name", sorted(set(ALL) - TOYS))
def test_models_run_in_float64(name: str) -> None:
    """A model converted with .double() computes in float64 throughout (priors included)."""
    torch.manual_seed(82)
    objective = objectives.get(name, **SMALL[name]).double()
    x = data_for(name).double()
    estimator = build_estimator("pathwise" if name in GAUSSIAN else "reinforce")
    objective.check(estimator)  # the applicability check builds its example in float64 too
    assert objective.estimate(x, estimator, 2).loss.dtype == torch.float64
    assert objective.iwae(x, 3).dtype == torch.float64
    if objective.has_exact:
        assert objective.exact(x).dtype == torch.float64
        assert objective.log_marginal(x).dtype == torch.float64


# Exact values against brute force --------------------------------------------------------------

def discrete_configurations(objective):
    """Every latent configuration as the decoder reads it, with log p(z) computed by hand."""
    if objective.name == "categorical_vae":
        n, k = objective.variables, objective.categories
        for config in itertools.product(range(k), repeat=n):
            z = F.one_hot(torch.tensor(config), k).double()
            yield config, z, -n * math.log(k)
    else:
        prior = objective.prior_logits
        for config in itertools.product((0, 1), repeat=objective.latent_dim):
            z = torch.tensor(config, dtype=torch.float64)
            yield config, z, (z * F.logsigmoid(prior) + (1 - z) * F.logsigmoid(-prior)).sum()


def log_likelihood_by_hand(objective, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    logits = objective.decoder(z.reshape(-1))
    return (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum()


def log_q_by_hand(objective, logits: torch.Tensor, config) -> torch.Tensor:
    if objective.name == "categorical_vae":
        logp = torch.log_softmax(logits, -1)
        return sum(logp[i, c] for i, c in enumerate(config))
    c = torch.tensor(config, dtype=logits.dtype)
    return (c * F.logsigmoid(logits) + (1 - c) * F.logsigmoid(-logits)).sum()


@pytest.mark.parametrize("kl", ["analytic", "sampled"])
@pytest.mark.parametrize("factory", [small_categorical_vae, small_bernoulli_vae])
def test_discrete_log_marginal_and_exact_elbo_equal_brute_force(factory, kl) -> None:
    """Values, and for the ELBO also its gradient w.r.t. every parameter: `exact` is the
    reference gradient of the unbiasedness tests, so it is checked against a loop here."""
    objective = factory(kl)
    x = binary_batch(3, 8)
    log_marginal = objective.log_marginal(x)
    elbo = objective.exact(x)
    brute_elbo = []
    for b in range(x.shape[0]):
        logits = objective.posterior_params(x[b : b + 1])[0]
        joints, elbo_terms = [], []
        for config, z, log_prior in discrete_configurations(objective):
            joint = log_likelihood_by_hand(objective, x[b], z) + log_prior
            log_q = log_q_by_hand(objective, logits, config)
            joints.append(joint)
            elbo_terms.append(log_q.exp() * (joint - log_q))
        assert len(joints) == objective.num_configurations
        by_hand = torch.logsumexp(torch.stack(joints), 0).detach()
        torch.testing.assert_close(log_marginal[b], by_hand, rtol=1e-12, atol=1e-10)
        brute_elbo.append(torch.stack(elbo_terms).sum())
    brute_elbo = torch.stack(brute_elbo)
    torch.testing.assert_close(elbo, brute_elbo, rtol=1e-12, atol=1e-10)
    params = list(objective.parameters())
    grads = torch.autograd.grad(elbo.sum(), params, allow_unused=True)
    brute = torch.autograd.grad(brute_elbo.sum(), params, allow_unused=True)
    for (name, _), g, o in zip(objective.named_parameters(), grads, brute, strict=True):
        assert o is not None and g is not None, name
        torch.testing.assert_close(g, o, rtol=1e-9, atol=1e-11, msg=name)
    # And the bound holds strictly for an untrained encoder.
    assert (elbo.detach() < log_marginal - 1e-3).all()


def test_log_marginal_chunks_agree() -> None:
    objective = small_categorical_vae()
    x = binary_batch(4, 8)
    torch.testing.assert_close(objective.log_marginal(x, chunk=2), objective.log_marginal(x),
                               rtol=1e-12, atol=1e-12)


# Bounds -----------------------------------------------------------------------------------------

def _sharpened(objective):
    """All weights x3: a sharper untrained model whose q is far from its posterior, so the
    bounds differ by more than their noise (at the default initialisation the gaps are
    hundredths of a nat)."""
    with torch.no_grad():
        for p in objective.parameters():
            p.mul_(3.0)
    return objective


def _bound_models():
    lg = small_linear_gaussian()
    return {
        "linear_gaussian": (lg, gaussian_batch(lg, 3)),
        "categorical_vae": (_sharpened(small_categorical_vae()), binary_batch(3, 8)),
        "bernoulli_vae": (_sharpened(small_bernoulli_vae()), binary_batch(3, 8)),
    }


@pytest.mark.parametrize("model", ["linear_gaussian", "categorical_vae", "bernoulli_vae"])
def test_elbo_iwae_and_log_marginal_are_ordered(model: str) -> None:
    objective, x = _bound_models()[model]
    replicas = 1000
    xr = x.repeat(replicas, 1)
    torch.manual_seed(83)
    ks = [1, 4, 16, 64]
    iwae = {k: objective.iwae(xr, k).reshape(replicas, -1) for k in ks}
    summaries = {k: Summary.of(v) for k, v in iwae.items()}
    log_p = objective.log_marginal(x)
    elbo = objective.exact(x).detach()
    assert (elbo <= log_p).all()  # exact quantities: no statistics needed

    # IWAE-1 is the ELBO; IWAE-k stays below log p(x).
    summaries[1].assert_matches(elbo, f"{model}: IWAE-1 = ELBO")
    bound = bonferroni_bound(len(ks) * x.shape[0])
    for k in ks:
        z = (summaries[k].mean - log_p.detach()) / summaries[k].se
        assert float(z.max()) <= bound, f"{model}: IWAE-{k} above log p(x) (z = {z.tolist()})"
    # Non-decreasing in k, statistically; and strictly increasing from 1 to 64 (power: this
    # model's encoder is not the posterior, so the bounds do differ).
    for a, b in itertools.pairwise(ks):
        diff = iwae[b] - iwae[a]  # independent draws: se of the difference from both
        z = diff.mean(0) / torch.sqrt(summaries[a].se**2 + summaries[b].se**2)
        assert float(z.min()) >= -bound, f"{model}: IWAE-{b} < IWAE-{a} (z = {z.tolist()})"
    gain = (summaries[64].mean - summaries[1].mean) / torch.sqrt(
        summaries[64].se ** 2 + summaries[1].se ** 2)
    assert float(gain.min()) > bound
    # IWAE-64 closes most of the gap to log p(x).
    assert ((log_p - summaries[64].mean) < 0.5 * (log_p - summaries[1].mean)).all()


# Linear Gaussian closed forms -------------------------------------------------------------------

def test_linear_gaussian_log_marginal_by_hand() -> None:
    objective = small_linear_gaussian()
    x = gaussian_batch(objective, 4)
    w = objective.weight.detach().numpy()
    b = objective.bias.detach().numpy()
    var = math.exp(2 * float(objective.log_noise_std.detach()))
    cov = w @ w.T + var * np.eye(w.shape[0])
    _, logdet = np.linalg.slogdet(cov)
    for i, xi in enumerate(x.numpy()):
        r = xi - b
        expected = -0.5 * (len(r) * math.log(2 * math.pi) + logdet + r @ np.linalg.solve(cov, r))
        assert float(objective.log_marginal(x)[i].detach()) == pytest.approx(expected, rel=1e-12)


def test_linear_gaussian_exact_elbo_equals_monte_carlo() -> None:
    """exact(x) against the MC ELBO from the estimator path (pathwise, 2 * 10^5 samples per
    example) for both KL modes; the gradient is checked in test_estimators_unbiased.py."""
    for kl in ("analytic", "sampled"):
        objective = small_linear_gaussian(kl)
        x = gaussian_batch(objective, 3)
        exact = objective.exact(x).detach()
        torch.manual_seed(84)
        replicas = 200_000
        with torch.no_grad():
            values = objective.estimate(x.repeat(replicas, 1), estimators.get("pathwise"), 1)
        summary = Summary.of(values.value.reshape(replicas, -1))
        summary.assert_matches(exact, f"linear_gaussian kl={kl}: MC ELBO")
        # Power: a 0.5% error in the closed form would be caught.
        summary.assert_rejects(exact * 1.005, "0.5% off")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_elbo_is_log_marginal_when_q_is_the_posterior(dtype) -> None:
    torch.manual_seed(85)
    objective = objectives.get("linear_gaussian", input_dim=6, latent_dim=3, kl="sampled")
    objective = objective.to(dtype)
    with torch.no_grad():  # columns orthogonal to the working precision (built in float32)
        basis, r = torch.linalg.qr(objective.weight)
        objective.weight.copy_(basis * torch.diagonal(r))
    x = gaussian_batch(objective, 4).to(dtype)
    before = objective.exact(x).detach()
    log_p = objective.log_marginal(x).detach()
    assert (before < log_p - 1e-3).all()  # an untrained encoder leaves a gap
    objective.set_encoder_to_posterior()

    tol = dict(rtol=1e-12, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(objective.exact(x).detach(), log_p, **tol)
    # q is the true posterior: same mean, and the (diagonal) covariance.
    posterior = objective.true_posterior(x)
    q = objective.posterior(x)
    torch.testing.assert_close(q.mean.detach(), posterior.mean.detach(), **tol)
    torch.testing.assert_close(q.variance.detach(), torch.diagonal(
        posterior.covariance_matrix.detach(), dim1=-2, dim2=-1), **tol)

    # The sampled-KL ELBO integrand is log p(x, z) - log q(z|x) = log p(x) for every z: an MC
    # estimate with zero variance, and IWAE-k = log p(x) for every k.
    with torch.no_grad():
        out = objective.estimate(x.repeat(1000, 1), estimators.get("pathwise"), 1)
    values = out.value.reshape(1000, -1)
    spread = values.std(0).max()
    assert float(spread) < (1e-10 if dtype == torch.float64 else 1e-4), float(spread)
    torch.testing.assert_close(values.mean(0), log_p, **tol)
    for k in (1, 8):
        torch.testing.assert_close(objective.iwae(x, k), log_p, **tol)
    # Power: with the analytic KL the per-sample value is log p(x|z) - KL, which does vary.
    with torch.no_grad():
        analytic = objective.elbo(x.repeat(1000, 1), estimators.get("pathwise"), 1,
                                  kl="analytic")
    assert float(analytic.value.reshape(1000, -1).std(0).min()) > 1e-2


def test_set_encoder_to_posterior_refuses_a_non_diagonal_posterior() -> None:
    objective = objectives.get("linear_gaussian", input_dim=6, latent_dim=3)
    with torch.no_grad():
        objective.weight.add_(0.3)  # columns no longer orthogonal
    with pytest.raises(ObjectiveError, match="not diagonal"):
        objective.set_encoder_to_posterior()


# Conditional VAE --------------------------------------------------------------------------------

@pytest.mark.parametrize("input_dim", [8, 9])
def test_conditional_vae_split_and_likelihood(input_dim: int) -> None:
    torch.manual_seed(86)
    objective = objectives.get("conditional_vae", input_dim=input_dim, latent_dim=2, hidden=8)
    objective = objective.double()
    x = binary_batch(3, input_dim)
    x_in, y = objective.split(x)
    assert x_in.shape == (3, input_dim // 2) and y.shape == (3, input_dim - input_dim // 2)
    torch.testing.assert_close(torch.cat([x_in, y], -1), x)
    z = torch.randn(5, 3, 2, dtype=torch.float64)

    # log p(y | z, x_in) by hand: the decoder reads [z, x_in] and predicts y only.
    context = x_in.expand(5, 3, -1)
    logits = objective.decoder(torch.cat([z, context], -1))
    assert logits.shape == (5, 3, y.shape[-1])
    by_hand = (y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).sum(-1)
    ll = objective.log_likelihood(x, z)
    assert ll.shape == (5, 3)
    torch.testing.assert_close(ll, by_hand, rtol=1e-12, atol=1e-12)

    flipped_y = x.clone()
    flipped_y[:, input_dim // 2 :] = 1 - flipped_y[:, input_dim // 2 :]
    flipped_in = x.clone()
    flipped_in[:, : input_dim // 2] = 1 - flipped_in[:, : input_dim // 2]
    # Changing y changes the likelihood (it is the target) and q(z | x_in, y), not the prior.
    assert not torch.allclose(objective.log_likelihood(flipped_y, z), ll)
    assert not torch.allclose(objective.posterior_params(flipped_y), objective.posterior_params(x))
    torch.testing.assert_close(objective.prior(flipped_y).mean, objective.prior(x).mean)
    # Changing x_in changes the likelihood through the decoder's context and the prior ...
    assert not torch.allclose(objective.log_likelihood(flipped_in, z), ll)
    assert not torch.allclose(objective.prior(flipped_in).mean, objective.prior(x).mean)
    # ... and only through the context: with the context weights zeroed, x_in is not read.
    with torch.no_grad():
        objective.decoder[0].weight[:, 2:] = 0.0
    torch.testing.assert_close(objective.log_likelihood(flipped_in, z),
                               objective.log_likelihood(x, z), rtol=0, atol=0)


# ------------------------------------------------------------------------- bound = "iwae"


class _MeanOfLogWeights(estimators.Reinforce):
    """A test-only estimator of the IWAE bound: exact enumeration is not needed, only that the
    objective hands it per-sample log-weights (its value: log mean exp f)."""

    estimates = "iwae"

    def estimate(self, q, f, num_samples, noise):
        out = super().estimate(q, f, num_samples, noise)
        fz = f(out.samples)
        value = torch.logsumexp(fz, 0) - math.log(num_samples)
        return estimators.EstimatorOutput(value, value.detach(), out.samples)


def test_iwae_bound_hands_log_weights_and_refuses_mismatched_estimators() -> None:
    torch.manual_seed(0)
    model = objectives.get("bernoulli_vae", input_dim=6, latent_dim=3, bound="iwae")
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    est = _MeanOfLogWeights()
    noise = torch.rand(5, 4, 3)
    out = model.estimate(x, est, 5, noise=noise)
    z = (model.posterior_params(x) + torch.log(noise) - torch.log1p(-noise) > 0).float()
    q = model.posterior(x)
    log_w = model.log_likelihood(x, z) + model.prior(x).log_prob(z) - q.log_prob(z)
    expected = torch.logsumexp(log_w, 0) - math.log(5)
    torch.testing.assert_close(out.value, expected.detach())
    assert not model.has_exact and model.has_log_marginal
    with pytest.raises(NoExactValue, match="bound='iwae'"):
        model.exact(x)
    with pytest.raises(estimators.EstimatorError, match="needs an estimator of the IWAE"):
        model.estimate(x, estimators.get("reinforce"), 2)
    elbo_model = objectives.get("bernoulli_vae", input_dim=6, latent_dim=3)
    with pytest.raises(estimators.EstimatorError, match='set bound = "iwae"'):
        elbo_model.check(est)
    with pytest.raises(ObjectiveError, match="bound must be one of elbo, iwae"):
        objectives.get("gaussian_vae", bound="iwea")
