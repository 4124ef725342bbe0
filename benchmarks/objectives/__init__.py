"""Objectives: the shared problems every estimator is run against, found by name.

    objective = estibench.benchmarks.objectives.get("categorical_vae", variables=8, categories=8)
    out = objective.estimate(x, estimators.get("reinforce", baseline="loo"), num_samples=4)

Third-party packages add objectives through the entry-point group `estibench.objectives`. A
researcher's own model needs no registration: a factory returning a `Model` (q(z|x), f(z, x) and
the trained modules; `user_model`) or an `Objective` is found by reference (`loading`):

    objective = load_objective("my_models/bandit.py:make_objective", arms=5)
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
from .loading import as_objective, is_reference, load_objective, resolve_factory, short_name
from .sbn import SigmoidBeliefNet
from .toys import BernoulliToy, CategoricalToy, DirichletToy, GaussianToy
from .user_model import Model, ModelObjective

registry: Registry[Objective] = Registry("objective", "estibench.objectives", ObjectiveError)
for _cls in (BernoulliToy, GaussianToy, LinearGaussian, GaussianVAE, CategoricalVAE,
             BernoulliVAE, ConditionalVAE, DirichletToy, SigmoidBeliefNet, CategoricalToy):
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
    "CategoricalToy",
    "CategoricalVAE",
    "ConditionalVAE",
    "DirichletToy",
    "DiscreteLatentModel",
    "GaussianToy",
    "GaussianVAE",
    "LatentVariableModel",
    "LinearGaussian",
    "Model",
    "ModelObjective",
    "NoExactValue",
    "Objective",
    "ObjectiveError",
    "SigmoidBeliefNet",
    "as_objective",
    "available",
    "get",
    "is_reference",
    "load_objective",
    "registry",
    "resolve_factory",
    "short_name",
]
