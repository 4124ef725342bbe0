"""The hand-written plain-torch steps of `estibench.benchmarks.regression.speed.handwritten` compute
what estibench computes: from one seed, the same gradient on every parameter (so the timed ratio
compares like with like)."""

from __future__ import annotations

import pytest
import torch

from estibench.benchmarks.regression.speed.handwritten import CASES, Case


def gradients(objective, step, seed: int) -> dict[str, torch.Tensor]:
    objective.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    step()
    return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


@pytest.fixture
def float64():
    """Both sides in float64 (networks, data, noise: the timed runs use float32): a wrong
    formula shows at 1e-3 and more, float64 rounding at 1e-12 even where cancellation amplifies
    it (REBAR's and RELAX's |g|^2 gradients: their float32 rounding, estibench's float32
    against its float64, reaches 5e-3 on eta), so one tight tolerance serves every case."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label)
def test_plain_step_has_estibench_gradient(case: Case, float64) -> None:
    objective, ours, plain = case.build(batch=5)
    assert next(objective.parameters()).dtype == torch.float64
    for seed in (1, 2):
        expected, got = gradients(objective, ours, seed), gradients(objective, plain, seed)
        assert expected.keys() == got.keys()
        for name in expected:
            assert got[name].dtype == torch.float64, name
            torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-10,
                                       msg=name)
    # Different noise gives a different gradient (the comparison above is not vacuous).
    a, b = gradients(objective, ours, 1), gradients(objective, ours, 2)
    assert any(not torch.allclose(a[n], b[n]) for n in a)


@pytest.mark.parametrize("label", ["categorical 8x8 / reinforce(loo), S=4",
                                   "categorical 8x8 / nvil, S=1, kl=sampled (eval)",
                                   "categorical 8x8 / rebar, S=1 (train)"])
def test_against_another_checkout_times_the_same_estimator_in_the_same_state(label) -> None:
    """`--against`: this checkout's estimators imported as a second package give, through the
    same objective and in the same state (NVIL's baseline and running statistics, REBAR's eta
    and temperature), the gradient of the estibench step."""
    from pathlib import Path

    from estibench.benchmarks.regression.speed.handwritten import import_estimators
    against = import_estimators(str(Path(__file__).resolve().parents[3]))
    case = next(c for c in CASES if c.label == label)
    objective, ours, _, theirs = case.build(batch=5, against=against)
    assert theirs is not None and type(against.get(case.estimator)).__module__.startswith(
        "estimators_against")
    expected, got = gradients(objective, ours, 1), gradients(objective, theirs, 1)
    for name in expected:  # the other estimator's own parameters sit under estimator_against
        theirs_name = name.replace("estimator.", "estimator_against.", 1)
        torch.testing.assert_close(got[theirs_name], expected[name], rtol=1e-6, atol=1e-7,
                                   msg=name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label)
def test_user_path_has_the_plain_gradient(case: Case, float64) -> None:
    """The user's path (torch.distributions q, the user's own f, torch's KL or the fast one,
    validation on or off) computes the plain step's gradient from the same seed."""
    objective, sides = case.sides(batch=5, user=True)
    for seed in (1, 2):
        expected = gradients(objective, sides["plain"], seed)
        for side in ("user", "user, fast"):
            got = gradients(objective, sides[side], seed)
            assert expected.keys() == got.keys(), side
            for name in expected:
                torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-10,
                                           msg=f"{side}: {name}")


def test_the_fast_user_path_restores_validation() -> None:
    from torch.distributions import Distribution

    case = CASES[0]
    objective, sides = case.sides(batch=3, user=True)
    before = Distribution._validate_args
    sides["user, fast"]()
    assert Distribution._validate_args == before
