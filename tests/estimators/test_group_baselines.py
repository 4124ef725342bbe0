"""The group baselines of RL post-training: GRPO, Dr. GRPO and its rescaled form, against RLOO.

Relations from the same noise (float64, sample by sample): Dr. GRPO's signal f_s - mean_j f_j is
((S - 1) / S) (f_s - mean_{j != s} f_j), so its estimate of the distribution parameters' gradient
(f does not depend on them: score term only) is (S - 1) / S times RLOO's, and the rescaled one is
RLOO's; GRPO's is Dr. GRPO's divided, per input, by that input's sample std of f plus 1e-4.

Bias, against the exact gradient of two toys at phi != 0: RLOO and the rescaled Dr. GRPO pass the
calibrated unbiasedness test (tests/helpers.py, with power); Dr. GRPO's mean matches (S - 1) / S
times the exact gradient, by enumeration of the S-sample configurations and by the
implementation's Monte Carlo mean, and is told apart from the exact gradient; GRPO's expected
estimate is derived by enumerating all K^S configurations of the group (one Bernoulli, K = 2, and
one 3-category variable, K = 3; S = 2 and 3), the implementation's mean matches it, and it differs
from the exact gradient by more than the noise.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, OneHotCategorical

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.estimators.noise import draw_noise
from tests.helpers import Summary, assert_unbiased_with_power, toy_gradient_estimates

EPS = 1e-4  # GRPO's eps, added to the group's sample standard deviation (TRL's GRPOTrainer)

# Two small latents with a non-linear f that couples the coordinates.
W = torch.tensor([1.0, 2.0, -1.5], dtype=torch.float64)
C = torch.tensor([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]], dtype=torch.float64)


def bernoullis(logits: torch.Tensor):
    return Independent(Bernoulli(logits=logits, validate_args=False), 1)


def categoricals(logits: torch.Tensor):
    return Independent(OneHotCategorical(logits=logits, validate_args=False), 1)


def bernoulli_f(z: torch.Tensor) -> torch.Tensor:
    return ((z * W).sum(-1) - 0.4) ** 3


def categorical_f(z: torch.Tensor) -> torch.Tensor:
    return (z * C).sum((-1, -2)) ** 3 / 10


LATENTS = {
    "bernoulli": (bernoullis, bernoulli_f, torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)),
    "categorical": (categoricals, categorical_f,
                    torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64).log()),
}


def same_noise_estimates(baseline: str, latent: str, num_samples: int, noise: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradients (M, *phi.shape), f at the samples (S, M)) of REINFORCE with `baseline`."""
    build_q, f, phi = LATENTS[latent]
    leaf = phi.expand(noise.shape[1], *phi.shape).clone().requires_grad_(True)
    out = estimators.get("reinforce", baseline=baseline)(build_q(leaf), f, num_samples,
                                                         noise=noise)
    (grad,) = torch.autograd.grad(out.loss.sum(), [leaf])
    return grad, f(out.samples).detach()


@pytest.mark.parametrize("num_samples", [2, 3, 5])
@pytest.mark.parametrize("latent", ["bernoulli", "categorical"])
def test_relations_from_the_same_noise(latent: str, num_samples: int) -> None:
    build_q, _, phi = LATENTS[latent]
    copies = 400
    noise = draw_noise(build_q(phi.expand(copies, *phi.shape)), num_samples,
                       generator=torch.Generator().manual_seed(3))
    loo, f_loo = same_noise_estimates("loo", latent, num_samples, noise)
    dr, f_dr = same_noise_estimates("drgrpo", latent, num_samples, noise)
    rescaled, _ = same_noise_estimates("drgrpo_rescaled", latent, num_samples, noise)
    grpo, f_grpo = same_noise_estimates("grpo", latent, num_samples, noise)
    assert torch.equal(f_loo, f_dr) and torch.equal(f_dr, f_grpo)  # the same samples
    assert loo.abs().max() > 0.1  # not a vacuous comparison

    factor = (num_samples - 1) / num_samples
    torch.testing.assert_close(dr, factor * loo, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rescaled, loo, rtol=1e-12, atol=1e-12)

    # GRPO by hand: each input's Dr. GRPO estimate divided by its group's sample std + eps.
    centred = f_dr - f_dr.mean(0)
    std = (centred.pow(2).sum(0) / (num_samples - 1)).sqrt()  # (M,), divisor S - 1
    assert float(std.std()) > 0.1 and float((std - 1).abs().min()) > 1e-3  # varies, not 1
    scale = (std + EPS).reshape(-1, *[1] * phi.dim())
    torch.testing.assert_close(grpo, dr / scale, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("baseline", ["grpo", "drgrpo", "drgrpo_rescaled"])
def test_group_baselines_need_two_samples(baseline: str) -> None:
    estimator = estimators.get("reinforce", baseline=baseline)
    q = bernoullis(torch.zeros(4, 3))
    with pytest.raises(estimators.EstimatorError) as err:
        estimator(q, bernoulli_f, num_samples=1)
    message = str(err.value)
    for part in ("estimator 'reinforce'", f"baseline={baseline!r}", "num_samples >= 2", "got 1"):
        assert part in message, message


def test_unknown_baseline_names_the_choices_and_bias_is_declared() -> None:
    with pytest.raises(estimators.EstimatorError) as err:
        estimators.get("reinforce", baseline="rloo")
    message = str(err.value)
    for part in ("baseline", "'rloo'", "none, ema, loo, grpo, drgrpo, drgrpo_rescaled"):
        assert part in message, message
    declared = {b: estimators.get("reinforce", baseline=b).unbiased
                for b in ("none", "ema", "loo", "grpo", "drgrpo", "drgrpo_rescaled")}
    assert declared == {"none": True, "ema": True, "loo": True, "grpo": False,
                        "drgrpo": False, "drgrpo_rescaled": True}


# Bias against the exact gradient ------------------------------------------------------------

def bernoulli_toy():
    """-E[(b - 0.3)^2], b ~ Bernoulli(sigmoid(1)): phi != 0."""
    return objectives.get("bernoulli_toy", target=0.3, init=1.0).double()


def categorical_toy():
    """-E[(c . y)^3 / 10], c = (1, 2, 4), y ~ OneHotCategorical(0.2, 0.3, 0.5): logits != 0."""
    return objectives.get("categorical_toy").double()


def outcomes(toy_name: str, phi: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probabilities (K,), f (K,), grad_phi log q (K, P)) of the toy's K outcomes, by hand:
    f = -(b - 0.3)^2 and grad log q(b) = b - sigmoid(phi) for the Bernoulli toy; f = -(c_k)^3 / 10
    and grad log q(e_k) = e_k - softmax(phi) for the categorical one."""
    if toy_name == "bernoulli_toy":
        p1 = torch.sigmoid(phi[0])
        b = torch.tensor([0.0, 1.0], dtype=torch.float64)
        return torch.stack([1 - p1, p1]), -(b - 0.3) ** 2, (b - p1)[:, None]
    probs = torch.softmax(phi[0], -1)
    c = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    return probs, -(c**3) / 10, torch.eye(3, dtype=torch.float64) - probs


def enumerated_mean(toy_name: str, phi: torch.Tensor, num_samples: int, signal) -> torch.Tensor:
    """E[(1/S) sum_s A_s grad log q(z_s)] over all K^S groups, A = signal(f of the group)."""
    probs, values, scores = outcomes(toy_name, phi)
    total = torch.zeros(scores.shape[1], dtype=torch.float64)
    for group in itertools.product(range(len(probs)), repeat=num_samples):
        idx = list(group)
        weight = probs[idx].prod()
        advantage = signal(values[idx])
        total += weight * (advantage[:, None] * scores[idx]).mean(0)
    return total


def grpo_signal(f: torch.Tensor) -> torch.Tensor:
    centred = f - f.mean()
    return centred / ((centred.pow(2).sum() / (len(f) - 1)).sqrt() + EPS)


def drgrpo_signal(f: torch.Tensor) -> torch.Tensor:
    return f - f.mean()


def none_signal(f: torch.Tensor) -> torch.Tensor:
    return f


TOYS = {"bernoulli_toy": bernoulli_toy, "categorical_toy": categorical_toy}


@pytest.mark.parametrize("toy_name", list(TOYS))
def test_the_exact_gradient_by_hand_matches_the_toy(toy_name: str) -> None:
    """The reference: REINFORCE's signal f itself, enumerated with S = 1, is sum_k p_k f_k
    grad log q(k) = grad E[f]; the toys' closed forms agree, and the gradient is not small."""
    toy = TOYS[toy_name]()
    _, exact = toy_gradient_estimates(toy, estimators.get("reinforce"), 1, copies=2)
    by_hand = enumerated_mean(toy_name, toy.phi.detach(), 1, none_signal)
    torch.testing.assert_close(by_hand, exact.reshape(-1), rtol=1e-12, atol=1e-14)
    assert float(exact.abs().max()) > 0.05


@pytest.mark.parametrize("num_samples", [2, 3])
@pytest.mark.parametrize("toy_name", list(TOYS))
def test_rloo_and_rescaled_drgrpo_are_unbiased(toy_name: str, num_samples: int) -> None:
    toy = TOYS[toy_name]()
    for baseline in ("loo", "drgrpo_rescaled"):
        torch.manual_seed(11)
        grads, exact = toy_gradient_estimates(
            toy, estimators.get("reinforce", baseline=baseline), num_samples, copies=200_000)
        assert_unbiased_with_power(Summary.of(grads), exact,
                                   f"{toy_name} {baseline} S={num_samples}")


@pytest.mark.parametrize("num_samples", [2, 3])
@pytest.mark.parametrize("toy_name", list(TOYS))
def test_drgrpo_is_the_true_gradient_times_s_minus_one_over_s(toy_name: str,
                                                              num_samples: int) -> None:
    toy = TOYS[toy_name]()
    factor = (num_samples - 1) / num_samples
    phi = toy.phi.detach()
    exact = enumerated_mean(toy_name, phi, 1, none_signal)
    enumerated = enumerated_mean(toy_name, phi, num_samples, drgrpo_signal)
    torch.testing.assert_close(enumerated, factor * exact, rtol=1e-12, atol=1e-14)
    torch.manual_seed(12)
    grads, _ = toy_gradient_estimates(toy, estimators.get("reinforce", baseline="drgrpo"),
                                      num_samples, copies=200_000)
    summary = Summary.of(grads)
    summary.assert_matches(enumerated, f"{toy_name} drgrpo S={num_samples}")
    summary.assert_rejects(exact, f"{toy_name} drgrpo S={num_samples} against the exact gradient")


@pytest.mark.parametrize("num_samples", [2, 3])
@pytest.mark.parametrize("toy_name", list(TOYS))
def test_grpo_matches_its_enumerated_expectation_and_is_biased(toy_name: str,
                                                               num_samples: int) -> None:
    toy = TOYS[toy_name]()
    phi = toy.phi.detach()
    exact = enumerated_mean(toy_name, phi, 1, none_signal)
    expected = enumerated_mean(toy_name, phi, num_samples, grpo_signal)
    # Not a multiple of the gradient that the enumeration would hide: far from it in norm.
    assert float((expected - exact).norm()) > 0.5 * float(exact.norm())
    torch.manual_seed(13)
    grads, _ = toy_gradient_estimates(toy, estimators.get("reinforce", baseline="grpo"),
                                      num_samples, copies=200_000)
    summary = Summary.of(grads)
    summary.assert_matches(expected, f"{toy_name} grpo S={num_samples}")
    z = summary.assert_rejects(exact, f"{toy_name} grpo S={num_samples} against the exact "
                                      "gradient")
    assert math.isfinite(z)
