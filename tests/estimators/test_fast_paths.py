"""Fast paths of the hot loop against the general path they replace: same values and same
gradients, to float tolerance."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    Independent,
    Normal,
    OneHotCategorical,
    RelaxedOneHotCategorical,
)

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.estimators import distributions
from estibench.estimators.noise import draw_noise, hard_sample, reparameterized_sample


def families(params: torch.Tensor):
    """(name, q built from params (B, 3, 4)) for every family with a fast log-prob."""
    normal = Normal(params, torch.nn.functional.softplus(params) + 0.1, validate_args=False)
    return [
        ("normal", normal),
        ("independent normal", Independent(normal, 2, validate_args=False)),
        ("bernoulli", Independent(Bernoulli(logits=params, validate_args=False), 1,
                                  validate_args=False)),
        ("categorical", Categorical(logits=params, validate_args=False)),
        ("one-hot", OneHotCategorical(logits=params, validate_args=False)),
        ("independent one-hot", Independent(OneHotCategorical(logits=params,
                                                              validate_args=False), 1,
                                            validate_args=False)),
    ]


def general(q, z, detach):
    return (distributions.detached(q) if detach else q).log_prob(z)


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("index", range(6))
def test_log_prob_equals_torch_in_value_and_gradient(index: int, detach: bool) -> None:
    torch.manual_seed(index)
    params = torch.randn(5, 3, 4, requires_grad=True)
    name, q = families(params)[index]
    z = q.sample((7,))
    if name in ("normal", "independent normal"):
        z = z.requires_grad_(True)  # a pathwise sample carries a gradient into log q
    expected = general(q, z, detach)
    got = distributions.log_prob(q, z, detach=detach)
    assert got.shape == expected.shape == (7, *q.batch_shape)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.requires_grad == expected.requires_grad
    if not expected.requires_grad:  # detached, and a sample that carries no gradient
        return
    weights = torch.randn(expected.shape)
    inputs = [params, z] if z.requires_grad else [params]
    want = torch.autograd.grad((expected * weights).sum(), inputs, allow_unused=True,
                               retain_graph=True)
    have = torch.autograd.grad((got * weights).sum(), inputs, allow_unused=True)
    for a, b in zip(have, want, strict=True):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_log_prob_reads_relaxed_one_hot_at_its_argmax_like_torch() -> None:
    params = torch.randn(5, 3, 4)
    q = OneHotCategorical(logits=params, validate_args=False)
    soft = torch.softmax(torch.randn(2, 5, 3, 4), -1).requires_grad_(True)
    got = distributions.log_prob(q, soft)
    torch.testing.assert_close(got, q.log_prob(soft))
    assert not got.requires_grad  # torch's argmax carries no gradient to the sample


def test_log_prob_general_path_for_validating_and_other_families() -> None:
    q = OneHotCategorical(logits=torch.randn(3, 4), validate_args=True)
    with pytest.raises(ValueError):
        distributions.log_prob(q, torch.full((3, 4), 0.5))  # validated, as torch does
    relaxed = RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.randn(3, 4))
    z = relaxed.sample()
    torch.testing.assert_close(distributions.log_prob(relaxed, z), relaxed.log_prob(z))


@pytest.mark.parametrize("name, options, kl", [
    ("categorical_vae", {"variables": 3, "categories": 3, "hidden": 16}, "sampled"),
    ("bernoulli_vae", {"latent_dim": 5}, "sampled"),
    ("gaussian_vae", {"latent_dim": 3, "hidden": 16}, "sampled"),
])
@pytest.mark.parametrize("direct_term", [False, True])
def test_estimator_log_q_equals_the_general_path_inside_the_elbo(name, options, kl,
                                                                  direct_term) -> None:
    """The ELBO with the fast `log_q` has the gradient of the ELBO with the detached-
    distribution log q it replaced (same noise)."""

    torch.manual_seed(0)
    objective = objectives.get(name, kl=kl, **options)
    family = estimators.get("pathwise" if name == "gaussian_vae" else "reinforce").__class__
    # The same estimator with `relax` overridden (as the identity): log q the general way.
    general_family = type("General" + family.__name__, (family,), {"relax": lambda s, p: p})
    fast, slow = family(direct_term=direct_term), general_family(direct_term=direct_term)
    x = (torch.rand(6, objective.input_dim) < 0.5).float()
    q = objective.posterior(x)
    u = draw_noise(q, 3)
    grads = []
    for estimator in (fast, slow):
        objective.zero_grad(set_to_none=True)
        out = objective.estimate(x, estimator, 3, noise=u)
        out.loss.sum().backward()
        grads.append((out.loss.detach(), [p.grad.clone() for p in objective.parameters()
                                          if p.grad is not None]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-4)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_evaluations_are_set_on_the_estimators_output() -> None:
    torch.manual_seed(0)
    objective = objectives.get("categorical_vae", variables=2, categories=3, hidden=8)
    x = torch.ones(4, objective.input_dim)
    out = objective.estimate(x, estimators.get("reinforce", baseline="loo"), 3)
    assert out.evaluations == 3


def test_one_hot_categorical_is_torchs_without_the_inner_check() -> None:
    logits = torch.randn(5, 3, 4, requires_grad=True)
    fast = distributions.one_hot_categorical(logits)
    slow = OneHotCategorical(logits=logits, validate_args=False)
    assert type(fast) is OneHotCategorical and not fast._validate_args
    assert not fast._categorical._validate_args and slow._categorical._validate_args
    assert (fast.batch_shape, fast.event_shape) == (slow.batch_shape, slow.event_shape)
    z = slow.sample((6,))
    for a, b in [(fast.logits, slow.logits), (fast.probs, slow.probs),
                 (fast.log_prob(z), slow.log_prob(z)), (fast.entropy(), slow.entropy()),
                 (fast.mean, slow.mean)]:
        torch.testing.assert_close(a, b)
        (ga,) = torch.autograd.grad(a.sum(), [logits], retain_graph=True)
        (gb,) = torch.autograd.grad(b.sum(), [logits], retain_graph=True)
        torch.testing.assert_close(ga, gb)
    torch.manual_seed(3)
    a = fast.sample((4,))
    torch.manual_seed(3)
    torch.testing.assert_close(a, slow.sample((4,)))
    expanded = fast.expand(torch.Size([2, 5, 3]))
    assert expanded.batch_shape == (2, 5, 3)


def test_one_hot_categorical_sets_what_torchs_constructor_sets() -> None:
    """The inner Categorical is built without its constructor: every attribute torch's sets is
    there, equal (the normalization is log_softmax instead of logits - logsumexp)."""
    logits = torch.randn(5, 3, 4)
    fast, slow = distributions.one_hot_categorical(logits), OneHotCategorical(
        logits=logits, validate_args=False)
    # torch's inner one keeps the default validate_args (the check this one skips)
    assert set(vars(fast._categorical)) == set(vars(slow._categorical)) | {"_validate_args"}
    assert not fast._categorical._validate_args
    for name, value in vars(slow._categorical).items():
        got = vars(fast._categorical)[name]
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(got, value)
        else:
            assert got == value, name
    assert set(vars(fast)) == set(vars(slow))


def grad_of(value: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(-1, 2, value.numel()).reshape(value.shape)
    return torch.autograd.grad((value * weights).sum(), [leaf], retain_graph=True)[0]


def test_bernoulli_log_prob_broadcasts_a_shared_prior_like_torch() -> None:
    """The learned prior's logits (D,) against samples (S, B, D): torch broadcasts them in
    log_prob; z logits - softplus(logits) broadcasts by itself."""
    logits = torch.randn(4, requires_grad=True)
    q = Independent(distributions.bernoulli(logits), 1, validate_args=False)
    z = (torch.rand(7, 5, 4) < 0.5).float()
    got = distributions.log_prob(q, z)
    expected = Independent(Bernoulli(logits=logits), 1).log_prob(z)
    assert got.shape == expected.shape == (7, 5)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad_of(got, logits), grad_of(expected, logits))


@pytest.mark.parametrize("family", ["bernoulli", "normal"])
def test_bernoulli_and_normal_constructors_set_what_torchs_set(family: str) -> None:
    """`distributions.bernoulli` and `distributions.normal` skip torch's broadcast_all: the
    attributes, values, gradients and samples are torch's."""
    torch.manual_seed(0)
    loc = torch.randn(5, 3, requires_grad=True)
    scale = torch.nn.functional.softplus(loc) + 0.1
    if family == "bernoulli":
        fast, slow = distributions.bernoulli(loc), Bernoulli(logits=loc, validate_args=False)
    else:
        fast, slow = distributions.normal(loc, scale), Normal(loc, scale, validate_args=False)
    assert type(fast) is type(slow) and set(vars(fast)) == set(vars(slow))
    for name, value in vars(slow).items():
        if isinstance(value, torch.Tensor):
            assert vars(fast)[name] is value, name  # the very tensors: no copy either
        else:
            assert vars(fast)[name] == value, name
    z = slow.sample((6,))
    for a, b in [(fast.log_prob(z), slow.log_prob(z)), (fast.entropy(), slow.entropy()),
                 (fast.mean, slow.mean)]:
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(grad_of(a, loc), grad_of(b, loc))
    torch.manual_seed(3)
    a = fast.sample((4,))
    torch.manual_seed(3)
    torch.testing.assert_close(a, slow.sample((4,)))
    assert fast.expand(torch.Size([2, 5, 3])).batch_shape == (2, 5, 3)
    if family == "normal":  # parameters of different shapes: torch's constructor broadcasts
        q = distributions.normal(loc, torch.ones(3))
        assert q.batch_shape == (5, 3) and q.scale.shape == (5, 3)


@pytest.mark.parametrize("detach", [False, True])
def test_marked_one_hot_sample_log_prob_equals_torchs(detach: bool) -> None:
    """A hard sample from `hard_sample` is read as z . logits: the same value as torch's
    argmax-and-gather and the same gradient; any operation on it drops the mark."""
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 4, requires_grad=True)
    q = Independent(distributions.one_hot_categorical(logits), 1, validate_args=False)
    z = hard_sample(q, draw_noise(q, 7))
    unmarked = z.clone()
    assert getattr(z, "_estibench_one_hot", False) and not hasattr(unmarked, "_estibench_one_hot")
    fast, slow = distributions.log_prob(q, z, detach), distributions.log_prob(q, unmarked, detach)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast, q.log_prob(unmarked))
    if detach:
        assert not fast.requires_grad and not slow.requires_grad
    else:
        torch.testing.assert_close(grad_of(fast, logits), grad_of(slow, logits))
    # the prior's (N, K) logits broadcast against the (S, B, N, K) sample
    prior = Independent(distributions.one_hot_categorical(torch.zeros(3, 4)), 1,
                        validate_args=False)
    torch.testing.assert_close(distributions.log_prob(prior, z), prior.log_prob(unmarked))


def test_marked_standard_normal_log_prob_equals_torchs_and_is_checked() -> None:
    zeros = torch.zeros(3)
    p = Independent(Normal(zeros, torch.ones(3), validate_args=False), 1, validate_args=False)
    z = torch.randn(7, 5, 3, requires_grad=True)
    expected = p.log_prob(z)
    assert not distributions.is_standard_normal(p)
    marked = distributions.marked_standard_normal(p)
    got = distributions.log_prob(marked, z)
    assert distributions.is_standard_normal(marked)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad_of(got, z), grad_of(expected, z))
    with pytest.raises(ValueError, match="not a Normal with loc 0 and scale 1"):
        distributions.marked_standard_normal(Normal(zeros, 2 * torch.ones(3)))
    with pytest.raises(ValueError, match="not a Normal"):
        distributions.marked_standard_normal(Bernoulli(logits=zeros))


def test_the_objectives_priors_kl_equals_torchs_in_value_and_gradient() -> None:
    """The objectives' analytic KL (`estimators.kl_divergence`) on their own priors: the
    marked standard normal, and a learned prior broadcast over the batch."""
    from torch.distributions import kl_divergence

    from estibench.benchmarks.objectives.base import standard_normal
    from estibench.estimators import kl_divergence as analytic_kl

    torch.manual_seed(0)
    params = torch.randn(5, 2, 3, requires_grad=True)
    q = Independent(Normal(params[:, 0], torch.nn.functional.softplus(params[:, 1]) + 1e-4,
                           validate_args=False), 1, validate_args=False)
    prior = standard_normal(3, torch.float32, torch.device("cpu"))
    unmarked = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    logits = torch.randn(5, 3, 4, requires_grad=True)
    cases = [(q, prior, unmarked)]
    for build in (distributions.one_hot_categorical,
                  lambda t: Categorical(logits=t, validate_args=False)):
        cases.append((Independent(build(logits), 1, validate_args=False),
                      Independent(build(torch.randn(3, 4)), 1, validate_args=False), None))
    bernoulli_logits = torch.randn(5, 3, requires_grad=True)
    prior_logits = torch.randn(3)
    # torch's Bernoulli KL cannot broadcast the prior (its masked writes): compare with it
    # expanded over the batch
    torch_prior = Independent(Bernoulli(logits=prior_logits.expand(5, 3)), 1)
    for build in (distributions.bernoulli, lambda t: Bernoulli(logits=t, validate_args=False)):
        # a learned prior (3,) broadcast over the batch, as the Bernoulli VAE's
        cases.append((Independent(build(bernoulli_logits), 1, validate_args=False),
                      Independent(build(prior_logits), 1, validate_args=False), torch_prior))
    for qd, pd, torch_p in cases:
        got, expected = analytic_kl(qd, pd), kl_divergence(qd, torch_p or pd)
        assert got.shape == expected.shape == (5,)
        torch.testing.assert_close(got, expected)
        base = qd.base_dist
        leaf = params if qd is q else bernoulli_logits if isinstance(base, Bernoulli) else logits
        torch.testing.assert_close(grad_of(got, leaf), grad_of(expected, leaf))


def test_minus_is_plus_of_the_negated_term() -> None:
    fz = torch.randn(3, 4, requires_grad=True)
    out = estimators.base.output(fz, torch.zeros(3, 4))
    term = torch.randn(4, requires_grad=True)
    a, b = out.minus(term), out.plus(-term)
    torch.testing.assert_close(a.value, b.value)
    torch.testing.assert_close(a.loss, b.loss)
    assert torch.equal(out.value, fz.detach().mean(0)) and not out.value.requires_grad


def test_mean_of_and_one_hot_equal_torchs() -> None:
    """mean_of reads exp(logits) for the categorical (torch: a softmax); one_hot is a scatter."""
    logits = torch.randn(5, 3, 4, requires_grad=True)
    q = Independent(distributions.one_hot_categorical(logits), 1, validate_args=False)
    torch.testing.assert_close(distributions.mean_of(q), q.mean)
    torch.testing.assert_close(grad_of(distributions.mean_of(q), logits), grad_of(q.mean, logits))
    index = torch.randint(4, (7, 5, 3))
    expected = torch.nn.functional.one_hot(index, 4).float()
    assert torch.equal(distributions.one_hot(index, 4, torch.float32), expected)
    assert torch.equal(torch.func.vmap(lambda i: distributions.one_hot(i, 4, torch.float32))(index),
                       expected)


def test_log_q_inside_f_and_the_score_term_share_one_log_prob() -> None:
    """VIMCO keeps log q's direct term: f's `log_q(q, z)` and its score read one tensor (one
    log-prob per call, not two), with the gradient of computing it twice; the memo does not
    outlive the call."""

    class Recomputing(estimators.get("vimco").__class__):
        def sample_log_prob(self, q, z, compute=distributions.hard_log_prob):
            return compute(q, z)  # no memo: the log-prob computed at every request

    torch.manual_seed(0)
    objective = objectives.get("bernoulli_vae", latent_dim=5, bound="iwae")
    x = (torch.rand(6, objective.input_dim) < 0.5).float()
    u = draw_noise(objective.posterior(x), 4)
    seen = []
    fast = estimators.get("vimco")
    original = fast.log_q

    def spying_log_q(q, z):
        log_q = original(q, z)
        seen.append(log_q is fast.sample_log_prob(q, z))
        return log_q

    fast.log_q = spying_log_q  # type: ignore[method-assign]
    grads = []
    for estimator in (fast, Recomputing()):
        objective.zero_grad(set_to_none=True)
        out = objective.estimate(x, estimator, 4, noise=u)
        out.loss.sum().backward()
        grads.append([p.grad.clone() for p in objective.parameters()])
    assert seen == [True] and fast._log_prob_memo is None
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_log_q_without_the_direct_term_keeps_the_samples_gradient() -> None:
    """With direct_term=False only q's parameters are stopped: a pathwise sample's gradient
    still flows through log q(z) (DReG and REBAR need it), and the result is not the memo."""
    loc = torch.randn(5, 3, requires_grad=True)
    q = Independent(distributions.normal(loc, torch.ones(5, 3)), 1, validate_args=False)
    z = reparameterized_sample(q, draw_noise(q, 2))
    estimator = estimators.get("pathwise", direct_term=False)
    log_q = estimator.log_q(q, z)
    assert log_q.requires_grad and estimator._log_prob_memo is None
    # d/dloc log N(loc + eps; sg(loc), 1) = -(z - loc) through z only: -eps summed
    (g,) = torch.autograd.grad(log_q.sum(), loc)
    torch.testing.assert_close(g, -(z - loc).detach().sum(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iwae_weights_and_value_equal_softmax_and_logsumexp(dtype: torch.dtype) -> None:
    """DReG's weights and bound from one log_softmax against the obvious oracle, for spreads
    from near-uniform weights to one weight that takes everything, and batch shapes."""
    from estibench.estimators.multi_sample import iwae_value, weights_and_value
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 3), (4, 32), (7, 2, 5)]:
        for spread in (1e-3, 1.0, 30.0, 1e4):
            log_w = (torch.randn(shape, generator=g, dtype=torch.float64) * spread - 200).to(dtype)
            weights, value = weights_and_value(log_w)
            torch.testing.assert_close(weights, torch.softmax(log_w, 0))
            torch.testing.assert_close(value, iwae_value(log_w))
            assert weights.shape == log_w.shape and value.shape == log_w.shape[1:]


def test_indecater_sample_index_and_substitution_equal_the_one_hot_path() -> None:
    """IndeCateR reads the sample's category indices straight from the Gumbel-max (no one-hot
    and argmax back) and keeps its substitution mask and values once built: the indices must
    be those of `hard_sample`'s sample, for every discrete family it applies to, and the kept
    constants those built afresh (a second call must not rebuild them)."""
    from estibench.estimators.partial_enumeration import IndeCateR, sample_index, to_index

    params = torch.randn(6, 3, 4)
    for name, q in families(params):
        if name.endswith("normal"):
            continue
        u = draw_noise(q, 5)
        assert torch.equal(sample_index(q, u), to_index(q, hard_sample(q, u))), name
    est = IndeCateR()
    mask, value = est.substitution(3, 4, 2, torch.device("cpu"))
    assert mask.shape == (3, 1, 1, 1, 1, 3) and value.shape == (1, 4, 1, 1, 1, 1)
    assert torch.equal(mask.flatten(), torch.eye(3, dtype=torch.bool).flatten())
    assert torch.equal(value.flatten(), torch.arange(4))
    assert est.substitution(3, 4, 2, torch.device("cpu"))[0] is mask
