"""Objectives: the shared problems every estimator is run against, found by name.

    objective = estibench.benchmarks.objectives.get("categorical_vae", variables=8, categories=8)
    out = objective.estimate(x, estimators.get("reinforce", baseline="loo"), num_samples=4)

Third-party packages add objectives through the entry-point group `estibench.objectives`.
"""

from __future__ import annotations

from typing import Any

from estibench.estimators import Registry

from .base import (
    DiscreteLatentModel,
    LatentVariableModel,
    NoExactValue,
    Objective,
    ObjectiveError,
)
from .bernoulli_vae import BernoulliVAE
from .categorical_vae import CategoricalVAE
from .conditional_vae import ConditionalVAE
from .gaussian_vae import GaussianVAE
from .linear_gaussian import LinearGaussian
from .sbn import SigmoidBeliefNet
from .toys import BernoulliToy, DirichletToy, GaussianToy

registry: Registry[Objective] = Registry("objective", "estibench.objectives", ObjectiveError)
for _cls in (BernoulliToy, GaussianToy, LinearGaussian, GaussianVAE, CategoricalVAE,
             BernoulliVAE, ConditionalVAE, DirichletToy, SigmoidBeliefNet):
    registry.register(_cls.name, _cls)


def get(name: str, **options: Any) -> Objective:
    """Build the objective registered as `name` with its keyword options."""
    return registry.get(name, **options)


def available() -> list[str]:
    """Names of every registered objective, plugins included."""
    return registry.available()


__all__ = [
    "BernoulliToy",
    "BernoulliVAE",
    "CategoricalVAE",
    "ConditionalVAE",
    "DirichletToy",
    "DiscreteLatentModel",
    "GaussianToy",
    "GaussianVAE",
    "LatentVariableModel",
    "LinearGaussian",
    "NoExactValue",
    "Objective",
    "ObjectiveError",
    "SigmoidBeliefNet",
    "available",
    "get",
    "registry",
]
