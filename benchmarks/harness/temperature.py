"""The temperature a cell's estimator runs at, and the schedule that anneals it.

An estimator with a temperature (Gumbel-Softmax, ST-Gumbel, REBAR, ...) follows the suite's
`[training.temperature]` schedule, tau(step) = max(minimum, initial * exp(-rate * step)), unless
its options set a temperature (an option is what runs) or its temperature is a fixed
hyperparameter of the method (ReinMax's, gapped ST's: `scheduled_temperature = False`).
"""

from __future__ import annotations

import math
from typing import Any

from estibench import estimators
from estibench.benchmarks.harness.spec import Temperature


def temperature_at(schedule: dict[str, float], step: int) -> float:
    """tau(step) = max(minimum, initial * exp(-rate * step))."""
    return max(schedule["minimum"], schedule["initial"] * math.exp(-schedule["rate"] * step))


def temperature_of(estimator: estimators.Estimator, options: dict[str, Any],
                   schedule: dict[str, float] | None) -> Temperature:
    """The temperature `estimator` (built from `options`) runs at in a cell: None when it has
    none, the suite's schedule where there is one and neither the options nor the method fix
    it, else its fixed value."""
    if not hasattr(estimator, "temperature"):
        return None
    annealed = getattr(estimator, "scheduled_temperature", True)
    if schedule is not None and "temperature" not in options and annealed:
        return dict(schedule)
    return float(estimator.temperature)


def follow_schedule(estimator: estimators.Estimator, temperature: Temperature,
                    step: int) -> None:
    """Set the estimator's temperature for `step` when it follows a schedule."""
    if isinstance(temperature, dict):
        estimator.temperature = temperature_at(temperature, step)
