"""`estibench.benchmarks.regression.speed.step_profile` counts what it says it counts: operations
and Python calls of a step whose contents are known, and float32 rounding that is float32's."""

from __future__ import annotations

import torch

from estibench.benchmarks.regression.speed.handwritten import CASES
from estibench.benchmarks.regression.speed.step_profile import (
    float32_rounding,
    operations,
    python_calls,
)


class Nothing(torch.nn.Module):  # an objective with nothing to clear
    pass


def test_operations_and_python_calls_of_a_known_step() -> None:
    a, b = torch.randn(3), torch.randn(3)

    def helper(t):
        return t

    def step() -> None:  # two aten operations; one Python call and two builtins besides them
        helper(torch.add(a, b))
        len((a, b))  # a tuple: Tensor.__len__ would add its own Python calls
        torch.mul(a, b)

    # torch.add and torch.mul: builtins too, so 4 calls, and 2 top-level operations
    assert operations(Nothing(), step) == 2
    assert python_calls(Nothing(), step, calls=50) == 4


def test_float32_rounding_is_float32_sized_for_every_case() -> None:
    """estibench's float32 gradient against its float64 one, same parameters and noise: above
    0 (two precisions did run) and within 1e-4 of the largest entry for every case (a step
    that lost precision, or computed part of the float64 step in float32, would show)."""
    for case in CASES:
        error, largest, where = float32_rounding(case)
        assert 0 < error <= 1e-4 * largest, (case.label, error, largest, where)
