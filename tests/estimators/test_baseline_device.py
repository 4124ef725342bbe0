"""The running statistics of the EMA baseline and of NVIL (buffers, not trained parameters)
follow q to its device, and `.to` moves them with the estimator. Device-agnostic: a q on the
meta device (shapes without data) stands in for a GPU."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent

from estibench import estimators
from estibench.estimators import distributions

BUFFERS = [("reinforce", {"baseline": "ema"}, ("ema_sum", "ema_count")),
           ("nvil", {}, ("centre", "variance"))]


def meta_posterior() -> Independent:
    logits = torch.randn(5, 3, 4, device="meta", requires_grad=True)
    return Independent(distributions.one_hot_categorical(logits), 1, validate_args=False)


@pytest.mark.parametrize("name, options, buffers", BUFFERS, ids=[b[0] for b in BUFFERS])
def test_running_buffers_follow_q_to_its_device(name, options, buffers) -> None:
    estimator = estimators.get(name, **options).train()
    q = meta_posterior()
    estimator.prepare(q)  # NVIL's network is built on q's device
    for buffer in buffers:
        assert getattr(estimator, buffer).device.type == "cpu"
    out = estimator(q, lambda z: z.sum((-1, -2)), num_samples=2)
    assert out.loss.device.type == "meta"
    for buffer in buffers:
        assert getattr(estimator, buffer).device.type == "meta", buffer
        assert buffer in dict(estimator.named_buffers())  # still registered
    assert set(buffers) <= set(estimator.state_dict())


@pytest.mark.parametrize("name, options, buffers", BUFFERS, ids=[b[0] for b in BUFFERS])
def test_to_moves_the_running_buffers(name, options, buffers) -> None:
    estimator = estimators.get(name, **options).to(torch.float64)
    floating = [b for b in buffers if getattr(estimator, b).is_floating_point()]
    assert floating and all(getattr(estimator, b).dtype == torch.float64 for b in floating)
    moved = estimator.to("meta")
    assert all(getattr(moved, b).device.type == "meta" for b in buffers)


def test_a_buffer_on_the_device_of_q_is_left_in_place() -> None:
    estimator = estimators.get("reinforce", baseline="ema").train()
    before = estimator.ema_sum
    q = Independent(distributions.one_hot_categorical(torch.randn(5, 3, 4)), 1,
                    validate_args=False)
    estimator(q, lambda z: z.sum((-1, -2)), num_samples=2)
    assert estimator.ema_sum is before  # updated in place, not replaced
    assert int(estimator.ema_count) == 1
