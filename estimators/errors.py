"""Errors of the estimator library: each names the estimator, the value and what is allowed."""

from __future__ import annotations


class EstimatorError(ValueError):
    """Bad use of an estimator (unknown name, bad option, bad argument)."""


class ContractError(EstimatorError):
    """An estimator broke the contract (returned something other than an `EstimatorOutput`, or
    a loss of the wrong shape): a bug in it, so the harness fails its cells; never recorded as
    "not applicable"."""


class UnsupportedDistributionError(EstimatorError):
    """The estimator does not apply to this distribution.

    The harness records such (objective, estimator) pairs as "not applicable", never as a crash.
    """

    def __init__(self, estimator: str, distribution: str, supported: str) -> None:
        self.estimator = estimator
        self.distribution = distribution
        self.supported = supported
        super().__init__(
            f"estimator '{estimator}' does not apply to {distribution}; it supports {supported}"
        )
