"""`estimators.kl.kl_divergence` against its oracle, `torch.distributions.kl_divergence`: the
same value and the same gradient for every pair it computes itself, torch's answer for the
pairs it hands on, and torch's zero-probability conventions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
    RelaxedOneHotCategorical,
)
from torch.distributions import kl_divergence as torch_kl

from estibench.estimators import distributions
from estibench.estimators.kl import RULES, kl_divergence


def leaves(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_(True)
            for s in shapes]


def normal(loc, raw):
    return Normal(loc, torch.nn.functional.softplus(raw) + 0.1)


# (name, builder of (q, p) from the leaves, the leaves' shapes): every pair of RULES, alone and
# inside Independent, a prior of the batch's shape and one broadcast against it.
PAIRS = [
    ("normal", lambda a, b, c, d: (normal(a, b), normal(c, d)), [(3, 4)] * 4),
    ("normal, broadcast prior",
     lambda a, b, c, d: (normal(a, b), normal(c, d)), [(3, 4), (3, 4), (4,), (4,)]),
    ("independent normal",
     lambda a, b, c, d: (Independent(normal(a, b), 1), Independent(normal(c, d), 1)),
     [(3, 4), (3, 4), (4,), (4,)]),
    ("bernoulli", lambda a, b: (Bernoulli(logits=a), Bernoulli(logits=b)), [(3, 5)] * 2),
    ("independent bernoulli",
     lambda a, b: (Independent(Bernoulli(logits=a), 1), Independent(Bernoulli(logits=b), 1)),
     [(3, 5)] * 2),
    ("categorical", lambda a, b: (Categorical(logits=a), Categorical(logits=b)),
     [(3, 2, 6), (2, 6)]),
    ("one-hot categorical",
     lambda a, b: (OneHotCategorical(logits=a), OneHotCategorical(logits=b)),
     [(3, 2, 6), (3, 2, 6)]),
    ("independent one-hot categorical",
     lambda a, b: (Independent(OneHotCategorical(logits=a), 1),
                   Independent(OneHotCategorical(logits=b), 1)), [(3, 2, 6), (2, 6)]),
    ("estibench's unvalidated one-hot categorical",
     lambda a, b: (Independent(distributions.one_hot_categorical(a), 1),
                   Independent(OneHotCategorical(logits=b), 1)), [(3, 2, 6), (2, 6)]),
    ("categorical from probabilities",
     lambda a, b: (Categorical(probs=a.softmax(-1)), Categorical(probs=b.softmax(-1))),
     [(3, 6), (3, 6)]),
    ("twice independent normal",
     lambda a, b, c, d: (Independent(Independent(normal(a, b), 1), 1),
                         Independent(Independent(normal(c, d), 1), 1)), [(2, 3, 4)] * 4),
]


@pytest.mark.parametrize("name, build, shapes", PAIRS, ids=[p[0] for p in PAIRS])
def test_value_and_gradient_are_torch_kl_divergence(name, build, shapes) -> None:
    params = leaves(*shapes)
    q, p = build(*params)
    expected = torch_kl(q, p)
    got = kl_divergence(q, p)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.rand(expected.shape, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)  # a random cotangent: every entry counts
    want = torch.autograd.grad((expected * weights).sum(), params)
    q, p = build(*params)  # a fresh graph from the same leaves
    have = torch.autograd.grad((kl_divergence(q, p) * weights).sum(), params)
    for g_want, g_have in zip(want, have, strict=True):
        torch.testing.assert_close(g_have, g_want, rtol=1e-10, atol=1e-12)


def test_every_rule_is_covered_by_an_oracle_pair() -> None:
    covered = set()
    for _, build, shapes in PAIRS:
        q, p = build(*leaves(*shapes))
        q, p = distributions.base_of(q), distributions.base_of(p)
        covered.add((type(q), type(p)))
    assert covered == set(RULES)


class Spy:
    """Counts the calls of torch's kl_divergence made through the module."""

    def __init__(self, monkeypatch) -> None:
        import estibench.estimators.kl as module
        self.calls = 0
        original = module.torch_kl_divergence

        def spy(q: Distribution, p: Distribution) -> torch.Tensor:
            self.calls += 1
            return original(q, p)

        monkeypatch.setattr(module, "torch_kl_divergence", spy)


FALLBACKS = [
    ("another family", lambda: (Beta(torch.tensor([2.0]), torch.tensor([3.0])),
                                Beta(torch.tensor([1.0]), torch.tensor([1.5])))),
    ("a subclass", lambda: (RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3)),
                            RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.ones(3)))),
    ("mixed wrappers", lambda: (Independent(Normal(torch.zeros(2, 3), 1.0), 1),
                                Independent(Independent(Normal(torch.ones(2, 3), 2.0), 1), 1))),
    ("different families", lambda: (Normal(torch.zeros(3), 1.0),
                                     Bernoulli(logits=torch.zeros(3)))),
]


@pytest.mark.parametrize("name, build", FALLBACKS, ids=[f[0] for f in FALLBACKS])
def test_other_pairs_go_to_torch(name, build, monkeypatch) -> None:
    spy = Spy(monkeypatch)
    q, p = build()
    try:
        expected = torch_kl(q, p)
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            kl_divergence(q, p)
    else:
        torch.testing.assert_close(kl_divergence(q, p), expected)
    assert spy.calls == 1


def test_handled_pairs_do_not_call_torch(monkeypatch) -> None:
    spy = Spy(monkeypatch)
    for _, build, shapes in PAIRS:
        kl_divergence(*build(*leaves(*shapes)))
    assert spy.calls == 0


def test_zero_probabilities_follow_torch() -> None:
    """A zero probability of q contributes 0; one of p under a positive one of q gives +inf
    (torch's masked writes), for probabilities given directly and -inf logits alike."""
    q_probs = torch.tensor([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64)
    p_probs = torch.tensor([[0.3, 0.7, 0.0], [0.4, 0.6, 0.0]], dtype=torch.float64)
    for q, p in [(Categorical(probs=q_probs), Categorical(probs=p_probs)),
                 (Categorical(logits=q_probs.log()), Categorical(logits=p_probs.log())),
                 (OneHotCategorical(probs=q_probs), OneHotCategorical(probs=p_probs))]:
        expected = torch_kl(q, p)
        assert math.isinf(expected[1]) and math.isinf(kl_divergence(q, p)[1])
        torch.testing.assert_close(kl_divergence(q, p), expected)
    qb = Bernoulli(probs=torch.tensor([0.0, 1.0, 0.3, 0.3], dtype=torch.float64))
    pb = Bernoulli(probs=torch.tensor([0.5, 0.5, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(kl_divergence(qb, pb), torch_kl(qb, pb))


def test_a_shared_prior_broadcasts_where_torch_masks_cannot() -> None:
    """A Bernoulli prior of the event's shape against a batch: torch's masked write needs one
    shape; the closed form broadcasts, and equals torch's KL against the expanded prior."""
    logits, prior = torch.randn(4, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    got = kl_divergence(Bernoulli(logits=logits), Bernoulli(logits=prior))
    expected = torch_kl(Bernoulli(logits=logits), Bernoulli(logits=prior.expand(4, 5)))
    torch.testing.assert_close(got, expected)


def test_runs_under_vmap() -> None:
    logits = torch.randn(7, 3, 2, 6)
    prior = Independent(OneHotCategorical(logits=torch.zeros(2, 6)), 1)

    def kl(row: torch.Tensor) -> torch.Tensor:
        return kl_divergence(Independent(distributions.one_hot_categorical(row), 1), prior)

    torch.testing.assert_close(torch.func.vmap(kl)(logits),
                               torch.stack([kl(row) for row in logits]))
