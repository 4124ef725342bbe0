"""Efficiency: variance per unit of compute."""

from __future__ import annotations


def work_normalized_variance(total_variance: float, time_per_estimate: float) -> float:
    """total_variance x time_per_estimate (gradient variance x seconds per estimate).

    Averaging n estimates divides the variance by n and costs n times the time, so the product
    is invariant to n and compares estimators at equal compute: lower means more signal per
    second (the "work-normalized variance" of Glynn & Whitt 1992). Units: variance units x s.
    """
    return float(total_variance) * float(time_per_estimate)


def evaluation_normalized_variance(total_variance: float, evaluations: int) -> float:
    """total_variance x evaluations of f per estimate: the same invariance under averaging,
    with the evaluations of f as the unit of work (DisARM's pair counts 2, IndeCateR S x D x K),
    so estimators compare at an equal number of calls of the model, whatever the hardware."""
    return float(total_variance) * float(evaluations)


__all__ = ["evaluation_normalized_variance", "work_normalized_variance"]
