"""The straight-through family, the IWAE-bound estimators and the measure-valued estimator under
the vectorized gradient statistics: equal to the loop oracle (noise streams, torch.func.vjp
inside vmap, 4 D evaluation sets), and the IWAE-vs-DReG encoder SNR against K."""

from __future__ import annotations

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.metrics import gradient_stats
from tests.benchmarks.metrics.test_gradients import assert_same_stats, binary_batch, build


def build_iwae(name: str):
    torch.manual_seed(0)
    if name == "gaussian_vae_iwae":
        return objectives.get("gaussian_vae", latent_dim=2, hidden=16, bound="iwae"), \
            binary_batch(4)
    if name == "linear_gaussian_iwae":
        return objectives.get("linear_gaussian", input_dim=8, latent_dim=2, bound="iwae"), \
            torch.randn(4, 8)
    return build(name)


COMBINATIONS = [
    ("categorical_vae", "reinmax", {}, 1, "encoder"),
    ("categorical_vae", "zgr", {}, 2, "distribution"),
    ("categorical_vae", "gumbel_rao", {"mc": 3}, 2, "encoder"),
    ("categorical_vae", "gumbel_rao", {"mc": 2, "conditional_gradient": "total"}, 1,
     "distribution"),
    ("categorical_vae", "gapped_st", {"gap": 0.5}, 1, "encoder"),
    ("categorical_vae", "st_gumbel", {"forward_temperature": 0.5}, 2, "distribution"),
    ("bernoulli_vae", "reinmax", {"temperature": 1.3}, 1, "distribution"),
    ("bernoulli_vae", "gumbel_rao", {"mc": 3, "temperature": 0.5}, 1, "encoder"),
    ("bernoulli_vae", "gapped_st", {}, 2, "decoder"),
    ("gaussian_vae_iwae", "iwae", {}, 3, "encoder"),
    ("gaussian_vae_iwae", "iwae", {"direct_term": False}, 3, "encoder"),
    ("gaussian_vae_iwae", "dreg", {}, 3, "encoder"),
    ("gaussian_vae_iwae", "dreg", {}, 3, "decoder"),
    ("linear_gaussian_iwae", "dreg", {}, 2, "distribution"),
    ("gaussian_toy", "measure_valued", {}, 2, "distribution"),
    ("gaussian_vae", "measure_valued", {}, 1, "encoder"),
]


@pytest.mark.parametrize(("objective", "estimator", "options", "samples", "wrt"), COMBINATIONS)
def test_vectorized_equals_the_loop_oracle(
    objective: str, estimator: str, options: dict, samples: int, wrt: str
) -> None:
    obj, x = build_iwae(objective)
    est = estimators.get(estimator, **options)
    kwargs = dict(replicas=12, num_samples=samples, wrt=wrt, seed=3, chunk_size=5)
    fast = gradient_stats(obj, est, x, method="vectorized", **kwargs)
    slow = gradient_stats(obj, est, x, method="loop", **kwargs)
    assert fast.num_params == slow.num_params > 0
    assert_same_stats(fast, slow)
    assert fast.total_variance > 0


def test_straight_through_estimators_refuse_a_non_differentiable_integrand() -> None:
    class StepToy(objectives.BernoulliToy):
        differentiable_integrand = False

    for name in ("reinmax", "zgr", "gumbel_rao", "gapped_st"):
        with pytest.raises(estimators.EstimatorError, match="not differentiable in z"):
            StepToy().check(estimators.get(name))
    StepToy().check(estimators.get("reinforce"))


def test_iwae_encoder_snr_falls_with_k_and_dregs_rises() -> None:
    """Rainforth et al. 2018, Tucker et al. 2019: the SNR of IWAE's inference-network gradient
    falls as K grows, DReG's grows. T5 (z ~ N(0, 1), x | z ~ N(z, 1), x = 1) with q = N(0, 1),
    measured by the harness (1000 replicas) at K = 1, 8, 64."""
    obj = objectives.get("linear_gaussian", input_dim=1, latent_dim=1, noise_std=1.0,
                         bound="iwae").double()
    with torch.no_grad():
        obj.weight.fill_(1.0)
        obj.bias.fill_(0.0)
        for p in obj.encoder.parameters():
            p.zero_()
    x = torch.ones(1, 1, dtype=torch.float64)
    snr = {(name, k): gradient_stats(obj, estimators.get(name), x, replicas=1000, num_samples=k,
                                     wrt="distribution", seed=5, chunk_size=500).snr_norm
           for name in ("iwae", "dreg") for k in (1, 8, 64)}
    assert snr["iwae", 1] > 2 * snr["iwae", 8] > 4 * snr["iwae", 64], snr
    assert snr["dreg", 64] > 2 * snr["dreg", 8] > 2 * snr["dreg", 1], snr
