"""Trainable estimators (nvil, rebar, relax): training their parameters lowers the variance,
memory does not grow over training steps, and the runner trains them with their own optimizer
from aux_loss alone (the model loss never reaches them, aux_loss never reaches the model).

Variances before and after are measured on the same noise (common random numbers), so the
difference is the estimator's, not the draw's; the required drop is far outside the noise.
"""

from __future__ import annotations

import gc

import torch
from torch.distributions import Bernoulli, Independent

from estibench import estimators
from estibench.benchmarks import metrics, objectives
from estibench.benchmarks.harness.cell import _Cell
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.suites.schema import SuiteError, parse_suite
from estibench.estimators.noise import uniform
from tests.helpers import binary_batch, small_categorical_vae

F64 = torch.float64


def toy_variance(estimator, phi: float, noise: torch.Tensor) -> float:
    """Variance of the toy's estimates, one per column of `noise`, at logit phi (eval mode)."""
    toy = objectives.get("bernoulli_toy").double()
    estimator.eval()
    leaf = torch.full((noise.shape[-1],), phi, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(toy.estimate(None, estimator, 1, noise=noise, params=leaf)
                               .loss.sum(), [leaf])
    estimator.train()
    return float(g.var())


def train_on_aux(estimator, estimate, steps: int, lr: float) -> None:
    """Adam on the estimator's parameters from aux_loss only."""
    own = list(estimator.parameters())
    optimizer = torch.optim.Adam(own, lr=lr)
    estimator.train()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        estimate().aux_loss.mean().backward(inputs=own)
        optimizer.step()


def toy_estimate(estimator, phi: float, rows: int = 128):
    toy = objectives.get("bernoulli_toy").double()
    leaf = torch.full((rows,), phi, dtype=F64, requires_grad=True)
    return lambda: toy.estimate(None, estimator, 1, params=leaf)


def snapshot(estimator) -> list[torch.Tensor]:
    return [p.detach().clone() for p in estimator.parameters()]


def moved(before, estimator) -> bool:
    return all(not torch.equal(a, p.detach()) for a, p in zip(before, estimator.parameters(),
                                                              strict=True))


def test_rebar_and_relax_learn_a_lower_variance_on_the_toy() -> None:
    torch.manual_seed(0)
    noise = uniform((2, 100_000), F64, generator=torch.Generator().manual_seed(1))
    for name in ("rebar", "relax"):
        estimator = estimators.get(name).double()
        estimator.prepare(Bernoulli(logits=torch.zeros(1, dtype=F64)))
        before = snapshot(estimator)
        variance = toy_variance(estimator, 1.0, noise)
        train_on_aux(estimator, toy_estimate(estimator, 1.0), steps=100, lr=0.05)
        assert moved(before, estimator), name
        trained = toy_variance(estimator, 1.0, noise)
        assert trained < 0.8 * variance, (name, variance, trained)


def test_nvil_learns_a_baseline_on_a_two_bit_toy() -> None:
    """f couples two bits (a cubic), so no constant removes the variance; the learned
    input-dependent baseline must still lower it from its random start."""
    w = torch.tensor([1.0, 2.0], dtype=F64)

    def f(y):
        return (y @ w - 0.7) ** 3

    theta = torch.tensor([0.8, -0.4], dtype=F64)

    def q_of(rows):
        leaf = theta.expand(rows, 2).clone().requires_grad_(True)
        return leaf, Independent(Bernoulli(logits=leaf, validate_args=False), 1)

    torch.manual_seed(2)
    estimator = estimators.get("nvil", variance_normalization=False).double()
    leaf, q = q_of(50_000)
    estimator.prepare(q)
    noise = uniform(estimator.noise_shape(q, 1), F64,
                             generator=torch.Generator().manual_seed(3))

    def variance() -> float:
        estimator.eval()
        (g,) = torch.autograd.grad(estimator(q, f, 1, noise=noise).loss.sum(), [leaf])
        estimator.train()
        return float(g.var(0).sum())

    start, before = variance(), snapshot(estimator)
    train_on_aux(estimator, lambda: estimator(q_of(256)[1], f, 1), steps=300, lr=0.01)
    assert moved(before, estimator)
    assert variance() < 0.7 * start


def test_trained_control_variates_lower_the_variance_on_the_categorical_vae() -> None:
    objective, x = small_categorical_vae(), binary_batch(16, 8)
    # (REBAR's eta and lambda gain only ~10% here; its drop is shown on the toy above.)
    for name, options in (("nvil", {"variance_normalization": False}), ("relax", {})):
        torch.manual_seed(4)
        estimator = estimators.get(name, **options).double()

        def variance(est=estimator) -> float:
            return metrics.gradient_stats(objective, est, x, replicas=400, num_samples=1,
                                          seed=5).total_variance

        start = variance()
        before = snapshot(estimator)
        lr = estimator.aux_learning_rate(1e-3)
        train_on_aux(estimator, lambda est=estimator: objective.estimate(x, est, 1),
                     steps=300, lr=lr)
        assert moved(before, estimator), name
        trained = variance()
        assert trained < 0.8 * start, (name, start, trained)


def net_tensor_bytes(function) -> int:
    """Bytes of CPU tensor memory still allocated after `function()` that were not before:
    the sum of the profiler's allocation (+) and free (-) events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        function()
    events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
    return sum(e.nbytes() for e in events if e.name() == "[memory]")


def test_memory_does_not_grow_over_training_steps() -> None:
    """REBAR and RELAX build their variance objective with create_graph=True; a step that kept
    any of that graph alive (a reference cycle through a gradient) would leave bytes behind on
    every step. Model and estimator are trained as the runner does, after a warm-up that
    allocates the optimizers' state; then 10 more steps must leave nothing allocated (a graph
    kept alive per step leaves kilobytes: the sum is exact, not a noisy RSS reading)."""
    objective, x = small_categorical_vae(), binary_batch(16, 8)
    for name in ("rebar", "relax"):
        torch.manual_seed(6)
        estimator = estimators.get(name).double()
        with torch.no_grad():
            estimator.prepare(objective.posterior(x))
        model, own = list(objective.parameters()), list(estimator.parameters())
        optimizers = [torch.optim.Adam(model, 1e-3), torch.optim.Adam(own, 1e-2)]

        def steps(n: int, est=estimator, model=model, own=own, optimizers=optimizers) -> None:
            for _ in range(n):
                for opt in optimizers:
                    opt.zero_grad(set_to_none=False)
                out = objective.estimate(x, est, 2)
                (-out.loss.mean()).backward(inputs=model, retain_graph=True)
                out.aux_loss.mean().backward(inputs=own)
                for opt in optimizers:
                    opt.step()

        steps(3)
        gc.collect()
        tensors = sum(torch.is_tensor(o) for o in gc.get_objects())
        assert net_tensor_bytes(lambda steps=steps: steps(10)) == 0, name
        gc.collect()
        assert sum(torch.is_tensor(o) for o in gc.get_objects()) == tensors, name


# The runner ----------------------------------------------------------------------------------

SUITE = {
    "name": "own-optimizer",
    "num_samples": [2],
    "training": {"steps": 30, "learning_rate": 0.05},
    "metrics": {"checkpoints": [-1], "replicas": 8, "throughput": False, "bounds": False},
    "objectives": [{"name": "bernoulli_toy", "options": {"init": 1.0}}],
    "estimators": [{"name": "rebar"}],
}


def _trained_cell(training=None, estimator=None) -> _Cell:
    raw = {**SUITE, "training": {**SUITE["training"], **(training or {})},
           "estimators": [{**SUITE["estimators"][0], **(estimator or {})}]}
    (config,) = expand(parse_suite(raw)).runnable
    cell = _Cell(config, torch.device("cpu"))
    cell.train()
    return cell


def test_the_runner_trains_estimator_parameters_with_their_own_optimizer() -> None:
    init = estimators.get("rebar")
    eta, log_temperature = init.eta.item(), init.log_temperature.item()
    # The estimator's own learning rate (almost zero): its parameters stay, the model moves.
    cell = _trained_cell(estimator={"learning_rate": 1e-12})
    assert abs(cell.trainer.eta.item() - eta) < 1e-9
    assert abs(cell.trainer.log_temperature.item() - log_temperature) < 1e-9
    assert abs(cell.objective.phi.item() - 1.0) > 1e-3
    # A model learning rate of almost zero: aux_loss moves the estimator, never the model.
    cell = _trained_cell(training={"learning_rate": 1e-12}, estimator={"learning_rate": 0.05})
    assert abs(cell.objective.phi.item() - 1.0) < 1e-9
    assert abs(cell.trainer.eta.item() - eta) > 1e-3
    # The default: the estimator's aux_learning_rate (REBAR: 10x the model's).
    (config,) = expand(parse_suite(SUITE)).runnable
    assert "trainer_training" not in config.to_json()  # cell keys of existing runs stay
    assert init.aux_learning_rate(0.05) == 0.5


def test_the_estimators_optimizer_options_are_validated() -> None:
    bad = {**SUITE, "estimators": [{"name": "rebar", "learning_rate": -1.0}]}
    try:
        parse_suite(bad)
    except SuiteError as err:
        assert "estimators.0.learning_rate" in str(err)
    else:
        raise AssertionError("a negative learning rate was accepted")
    raw = {**SUITE, "estimators": [{"name": "rebar", "optimizer": "sgd", "learning_rate": 0.1}]}
    (config,) = expand(parse_suite(raw)).runnable
    assert config.trainer_training == {"optimizer": "sgd", "learning_rate": 0.1}
