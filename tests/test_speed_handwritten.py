"""The hand-written plain-torch steps of `benchmarks.speed.handwritten` compute what estibench
computes: from one seed, the same gradient on every parameter (so the timed ratio compares like
with like)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.speed.handwritten import CASES, Case


def gradients(objective, step, seed: int) -> dict[str, torch.Tensor]:
    objective.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    step()
    return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label)
def test_plain_step_has_estibench_gradient(case: Case) -> None:
    objective, ours, plain = case.build(batch=5)
    for seed in (1, 2):
        expected, got = gradients(objective, ours, seed), gradients(objective, plain, seed)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=case.atol,
                                       msg=name)
    # Different noise gives a different gradient (the comparison above is not vacuous).
    a, b = gradients(objective, ours, 1), gradients(objective, ours, 2)
    assert any(not torch.allclose(a[n], b[n]) for n in a)
