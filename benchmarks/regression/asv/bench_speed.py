"""Time one gradient estimate and one training step, per objective x estimator (seconds).

Sampling is bounded so that a default (non --quick) recording of one commit stays within a few
minutes on two cores: asv's defaults (up to 20 s of samples per pair and round, 2 rounds) would
spend most of an hour on these two benchmarks alone. A call takes about a millisecond, so 1 s of
samples per round gives asv's 99% interval on hundreds of calls.
"""

from __future__ import annotations

from .common import PARAM_NAMES, PARAMS, Problem


class _Timed:
    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 120
    rounds = 2
    repeat = (3, 10, 1.0)  # (min samples, max samples, max seconds) per round
    warmup_time = 0.1


class GradientEstimate(_Timed):
    """Forward and backward of the estimated objective into every parameter's .grad."""

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)
        self.problem.gradient_estimate()  # warm up (first-call allocations, thread pools)

    def time_gradient_estimate(self, objective: str, estimator: str) -> None:
        self.problem.gradient_estimate()


class TrainingStep(_Timed):
    """A gradient estimate followed by an Adam update of every parameter."""

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)
        self.problem.training_step()

    def time_training_step(self, objective: str, estimator: str) -> None:
        self.problem.training_step()
