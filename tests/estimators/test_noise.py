"""Noise and the noise-to-sample maps: finite everywhere, the right distributions, and common
random numbers (the same noise gives the same hard sample in every estimator that samples hard)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    Independent,
    Normal,
    OneHotCategorical,
)

from estibench import estimators
from estibench.estimators.noise import (
    draw_noise,
    gumbel,
    hard_of_relaxed,
    hard_sample,
    logistic,
    noise_dtype,
    relaxed_sample,
    reparameterized_sample,
    uniform,
)
from tests.helpers import Summary

DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
def test_ten_million_uniforms_give_finite_gumbel_and_logistic_noise(dtype) -> None:
    torch.manual_seed(60)
    u = uniform((10_000_000,), dtype)
    assert u.dtype == torch.float32  # the noise of short dtypes is held in float32
    assert bool((u > 0).all()) and bool((u < 1).all())
    for name, noise in (("gumbel", gumbel(u)), ("logistic", logistic(u))):
        assert noise.dtype == u.dtype
        assert bool(torch.isfinite(noise).all()), f"{name} noise not finite in {dtype}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_clamps_to_tiny_and_one_minus_eps(dtype, monkeypatch) -> None:
    """torch.rand can return exactly 0, and one uniform in 2^24 rounds to 1 - eps of float32:
    the clamp to the noise's own precision maps 0 to its tiny and keeps 1 out. Forced here by
    replacing torch.rand."""
    info = torch.finfo(noise_dtype(dtype))
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.tensor([0.0, 0.5, 1.0]))
    u = uniform((3,), dtype)
    assert float(u[0]) == info.tiny
    assert float(u[2]) == pytest.approx(1.0 - info.eps) and float(u[2]) < 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_and_relaxed_samples_are_finite_at_the_clamp_boundaries(dtype) -> None:
    info = torch.finfo(dtype)
    u = torch.tensor([info.tiny, 0.5, 1.0 - info.eps], dtype=dtype)
    assert float(u[0]) > 0 and float(u[2]) < 1
    for noise in (gumbel(u), logistic(u)):
        assert bool(torch.isfinite(noise).all()), (dtype, noise)

    logits = torch.tensor([[-30.0, 0.0, 30.0]], dtype=dtype)
    for temperature in (1.0, 1e-3):
        # Bernoulli: each boundary uniform against each logit.
        b = Bernoulli(logits=logits.expand(3, 3))
        soft = relaxed_sample(b, u.reshape(3, 1).expand(3, 3), temperature)
        assert bool(torch.isfinite(soft).all()) and bool(((soft >= 0) & (soft <= 1)).all())
        # Categorical: every permutation of the boundary uniforms over the categories.
        c = OneHotCategorical(logits=logits.expand(6, 3))
        perms = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
        soft = relaxed_sample(c, u[perms], temperature)
        assert bool(torch.isfinite(soft).all())
        torch.testing.assert_close(soft.float().sum(-1), torch.ones(6), atol=2e-2, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["bernoulli", "onehot"])
def test_relaxed_samples_are_finite_over_many_draws(dtype, family) -> None:
    """Temperature 1 and a tiny 1e-3, extreme logits (sd 5), 10^6 relaxed coordinates each."""
    torch.manual_seed(61)
    if family == "bernoulli":
        logits = (torch.randn(500, 20) * 5).to(dtype)
        q = Independent(Bernoulli(logits=logits, validate_args=False), 1)
    else:
        logits = (torch.randn(500, 5, 4) * 5).to(dtype)
        q = Independent(OneHotCategorical(logits=logits, validate_args=False), 1)
    for temperature in (1.0, 1e-3):
        for name in ("gumbel_softmax", "st_gumbel"):
            est = estimators.get(name, temperature=temperature)
            out = est(q, lambda z: z.float().flatten(2).sum(-1), num_samples=100)
            assert out.samples.dtype == dtype
            assert bool(torch.isfinite(out.samples).all()), (name, dtype, temperature)
            assert bool(torch.isfinite(out.value).all()), (name, dtype, temperature)


def test_float64_noise_has_float64_resolution_and_finite_normal_samples() -> None:
    """float64 uniforms are drawn in float64 (not float32 cast up), and the inverse-CDF map
    keeps float64's tiny finite (through float32 it underflows to 0 and gives -inf)."""
    torch.manual_seed(66)
    u = uniform((100_000,), torch.float64)
    assert bool((u.float().double() != u).any())
    info = torch.finfo(torch.float64)
    edges = torch.tensor([info.tiny, 0.5, 1 - info.eps], dtype=torch.float64)
    q = Normal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    z = reparameterized_sample(q, edges)
    assert bool(torch.isfinite(z).all()), z
    for dtype in DTYPES:
        info = torch.finfo(dtype)
        edges = torch.tensor([info.tiny, 0.5, 1 - info.eps], dtype=dtype)
        q = Normal(torch.zeros(3, dtype=dtype), torch.ones(3, dtype=dtype))
        assert bool(torch.isfinite(reparameterized_sample(q, edges)).all()), dtype


def test_draw_noise_follows_the_parameters_dtype() -> None:
    for dtype, held in ((torch.float32, torch.float32), (torch.float64, torch.float64),
                        (torch.bfloat16, torch.float32), (torch.float16, torch.float32)):
        q = Bernoulli(logits=torch.zeros(2, dtype=dtype))
        assert draw_noise(q, 3).dtype == held
    q = Categorical(logits=torch.zeros(2, 5))
    assert draw_noise(q, 3).shape == (3, 2, 5)  # one uniform per category


# The maps give the right distributions ----------------------------------------------------

def test_hard_samples_have_the_right_distribution() -> None:
    """Gumbel-max and the logistic threshold sample the right probabilities; inverse-CDF Normal
    samples have the right mean and variance (per-coordinate z-tests, 10^5 draws)."""
    torch.manual_seed(62)
    n = 100_000
    logits = torch.tensor([[-1.5, 0.0, 0.7, 2.0]], dtype=torch.float64)

    b = Bernoulli(logits=logits[0])
    draws = hard_sample(b, draw_noise(b, n))
    Summary.of(draws).assert_matches(torch.sigmoid(logits[0]), "Bernoulli frequencies")

    for q in (OneHotCategorical(logits=logits), Categorical(logits=logits)):
        draws = hard_sample(q, draw_noise(q, n))
        if isinstance(q, Categorical):
            draws = torch.nn.functional.one_hot(draws, 4).double()
        Summary.of(draws).assert_matches(torch.softmax(logits, -1), f"{type(q).__name__}")

    normal = Normal(torch.tensor([0.5, -2.0]), torch.tensor([0.3, 2.0]))
    z = reparameterized_sample(normal, draw_noise(normal, n))
    Summary.of(z).assert_matches(normal.loc, "Normal mean")
    Summary.of((z - normal.loc) ** 2).assert_matches(normal.scale**2, "Normal variance")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_bernoulli_threshold_is_the_logistic_perturbation(dtype) -> None:
    """[u > sigmoid(-logits)] is the event [logits + logistic(u) > 0] that the relaxed samples
    round to: over 10^6 draws they differ only where logits + logistic(u) is within float
    rounding of 0 (and at most a few times)."""
    torch.manual_seed(64)
    logits = (4 * torch.randn(1000, 1000)).to(dtype)
    q = Bernoulli(logits=logits)
    u = draw_noise(q, 1)[0]
    hard = hard_sample(q, u[None])[0]
    s = logits.float() + logistic(u)
    differ = hard != (s > 0).to(dtype)
    assert int(differ.sum()) <= 5
    assert bool((s[differ].abs() <= 1e-5 * (1 + logits.float()[differ].abs())).all())


def test_the_distribution_check_has_power() -> None:
    """The same check rejects frequencies 2% off."""
    torch.manual_seed(63)
    b = Bernoulli(logits=torch.tensor([0.0], dtype=torch.float64))
    draws = hard_sample(b, draw_noise(b, 100_000))
    Summary.of(draws).assert_rejects(torch.tensor([0.52]), "2% off")


# Common random numbers ---------------------------------------------------------------------

HARD = [
    ("reinforce", {}),
    ("st_gumbel", {"temperature": 1.0}),
    ("straight_through", {}),
]


CRN_FAMILIES = {
    "Independent(OneHotCategorical)": lambda: Independent(
        OneHotCategorical(logits=torch.randn(5, 3, 4)), 1),
    "OneHotCategorical": lambda: OneHotCategorical(logits=torch.randn(5, 4)),
    "Independent(Bernoulli)": lambda: Independent(Bernoulli(logits=torch.randn(5, 6)), 1),
    "Bernoulli": lambda: Bernoulli(logits=torch.randn(5)),
}


@pytest.mark.parametrize("family", list(CRN_FAMILIES))
def test_same_noise_gives_the_same_hard_samples(family: str) -> None:
    torch.manual_seed(64)
    q = CRN_FAMILIES[family]()
    noise = draw_noise(q, 50)
    weights = torch.randn(q.event_shape)
    seen: list[torch.Tensor] = []

    def f(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.detach().clone())
        return (z * weights).reshape(*z.shape[: z.dim() - len(q.event_shape)], -1).sum(-1)

    outs = {name: estimators.get(name, **opts)(q, f, 50, noise=noise) for name, opts in HARD}
    expected = hard_sample(q, noise)
    assert len({tuple(s.unique().tolist()) for s in seen}) == 1  # f saw only 0/1 values
    for name, out in outs.items():
        assert torch.equal(out.samples, expected), name
    for z in seen:  # what f received in the forward pass is the same hard sample
        assert torch.equal(z, expected)
    values = [out.value for out in outs.values()]
    for v in values[1:]:
        assert torch.equal(v, values[0])
    # The hard samples vary across the 50 draws (the noise is not degenerate).
    assert not bool((expected == expected[:1]).all())

    # Gumbel-Softmax with the same noise relaxes the same sample: it rounds to it.
    soft = estimators.get("gumbel_softmax", temperature=1.0)(q, f, 50, noise=noise).samples
    assert torch.equal(hard_of_relaxed(q, soft), expected)


def test_different_noise_gives_different_samples() -> None:
    q = Independent(OneHotCategorical(logits=torch.zeros(5, 3, 4)), 1)
    torch.manual_seed(65)
    a = estimators.get("reinforce")(q, lambda z: z.sum((-1, -2)), 20).samples
    b = estimators.get("reinforce")(q, lambda z: z.sum((-1, -2)), 20).samples
    assert not torch.equal(a, b)


# Low precision: the noise is drawn and mapped in float32 and only the result is cast ----------

SHORT = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", SHORT)
def test_gumbel_and_logistic_keep_their_tail_in_short_dtypes(dtype) -> None:
    """P(G > 13) = 1 - exp(-e^-13) and P(L > 13) = 1 / (1 + e^13), about 2.3e-6 each: 10^7
    draws exceed 13 with probability 1 - 1e-10. Drawn in the short dtype itself, the uniforms
    stop at 1 - eps (1% of them in bfloat16) and the variates at 4.8."""
    torch.manual_seed(62)
    u = uniform((10_000_000,), dtype)
    for name, noise in (("gumbel", gumbel(u)), ("logistic", logistic(u))):
        assert bool(torch.isfinite(noise).all())
        assert float(noise.max()) > 13, f"{name} tail cut at {float(noise.max())} in {dtype}"
    assert float((u == u.max()).float().mean()) < 1e-5  # no pile at the clamp


@pytest.mark.parametrize("dtype", SHORT)
def test_rare_outcomes_keep_their_probability_in_short_dtypes(dtype) -> None:
    """Logit gap 8: the rare outcome has probability 1 / (1 + e^8) = 3.4e-4 (softmax of the
    logits, computed here in float64). A cut tail never draws it."""
    torch.manual_seed(63)
    n = 1_000_000
    rare = 1.0 / (1.0 + torch.tensor(8.0, dtype=torch.float64).exp())
    bound = 5 * float((rare * (1 - rare) / n).sqrt())
    onehot = OneHotCategorical(logits=torch.tensor([[0.0, 8.0]], dtype=dtype).expand(n, 2),
                               validate_args=False)
    bernoulli = Bernoulli(logits=torch.full((n,), -8.0, dtype=dtype), validate_args=False)
    for q, pick in ((onehot, lambda z: z[..., 0]), (bernoulli, lambda z: z)):
        z = hard_sample(q, draw_noise(q, 1))
        assert z.dtype == dtype
        frequency = float(pick(z).double().mean())
        assert abs(frequency - float(rare)) < bound, (type(q).__name__, dtype, frequency)


@pytest.mark.parametrize("dtype", SHORT)
@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_hard_and_relaxed_samples_agree_up_to_ties_in_short_dtypes(dtype, temperature) -> None:
    """For the same noise, the relaxed sample rounds to the Gumbel-max sample, except where
    rounding to the short dtype ties the two largest coordinates (then the relaxed value at the
    hard sample's category equals its maximum): never a different winner."""
    torch.manual_seed(64)
    logits = (torch.randn(200_000, 10) * 2).to(dtype)
    q = OneHotCategorical(logits=logits, validate_args=False)
    noise = draw_noise(q, 1)
    hard = hard_sample(q, noise)
    soft = relaxed_sample(q, noise, temperature)
    assert soft.dtype == hard.dtype == dtype
    disagree = (hard_of_relaxed(q, soft) != hard).any(-1)
    at_hard = (soft * hard).sum(-1)
    assert bool((at_hard[disagree] == soft.amax(-1)[disagree]).all())
    assert float(disagree.float().mean()) < 2e-3
