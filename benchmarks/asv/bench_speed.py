"""Time one gradient estimate and one training step, per objective x estimator (seconds)."""

from __future__ import annotations

from .common import PARAM_NAMES, PARAMS, Problem


class GradientEstimate:
    """Forward and backward of the estimated objective into every parameter's .grad."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 120

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)
        self.problem.gradient_estimate()  # warm up (first-call allocations, thread pools)

    def time_gradient_estimate(self, objective: str, estimator: str) -> None:
        self.problem.gradient_estimate()


class TrainingStep:
    """A gradient estimate followed by an Adam update of every parameter."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 120

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)
        self.problem.training_step()

    def time_training_step(self, objective: str, estimator: str) -> None:
        self.problem.training_step()
