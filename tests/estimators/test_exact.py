"""The exact estimator against an independent enumeration written here with itertools.product.

The oracle computes probabilities by hand (sigmoid / softmax of the logits, products over
independent dimensions), never through `log_prob` or the estimator's own enumeration, and
compares values and gradients (w.r.t. q's logits and a parameter inside f) to float64 precision.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical

from estibench import estimators
from estibench.estimators import UnsupportedDistributionError


def integrand(weight: torch.Tensor):
    """A nonlinear f(z) with its own parameter; z (S, *B, *event) -> (S, *B)."""

    def f(z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(*z.shape[: z.dim() - weight.dim()], -1).to(weight.dtype)
        h = flat @ weight.reshape(-1)
        return torch.sin(h) + 0.5 * h**2

    return f


def enumerate_by_hand(kind: str, logits: torch.Tensor, f) -> torch.Tensor:
    """sum over configurations c of q(c) f(c), per batch element, with an explicit loop.

    kind: 'bernoulli' (logits (*B, n), event (n,)), 'onehot' (logits (*B, n, K), event (n, K))
    or 'categorical' (logits (*B, K), event ())."""
    total = 0
    if kind == "bernoulli":
        p = torch.sigmoid(logits)
        n = logits.shape[-1]
        for config in itertools.product((0.0, 1.0), repeat=n):
            c = torch.tensor(config, dtype=logits.dtype)
            prob = torch.prod(p * c + (1 - p) * (1 - c), -1)
            z = c.expand(logits.shape).unsqueeze(0)
            total = total + prob * f(z)[0]
    elif kind == "onehot":
        probs = torch.softmax(logits, -1)
        n, k = logits.shape[-2:]
        for config in itertools.product(range(k), repeat=n):
            prob = torch.stack([probs[..., i, c] for i, c in enumerate(config)], -1).prod(-1)
            z = torch.zeros(n, k, dtype=logits.dtype)
            z[list(range(n)), list(config)] = 1.0
            total = total + prob * f(z.expand(logits.shape).unsqueeze(0))[0]
    else:
        probs = torch.softmax(logits, -1)
        for c in range(logits.shape[-1]):
            z = torch.full(logits.shape[:-1], c, dtype=torch.long).unsqueeze(0)
            total = total + probs[..., c] * f(z)[0]
    return total


def make_q(kind: str, logits: torch.Tensor):
    if kind == "bernoulli":
        return Independent(Bernoulli(logits=logits), 1)
    if kind == "onehot":
        return Independent(OneHotCategorical(logits=logits), 1)
    return Categorical(logits=logits)


CASES = {
    # kind: (logits shape (*B, ...), weight shape = event shape (a scalar weight for indices))
    "bernoulli": ((2, 4), (4,)),
    "onehot": ((2, 3, 3), (3, 3)),
    "categorical": ((2, 5), ()),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_exact_equals_enumeration_by_hand(kind: str) -> None:
    torch.manual_seed(40)
    logits_shape, weight_shape = CASES[kind]
    logits = torch.randn(logits_shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(weight_shape, dtype=torch.float64, requires_grad=True)
    f = integrand(weight)

    out = estimators.get("exact")(make_q(kind, logits), f, num_samples=1)
    by_hand = enumerate_by_hand(kind, logits, f)

    batch = logits_shape[:1]
    assert out.loss.shape == out.value.shape == batch
    torch.testing.assert_close(out.loss, by_hand, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.value, by_hand.detach(), rtol=1e-12, atol=1e-12)
    assert not out.value.requires_grad

    # Gradients of a weighted sum, so every batch element counts differently.
    mix = torch.arange(1.0, batch[0] + 1, dtype=torch.float64)
    grads = torch.autograd.grad((out.loss * mix).sum(), [logits, weight])
    oracle = torch.autograd.grad((by_hand * mix).sum(), [logits, weight])
    for g, o in zip(grads, oracle, strict=True):
        assert o.abs().max() > 1e-3  # a meaningful gradient
        torch.testing.assert_close(g, o, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(CASES))
def test_exact_samples_are_every_configuration_once(kind: str) -> None:
    logits_shape, _ = CASES[kind]
    q = make_q(kind, torch.zeros(logits_shape))
    out = estimators.get("exact")(q, lambda z: z.reshape(*z.shape[:2], -1).float().sum(-1))
    if kind == "bernoulli":
        expected = {tuple(c) for c in itertools.product((0.0, 1.0), repeat=logits_shape[-1])}
        configs = [tuple(z.tolist()) for z in out.samples[:, 0]]
    elif kind == "onehot":
        n, k = logits_shape[-2:]
        expected = set(itertools.product(range(k), repeat=n))
        configs = [tuple(z.argmax(-1).tolist()) for z in out.samples[:, 0]]
        assert ((out.samples == 0) | (out.samples == 1)).all()
        assert (out.samples.sum(-1) == 1).all()
    else:
        expected = set(range(logits_shape[-1]))
        configs = out.samples[:, 0].tolist()
    assert len(configs) == len(expected) == out.samples.shape[0]
    assert set(configs) == expected
    # The same configurations for every batch element.
    assert (out.samples == out.samples[:, :1]).all()


def test_exact_on_a_plain_bernoulli_and_scalar_batch() -> None:
    """No Independent wrapper, batch shape (3,); and a scalar q, batch shape ()."""
    logits = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64, requires_grad=True)
    out = estimators.get("exact")(Bernoulli(logits=logits), lambda z: (z - 0.2) ** 3)
    p = torch.sigmoid(logits)
    by_hand = p * 0.8**3 + (1 - p) * (-0.2) ** 3
    torch.testing.assert_close(out.loss, by_hand, rtol=1e-12, atol=1e-14)
    (g,) = torch.autograd.grad(out.loss.sum(), [logits])
    (o,) = torch.autograd.grad(by_hand.sum(), [logits])
    torch.testing.assert_close(g, o, rtol=1e-12, atol=1e-14)

    scalar = OneHotCategorical(logits=torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64))
    out = estimators.get("exact")(scalar, lambda z: (z * torch.tensor([1.0, 2, 3])).sum(-1))
    assert out.loss.shape == () and out.samples.shape == (3, 3)
    expected = (torch.softmax(scalar.logits, -1) * torch.tensor([1.0, 2, 3])).sum()
    torch.testing.assert_close(out.loss, expected.to(out.loss.dtype), rtol=1e-12, atol=0)


def test_exact_limits_the_number_of_configurations() -> None:
    small = estimators.get("exact", max_configurations=16)
    small(Independent(Bernoulli(logits=torch.zeros(2, 4)), 1), lambda z: z.sum(-1))  # 16: fine
    with pytest.raises(UnsupportedDistributionError) as info:
        small(Independent(Bernoulli(logits=torch.zeros(2, 5)), 1), lambda z: z.sum(-1))
    message = str(info.value)
    assert "'exact'" in message and "2^5 = 32" in message and "at most 16" in message
