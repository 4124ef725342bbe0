"""What the asv benchmarks share: small fixed configurations, the fixed batch, the skip rule.

Every benchmark is parameterized over OBJECTIVES x ESTIMATORS. A pair whose estimator does not
apply to the objective (pathwise on a discrete latent, a relaxation on a Gaussian, an estimator
of E_q[f] on the IWAE bound, an IWAE-bound estimator on the ELBO) is skipped by raising
NotImplementedError in `setup`, which asv records as "n/a", not as a failure.

The configurations are small so that a full `asv run` of one commit takes a few minutes on two
CPU cores: VAEs with 64 inputs on a fixed random binary batch of 32 examples, toys with 16
independent copies, S = 4 samples, one torch thread (the same numbers however many cores).
`estibench.benchmarks.metrics` is imported lazily, inside the tracked benchmarks, so that the timing
benchmarks still run on commits that predate it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch._dynamo  # noqa: F401  (see below)

from estibench import estimators
from estibench.benchmarks import objectives

# torch.func.grad and every torch optimizer import torch._dynamo on first use: seconds, paid by
# each benchmark process that imports it lazily. asv runs the suite from a fork server
# (asv.conf.json: launch_method = "forkserver") that imports this module once and forks a child
# per benchmark and parameter pair, so importing it here pays it once per recording.


def _check_code_under_test() -> None:
    """Under `record`, the code measured must be the commit's worktree (ESTIBENCH_CODE)."""
    tree = os.environ.get("ESTIBENCH_CODE")
    if not tree:
        return
    for module in (estimators, objectives):
        origin = Path(module.__file__ or "").resolve()
        if not origin.is_relative_to(Path(tree).resolve()):
            raise ImportError(f"{module.__name__} was imported from {origin}, not from the "
                              f"commit under test in {tree}")


_check_code_under_test()

SEED = 0
BATCH = 32
INPUT_DIM = 64
NUM_SAMPLES = 4
REPLICAS = 256  # gradient estimates behind each tracked variance and bias
TRAIN_STEPS = 25  # Adam steps with the estimator before the ELBO gap is measured
LEARNING_RATE = 3e-3
IWAE_KS = (1, 64)  # bounds: the ELBO averages 64 log-weights; the gap uses the exact log p(x)

OBJECTIVES: dict[str, dict[str, Any]] = {
    "categorical_vae": {"input_dim": INPUT_DIM, "variables": 4, "categories": 4, "hidden": 64},
    "bernoulli_vae": {"input_dim": INPUT_DIM, "latent_dim": 8},
    "gaussian_vae": {"input_dim": INPUT_DIM, "latent_dim": 4, "hidden": 64},
    "bernoulli_toy": {"dims": 16},
    "gaussian_toy": {"dims": 16},
    # the IWAE-S bounds (estimated by vimco; iwae, dreg); "name" is the registered objective
    "bernoulli_vae_iwae": {"name": "bernoulli_vae", "input_dim": INPUT_DIM, "latent_dim": 8,
                           "bound": "iwae"},
    "gaussian_vae_iwae": {"name": "gaussian_vae", "input_dim": INPUT_DIM, "latent_dim": 4,
                          "hidden": 64, "bound": "iwae"},
}
# benchmark label -> registered objective name, where they differ
# benchmark label -> (registered estimator name, options)
ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "pathwise": ("pathwise", {}),
    "reinforce_loo": ("reinforce", {"baseline": "loo"}),
    "reinforce_grpo": ("reinforce", {"baseline": "grpo"}),
    "reinforce_drgrpo": ("reinforce", {"baseline": "drgrpo"}),
    "gumbel_softmax": ("gumbel_softmax", {"temperature": 1.0}),
    "st_gumbel": ("st_gumbel", {"temperature": 1.0}),
    "straight_through": ("straight_through", {}),
    "exact": ("exact", {}),
    "arm": ("arm", {}),
    "disarm": ("disarm", {}),
    "carms": ("carms", {}),
    "carms_clipped": ("carms", {"ratio": "clipped"}),
    "vimco": ("vimco", {}),
    "indecater": ("indecater", {}),
    "unordered_set": ("unordered_set", {"k": 2}),
    "reinmax": ("reinmax", {}),
    "gumbel_rao": ("gumbel_rao", {"temperature": 1.0, "mc": 10}),
    "gapped_st": ("gapped_st", {}),
    "iwae": ("iwae", {}),
    "iwae_stl": ("iwae", {"direct_term": False}),
    "dreg": ("dreg", {}),
    "measure_valued": ("measure_valued", {}),
    "nvil": ("nvil", {}),
    "muprop": ("muprop", {}),
    "rebar": ("rebar", {}),
    "relax": ("relax", {}),
}

PARAMS = [list(OBJECTIVES), list(ESTIMATORS)]
PARAM_NAMES = ["objective", "estimator"]


def single_thread() -> None:
    """One torch thread: the same timings however many cores, and no oversubscription when
    another process shares them. asv runs every benchmark in its own process, so its setups
    call this freely; pytest restores the setting after each test (tests/benchmarks)."""
    torch.set_num_threads(1)


def fixed_batch(batch: int = BATCH, dim: int = INPUT_DIM, seed: int = SEED + 1) -> torch.Tensor:
    """A fixed random binary batch (batch, dim), the same on every commit."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, dim, generator=generator) < 0.5).float()


class Problem:
    """One objective x estimator pair, built deterministically, with its batch and optimizer.

    Raises NotImplementedError (asv: skip) when the estimator does not apply to the objective.
    Calls `single_thread()`, so in-process users (pytest) restore torch's thread count after.
    """

    def __init__(self, objective: str, estimator: str) -> None:
        single_thread()
        torch.manual_seed(SEED)
        self.objective_label, self.estimator_label = objective, estimator
        options = dict(OBJECTIVES[objective])
        self.objective = objectives.get(options.pop("name", objective), **options)
        name, options = ESTIMATORS[estimator]
        self.estimator = estimators.get(name, **options)
        try:
            self.objective.check(self.estimator)
        except estimators.EstimatorError as error:  # the latent's family, or the bound
            raise NotImplementedError(f"{estimator} does not apply to {objective}: {error}") \
                from error
        self.is_toy = not isinstance(self.objective, objectives.LatentVariableModel)
        self.x = None if self.is_toy else fixed_batch()
        with torch.no_grad():  # parts sized by q (a baseline network) before their optimizer
            self.estimator.prepare(self.objective.posterior(self.x))
        self.model_parameters = list(self.objective.parameters())
        self.own_parameters = list(self.estimator.parameters())
        self.parameters = [*self.model_parameters, *self.own_parameters]
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Adam, built on first use: building a torch optimizer imports torch._dynamo
        (seconds), which only the benchmarks that train need. The estimator's own parameters
        learn at their own rate, from aux_loss alone (as the runner trains them): a parameter
        group of their own."""
        if self._optimizer is None:
            groups: list[dict] = [{"params": self.model_parameters}]
            if self.own_parameters:
                groups.append({"params": self.own_parameters,
                               "lr": self.estimator.aux_learning_rate(LEARNING_RATE)})
            self._optimizer = torch.optim.Adam(groups, lr=LEARNING_RATE)
        return self._optimizer

    def loss(self) -> torch.Tensor:
        """The training loss: minus the objective estimated with the estimator (plus the
        estimator's own auxiliary loss, if any)."""
        out = self.objective.estimate(self.x, self.estimator, NUM_SAMPLES)
        loss = -out.loss.mean()
        if out.aux_loss is not None:
            loss = loss + out.aux_loss.mean()
        return loss

    def clear_gradients(self) -> None:
        for p in self.parameters:
            p.grad = None

    def gradient_estimate(self) -> None:
        """One gradient estimate: forward and backward into every parameter's .grad (the
        model's from the objective, the estimator's own from its aux_loss)."""
        self.clear_gradients()
        out = self.objective.estimate(self.x, self.estimator, NUM_SAMPLES)
        if out.aux_loss is None or not self.own_parameters:
            (-out.loss.mean()).backward()
            return
        (-out.loss.mean()).backward(inputs=self.model_parameters, retain_graph=True)
        out.aux_loss.mean().backward(inputs=self.own_parameters)

    def training_step(self) -> None:
        """One training step: a gradient estimate and an Adam update."""
        self.gradient_estimate()
        self.optimizer.step()

    def train(self, steps: int = TRAIN_STEPS) -> None:
        """`steps` training steps from the fixed initialization (deterministic from SEED)."""
        torch.manual_seed(SEED)
        for _ in range(steps):
            self.training_step()
        self.clear_gradients()


def finite(value: float, what: str) -> float:
    """`value` as a float; a non-finite number is an error (asv cannot store it)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is not finite: {value}")
    return value
