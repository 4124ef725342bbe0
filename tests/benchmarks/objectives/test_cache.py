"""Fixed priors are cached per dtype and device, and never from inside a torch.func transform."""

from __future__ import annotations

import copy

import torch

from estibench import estimators
from estibench.benchmarks import metrics, objectives


def small():
    torch.manual_seed(0)
    return objectives.get("categorical_vae", input_dim=6, variables=2, categories=3, hidden=4)


def test_prior_is_built_once_and_follows_dtype():
    objective = small()
    assert objective.prior() is objective.prior()
    objective.double()
    assert objective.prior().base_dist.logits.dtype == torch.float64


def test_a_transform_does_not_leave_wrapped_tensors_in_the_cache():
    objective = small()
    x = (torch.rand(4, 6) < 0.5).float()
    # The first prior() call happens inside vmap(grad(...)): it must not be cached there.
    metrics.gradient_stats(objective, estimators.get("reinforce", baseline="loo"), x,
                           replicas=4, num_samples=2, wrt="decoder", exact=False)
    clone = copy.deepcopy(objective)  # fails on a cached TensorWrapper
    assert torch.equal(clone.prior().base_dist.logits, objective.prior().base_dist.logits)


def test_prior_of_a_batch_is_keyed_by_the_batch_dtype_like_the_parameters():
    """prior(x) reads the dtype and device from x (which the encoder reads) instead of walking
    the parameters: the same cached object as prior(), and float64 after .double()."""
    for name in ("categorical_vae", "gaussian_vae"):
        torch.manual_seed(0)
        objective = objectives.get(name, input_dim=6, hidden=4)
        x = (torch.rand(4, 6) < 0.5).float()
        assert objective.prior(x) is objective.prior()
        objective.double()
        prior = objective.prior(x.double())
        assert prior is objective.prior() and prior.mean.dtype == torch.float64
        objective.estimate(x.double(), estimators.get("reinforce" if name == "categorical_vae"
                                                      else "pathwise")).loss.sum().backward()
