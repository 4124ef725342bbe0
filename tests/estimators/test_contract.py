"""The estimator contract: shapes, refusals and their messages, EMA state, registry and plugins."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
from estibench.estimators import Estimator, EstimatorError, UnsupportedDistributionError
from estibench.estimators.base import output
from estibench.estimators.noise import (
    draw_noise,
    noise_shape,
    split_streams,
    stacked_streams,
    uniform,
)
from tests.plugin_support import write_plugin

REPO = Path(__file__).resolve().parents[2]
BUILTIN = ["exact", "gumbel_softmax", "pathwise", "reinforce", "st_gumbel", "straight_through"]


# Distributions by family, for any batch shape ----------------------------------------------

def make(family: str, batch: tuple[int, ...]):
    """(q, its leaf parameter, event shape, number of configurations or None)."""
    torch.manual_seed(70)
    if family == "Normal":
        loc = torch.randn(batch, requires_grad=True)
        return Normal(loc, torch.ones(batch)), loc, (), None
    if family == "Independent(Normal)":
        loc = torch.randn(*batch, 2, requires_grad=True)
        return Independent(Normal(loc, torch.ones(*batch, 2)), 1), loc, (2,), None
    if family == "Bernoulli":
        logits = torch.randn(batch, requires_grad=True)
        return Bernoulli(logits=logits), logits, (), 2
    if family == "Independent(Bernoulli)":
        logits = torch.randn(*batch, 3, requires_grad=True)
        return Independent(Bernoulli(logits=logits), 1), logits, (3,), 8
    if family == "OneHotCategorical":
        logits = torch.randn(*batch, 4, requires_grad=True)
        return OneHotCategorical(logits=logits), logits, (4,), 4
    if family == "Independent(OneHotCategorical)":
        logits = torch.randn(*batch, 2, 3, requires_grad=True)
        return Independent(OneHotCategorical(logits=logits), 1), logits, (2, 3), 9
    if family == "Categorical":
        logits = torch.randn(*batch, 4, requires_grad=True)
        return Categorical(logits=logits), logits, (), 4
    raise AssertionError(family)


CONTINUOUS = ["Normal", "Independent(Normal)"]
RELAXABLE = ["Bernoulli", "Independent(Bernoulli)", "OneHotCategorical",
             "Independent(OneHotCategorical)"]
DISCRETE = [*RELAXABLE, "Categorical"]
APPLIES = {
    "pathwise": CONTINUOUS,
    "reinforce": CONTINUOUS + DISCRETE,
    "reinforce_ema": CONTINUOUS + DISCRETE,
    "reinforce_loo": CONTINUOUS + DISCRETE,
    "gumbel_softmax": RELAXABLE,
    "st_gumbel": RELAXABLE,
    "straight_through": RELAXABLE,
    "exact": DISCRETE,
}


def build(key: str) -> Estimator:
    if key.startswith("reinforce_"):
        return estimators.get("reinforce", baseline=key.split("_")[1])
    return estimators.get(key)


def integrand(batch: tuple[int, ...], weight: torch.Tensor):
    """f(z) = (w * sum of z's event entries)^2 + w, shape (S, *batch)."""

    def f(z: torch.Tensor) -> torch.Tensor:
        flat = z.to(weight.dtype).reshape(z.shape[0], *batch, -1)
        return (weight * flat.sum(-1)) ** 2 + weight

    return f


SHAPE_CASES = [
    (key, family, batch, s)
    for key, families in APPLIES.items()
    for family in families
    for batch in [(), (3,), (2, 3)]
    for s in ([4] if key == "reinforce_loo" else [1, 4])
]


@pytest.mark.parametrize(("key", "family", "batch", "num_samples"), SHAPE_CASES)
def test_shapes(key: str, family: str, batch: tuple[int, ...], num_samples: int) -> None:
    q, leaf, event, configurations = make(family, batch)
    weight = torch.tensor(0.7, requires_grad=True)
    estimator = build(key)
    out = estimator(q, integrand(batch, weight), num_samples=num_samples)

    assert out.loss.shape == batch and out.value.shape == batch
    rows = configurations if key == "exact" else num_samples
    assert out.samples.shape == (rows, *batch, *event)
    assert not out.value.requires_grad
    assert torch.isfinite(out.value).all()
    if estimator.unbiased:
        # The surrogate's forward value is the estimate itself.
        torch.testing.assert_close(out.loss.detach(), out.value)
    out.loss.sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == leaf.shape
    assert torch.isfinite(leaf.grad).all() and weight.grad is not None


def test_applies_to_matches_the_table() -> None:
    for key, families in APPLIES.items():
        estimator = build(key)
        for family in CONTINUOUS + DISCRETE:
            q = make(family, (2,))[0]
            assert estimator.applies_to(q) == (family in families), (key, family)


# Refusals ----------------------------------------------------------------------------------

def refusal(call, *fragments: str) -> str:
    """Run `call`, expecting an EstimatorError whose message contains every fragment."""
    with pytest.raises(EstimatorError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _f(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[0], 2, -1).float().sum(-1)


@pytest.mark.parametrize(
    ("key", "family", "allowed"),
    [
        ("pathwise", "Bernoulli", "reparameterizable"),
        ("pathwise", "Independent(OneHotCategorical)", "reparameterizable"),
        ("pathwise", "Categorical", "reparameterizable"),
        ("gumbel_softmax", "Categorical", "Bernoulli and OneHotCategorical"),
        ("st_gumbel", "Categorical", "Bernoulli and OneHotCategorical"),
        ("straight_through", "Categorical", "Bernoulli and OneHotCategorical"),
        ("gumbel_softmax", "Normal", "Bernoulli and OneHotCategorical"),
        ("st_gumbel", "Independent(Normal)", "Bernoulli and OneHotCategorical"),
        ("straight_through", "Normal", "Bernoulli and OneHotCategorical"),
        ("exact", "Normal", "Categorical, OneHotCategorical and Bernoulli"),
        ("exact", "Independent(Normal)", "Categorical, OneHotCategorical and Bernoulli"),
    ],
)
def test_unsupported_distributions_are_refused(key: str, family: str, allowed: str) -> None:
    q = make(family, (2,))[0]
    with pytest.raises(UnsupportedDistributionError) as info:
        build(key)(q, _f, num_samples=2)
    message = str(info.value)
    assert f"estimator '{key}'" in message and family in message and allowed in message
    assert info.value.estimator == key and info.value.distribution == family
    # `check` raises the same error without sampling.
    with pytest.raises(UnsupportedDistributionError):
        build(key).check(q)


def test_exact_refuses_too_many_configurations() -> None:
    q = Independent(Bernoulli(logits=torch.zeros(2, 13)), 1)
    refusal(lambda: estimators.get("exact")(q, _f), "estimator 'exact'", "Independent(Bernoulli)",
            "2^13 = 8192", "at most 4096")
    refusal(lambda: estimators.get("exact", max_configurations=0), "max_configurations", "0",
            ">= 1")


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel"])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_temperatures_are_refused(name: str, bad: float) -> None:
    refusal(lambda: estimators.get(name, temperature=bad), f"estimator '{name}'", "temperature",
            repr(bad), "positive finite")
    # A schedule that sets a bad value during training is refused too, and nothing changes.
    estimator = estimators.get(name, temperature=0.5)

    def set_bad() -> None:
        estimator.temperature = bad

    refusal(set_bad, f"estimator '{name}'", "temperature", repr(bad), "positive finite")
    assert estimator.temperature == 0.5


def test_reinforce_option_refusals() -> None:
    refusal(lambda: estimators.get("reinforce", baseline="mean"), "estimator 'reinforce'",
            "baseline", "'mean'", "none, ema, loo")
    refusal(lambda: estimators.get("reinforce", decay=1.0), "estimator 'reinforce'", "decay",
            "1.0", "[0, 1)")
    q = make("Bernoulli", (2,))[0]
    loo = estimators.get("reinforce", baseline="loo")
    refusal(lambda: loo(q, lambda z: z, num_samples=1), "estimator 'reinforce'",
            "baseline='loo'", "num_samples >= 2", "got 1")


@pytest.mark.parametrize("key", ["pathwise", "reinforce", "gumbel_softmax", "st_gumbel",
                                 "straight_through"])
@pytest.mark.parametrize("bad", [0, -2, 1.5, "3"])
def test_bad_num_samples_are_refused(key: str, bad) -> None:
    family = "Normal" if key == "pathwise" else "Bernoulli"
    q = make(family, (2,))[0]
    refusal(lambda: build(key)(q, lambda z: z, num_samples=bad), f"estimator '{key}'",
            "num_samples", repr(bad), "integer >= 1")


@pytest.mark.parametrize("key", ["pathwise", "reinforce", "gumbel_softmax", "st_gumbel",
                                 "straight_through"])
def test_noise_of_the_wrong_shape_is_refused(key: str) -> None:
    family = "Independent(Normal)" if key == "pathwise" else "Independent(OneHotCategorical)"
    q = make(family, (2,))[0]
    expected = tuple(noise_shape(q, 3))
    wrong = torch.rand(3, 2, 5)
    refusal(lambda: build(key)(q, _f, 3, noise=wrong), f"estimator '{key}'", "noise",
            str((3, 2, 5)), str(expected))
    build(key)(q, _f, 3, noise=torch.rand(expected))  # the right shape works


@pytest.mark.parametrize("key", ["pathwise", "reinforce", "gumbel_softmax", "st_gumbel",
                                 "straight_through", "exact"])
def test_f_returning_the_wrong_shape_is_refused(key: str) -> None:
    family = "Independent(Normal)" if key == "pathwise" else "Independent(Bernoulli)"
    q = make(family, (2,))[0]
    rows = 8 if key == "exact" else 3
    refusal(lambda: build(key)(q, lambda z: z.sum(), 3), f"estimator '{key}'", "f returned",
            "()", str((rows, 2)))
    refusal(lambda: build(key)(q, lambda z: z, 3), f"estimator '{key}'", "f returned",
            str((rows, 2, *q.event_shape)), str((rows, 2)))


def test_unknown_names_and_options_are_refused_with_suggestions() -> None:
    message = refusal(lambda: estimators.get("reinfroce"), "unknown estimator 'reinfroce'",
                      "did you mean 'reinforce'?")
    for name in BUILTIN:
        assert name in message  # what is allowed
    refusal(lambda: estimators.get("reinforce", basline="loo"), "estimator 'reinforce'",
            "no option 'basline'", "did you mean 'baseline'?", "baseline, decay, direct_term")
    refusal(lambda: estimators.get("gumbel_softmax", temprature=0.5), "'gumbel_softmax'",
            "'temprature'", "did you mean 'temperature'?")
    # Nothing close: no suggestion, but the list of what exists.
    message = refusal(lambda: estimators.get("zzzzzz"), "unknown estimator 'zzzzzz'", "exact")
    assert "did you mean" not in message


# EMA baseline --------------------------------------------------------------------------------

def _ema_call(estimator, value: float, train: bool = True) -> torch.Tensor:
    """One call with a constant f = value; returns the gradient w.r.t. the logits."""
    estimator.train(train)
    logits = torch.tensor([0.3, -0.4], requires_grad=True)
    q = Bernoulli(logits=logits)
    out = estimator(q, lambda z: torch.full_like(z, value), num_samples=5)
    (grad,) = torch.autograd.grad(out.loss.sum(), [logits])
    return grad


def test_ema_updates_only_in_training_mode_and_is_bias_corrected() -> None:
    torch.manual_seed(71)
    d = 0.9
    est = estimators.get("reinforce", baseline="ema", decay=d)
    assert int(est.ema_count) == 0
    # No history: baseline 0, so a constant f still moves the logits (score * f).
    assert _ema_call(est, 2.0, train=False).abs().sum() > 0
    assert int(est.ema_count) == 0 and float(est.ema_sum) == 0.0  # eval: no update

    assert _ema_call(est, 2.0).abs().sum() > 0  # training: used baseline 0, then updated
    assert int(est.ema_count) == 1
    assert float(est.ema_sum) == pytest.approx((1 - d) * 2.0)
    # Bias-corrected: after one update the baseline is exactly the value seen (not 0.1 * 2),
    # so a constant f now has a zero score term.
    assert float(est.baseline_values(torch.zeros(5, 2))) == pytest.approx(2.0, rel=1e-6)
    assert _ema_call(est, 2.0, train=False).abs().max() < 1e-6
    assert int(est.ema_count) == 1  # still no update in eval mode

    _ema_call(est, 5.0)  # second training update
    expected = (d * (1 - d) * 2.0 + (1 - d) * 5.0) / (1 - d**2)
    assert float(est.baseline_values(torch.zeros(1))) == pytest.approx(expected, rel=1e-6)


def test_ema_state_is_in_the_state_dict() -> None:
    torch.manual_seed(72)
    est = estimators.get("reinforce", baseline="ema", decay=0.8)
    for value in (1.0, 3.0, -2.0):
        _ema_call(est, value)
    state = est.state_dict()
    assert set(state) >= {"ema_sum", "ema_count"}
    fresh = estimators.get("reinforce", baseline="ema", decay=0.8)
    fresh.load_state_dict(state)
    assert int(fresh.ema_count) == 3
    assert float(fresh.baseline_values(torch.zeros(1))) == float(est.baseline_values(
        torch.zeros(1)))


# Registry and plugins -------------------------------------------------------------------------

def test_available_lists_the_builtin_families() -> None:
    assert set(BUILTIN) <= set(estimators.available())
    assert estimators.available() == sorted(estimators.available())


class TinyEstimator(Estimator):
    """A test-only estimator: pathwise through z = q.mean * scale (deterministic)."""

    name = "tiny_test_estimator"
    supports = "Normal"

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def applies_to(self, q) -> bool:
        return isinstance(q, Normal)

    def estimate(self, q, f, num_samples, noise):
        z = (q.mean * self.scale).expand(num_samples, *q.batch_shape)
        return output(self.evaluate(f, z, num_samples, q), z.detach())


def test_register_adds_an_estimator(monkeypatch) -> None:
    # Registrations go into a copy of the table that monkeypatch restores afterwards.
    monkeypatch.setattr(estimators.registry, "_factories", dict(estimators.registry._factories))
    assert TinyEstimator.name not in estimators.available()
    assert estimators.register(TinyEstimator.name, TinyEstimator) is TinyEstimator
    assert TinyEstimator.name in estimators.available()
    est = estimators.get(TinyEstimator.name, scale=2.0)
    assert isinstance(est, TinyEstimator) and est.scale == 2.0
    loc = torch.tensor([1.0, -1.0], requires_grad=True)
    out = est(Normal(loc, torch.ones(2)), lambda z: z**2, num_samples=3)
    torch.testing.assert_close(out.value, torch.tensor([4.0, 4.0]))
    out.loss.sum().backward()
    torch.testing.assert_close(loc.grad, torch.tensor([8.0, -8.0]))
    refusal(lambda: estimators.get(TinyEstimator.name, scael=2.0), "did you mean 'scale'?")
    # The same name twice, with another factory, is refused.
    refusal(lambda: estimators.register(TinyEstimator.name, Estimator),
            f"estimator '{TinyEstimator.name}' is already registered")

    # Decorator form.
    @estimators.register("tiny_test_decorated")
    class Decorated(TinyEstimator):
        name = "tiny_test_decorated"

    assert isinstance(estimators.get("tiny_test_decorated"), Decorated)

    monkeypatch.undo()
    assert TinyEstimator.name not in estimators.available()
    assert "tiny_test_decorated" not in estimators.available()


PLUGIN = '''
import torch
from estibench.estimators import Estimator
from estibench.estimators.base import output


class HalfPathwise(Estimator):
    """A plugin estimator: pathwise, scaled by one half."""

    name = "half_pathwise"
    supports = "reparameterizable distributions"

    def __init__(self, factor: float = 0.5) -> None:
        super().__init__()
        self.factor = factor

    def applies_to(self, q):
        return bool(q.has_rsample)

    def estimate(self, q, f, num_samples, noise):
        z = q.rsample((num_samples,))
        return output(self.factor * self.evaluate(f, z, num_samples, q), z)
'''

PLUGIN_SCRIPT = textwrap.dedent('''
    import json
    import torch
    from estibench import estimators
    report = {"available": estimators.available()}
    est = estimators.get("half_pathwise", factor=0.25)
    loc = torch.zeros(3, requires_grad=True)
    out = est(torch.distributions.Normal(loc, torch.ones(3)), lambda z: z + 4.0, num_samples=2)
    out.loss.sum().backward()
    report.update(type=type(est).__name__, value=out.value.tolist(), grad=loc.grad.tolist())
    try:
        estimators.get("half_pathwise", factr=1.0)
    except estimators.EstimatorError as error:
        report["error"] = str(error)
    print(json.dumps(report))
''')


def test_entry_point_plugin_in_a_real_process(tmp_path: Path) -> None:
    """A plugin package on PYTHONPATH with a hand-written dist-info: found by name, runs, and
    nothing in this repository changes."""
    entry = "half_pathwise = estibench_test_plugin:HalfPathwise"
    root = write_plugin(tmp_path / "site", "estibench_test_plugin", PLUGIN,
                        {"estibench.estimators": entry})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(REPO)]))
    result = subprocess.run([sys.executable, "-c", PLUGIN_SCRIPT], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["available"]) >= {*BUILTIN, "half_pathwise"}
    assert report["type"] == "HalfPathwise"
    assert report["grad"] == [0.25, 0.25, 0.25]  # d/dloc of 0.25 * mean_s (loc + eps_s + 4)
    # value = 0.25 * (4 + mean of 2 standard normals): within 6 standard deviations of 1.
    assert all(abs(v - 1.0) < 6 * 0.25 / math.sqrt(2) for v in report["value"])
    assert "'half_pathwise' has no option 'factr'" in report["error"]
    assert "did you mean 'factor'?" in report["error"]
    # This process never saw the plugin.
    assert "half_pathwise" not in estimators.available()


# ---------------------------------------------------------------- evaluations, streams, aliases


def test_outputs_count_the_evaluations_of_f() -> None:
    q = torch.distributions.Bernoulli(logits=torch.zeros(3))
    calls: list[int] = []

    def f(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return z

    for name, options, samples in [("reinforce", {}, 1), ("reinforce", {"baseline": "loo"}, 4),
                                   ("exact", {}, 1)]:
        calls.clear()
        out = estimators.get(name, **options)(q, f, samples)
        assert out.evaluations == sum(calls)  # what f saw, counted by the contract
    assert estimators.get("reinforce")(q, f, 5).evaluations == 5
    assert estimators.get("exact")(q, f, 1).evaluations == 2  # the two outcomes of a Bernoulli


def test_evaluate_sets_calls_f_once_and_splits_by_set() -> None:
    q = torch.distributions.Bernoulli(logits=torch.zeros(2))
    est = estimators.get("reinforce")
    seen: list[tuple[int, ...]] = []

    def f(z: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(z.shape))
        return z * 10

    a, b = torch.zeros(1, 2), torch.ones(3, 2)
    fa, fb = est.evaluate_sets(f, [a, b], q)
    assert seen == [(4, 2)] and est._evaluations == 4
    assert torch.equal(fa, a * 10) and torch.equal(fb, b * 10)
    with pytest.raises(estimators.EstimatorError, match=r"expected \(number of samples"):
        est.evaluate_many(lambda z: z.sum(0), a, q)


def test_further_noise_streams_leave_the_first_stream_unchanged() -> None:
    q = torch.distributions.Bernoulli(logits=torch.zeros(5))
    one = draw_noise(q, 3, torch.Generator().manual_seed(0))
    two = draw_noise(q, 3, torch.Generator().manual_seed(0), streams=2)
    assert two.shape == noise_shape(q, 3, streams=2) == (6, 5)
    u, v = split_streams(two, 2)
    assert torch.equal(u, one) and not torch.equal(u, v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(5,), (32, 8, 8), (3, 70_000)])
def test_several_streams_on_cpu_are_one_draw_equal_to_the_streams_drawn_in_turn(
        shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """draw_noise takes the streams in one draw on CPU; the oracle draws them one by one."""
    q = torch.distributions.Bernoulli(logits=torch.zeros(shape, dtype=dtype))
    for streams in (2, 10):
        got = draw_noise(q, 2, torch.Generator().manual_seed(3), streams=streams)
        g = torch.Generator().manual_seed(3)
        one_by_one = torch.cat([uniform(noise_shape(q, 2), dtype, generator=g)
                                for _ in range(streams)])
        assert got.dtype == one_by_one.dtype and torch.equal(got, one_by_one)
        torch.manual_seed(4)  # the global generator, as the estimators draw by default
        got = draw_noise(q, 2, streams=streams)
        torch.manual_seed(4)
        assert torch.equal(got, torch.cat([uniform(noise_shape(q, 2), dtype)
                                           for _ in range(streams)]))
    assert torch.equal(stacked_streams(got, streams)[1],
                       split_streams(got, streams)[1])


def test_aliases_build_the_canonical_estimator_and_refuse_contradictions() -> None:
    registry = estimators.Registry("estimator", "estibench.none")
    registry.register("reinforce", estimators.Reinforce)
    registry.alias("rloo", "reinforce", baseline="loo")
    assert "rloo" in registry.available()
    est = registry.get("rloo")
    assert isinstance(est, estimators.Reinforce) and est.baseline == "loo"
    assert registry.resolve("rloo", {"decay": 0.5}) == ("reinforce",
                                                        {"decay": 0.5, "baseline": "loo"})
    assert registry.resolve("reinforce", {}) == ("reinforce", {})
    with pytest.raises(estimators.EstimatorError, match="cannot take baseline='none'"):
        registry.get("rloo", baseline="none")
    with pytest.raises(estimators.EstimatorError, match="already registered"):
        registry.alias("reinforce", "rloo")
