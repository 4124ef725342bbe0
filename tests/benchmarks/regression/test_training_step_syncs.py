"""The training step checks finiteness without a host synchronisation per step: values are
noted on their device and checked at the loop's reading points, and the error still names the
first bad step, the loss before the gradient (what a check after every step reported)."""

from __future__ import annotations

import math

import pytest
import torch

from estibench.benchmarks.harness.cell import CellFailure, _FiniteCheck


def noted(steps: dict[int, tuple[float, float | None, float]]) -> _FiniteCheck:
    check = _FiniteCheck()
    for step, (loss, aux, norm) in steps.items():
        check.note_loss(step, torch.tensor(loss), None if aux is None else torch.tensor(aux))
        check.note_gradient(step, torch.tensor(norm))
    return check


def test_finite_values_pass_and_are_cleared() -> None:
    check = noted({0: (1.0, None, 2.0), 1: (0.5, 0.1, 3.0)})
    check.check()
    assert not check.losses and not check.norms


@pytest.mark.parametrize("steps, message", [
    ({0: (1.0, None, 1.0), 1: (math.nan, None, math.nan), 2: (math.inf, None, 1.0)},
     "non-finite loss (nan) at training step 1"),
    ({0: (1.0, math.inf, 1.0)}, "non-finite loss (inf) at training step 0"),
    ({0: (1.0, None, 1.0), 1: (1.0, None, math.inf), 2: (math.nan, None, 1.0)},
     "non-finite gradient (norm inf) at training step 1"),
])
def test_the_first_bad_step_is_named(steps, message) -> None:
    with pytest.raises(CellFailure, match=message.replace("(", r"\(").replace(")", r"\)")):
        noted(steps).check()
