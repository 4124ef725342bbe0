"""Tracked metrics per objective x estimator. asv treats every tracked value as lower-is-better,
so each one is a cost (variance, bias, gap, seconds, bytes), never a rate or a bound.

- log10 gradient variance: log10 of the total variance (trace of the covariance) of REPLICAS
  estimates of the gradient with respect to the distribution parameters, fixed seed, S samples.
- bias norm: ||mean of those estimates - exact gradient||, where the exact gradient is known.
  For the unbiased estimators it sits at the Monte Carlo floor ~ sqrt(total variance / REPLICAS);
  a jump above it means a bias crept in.
- ELBO gap: log p(x) - ELBO in nats (exact log p(x) by enumeration) after TRAIN_STEPS Adam steps
  with the estimator from the fixed initialization, on the fixed batch it was trained on.
- time per sample: `estibench.benchmarks.metrics.throughput(...).time_per_sample`, the median
    seconds of one
  gradient estimate (torch.utils.benchmark) divided by the S x B latent samples it draws and
  differentiates (the harness's definition; nominal S x B for `exact`, which enumerates); the
  smallest of 3 such measurements, since a burst of other work on the machine only adds time
  and a tracked value has no confidence interval for the gate to weigh noise with.
- estimate memory: peak bytes of tensor memory torch allocates during one gradient estimate
  (forward and backward) beyond what was allocated before it (see
  `estibench.benchmarks.metrics.throughput.peak_tensor_bytes`).
"""

from __future__ import annotations

from estibench.benchmarks.metrics.throughput import peak_tensor_bytes

from .common import (
    IWAE_KS,
    NUM_SAMPLES,
    PARAM_NAMES,
    PARAMS,
    REPLICAS,
    SEED,
    Problem,
    finite,
)


def _gradient_stats(problem: Problem):
    from estibench.benchmarks import metrics

    return metrics.gradient_stats(
        problem.objective, problem.estimator, problem.x, replicas=REPLICAS,
        num_samples=NUM_SAMPLES, wrt="distribution", method="vectorized", seed=SEED,
    )


class _Tracked:
    params = PARAMS
    param_names = PARAM_NAMES
    rounds = 1  # deterministic values (fixed seeds); one process per parameter pair
    repeat = 1
    number = 1
    timeout = 180


class GradientVariance(_Tracked):
    unit = "log10(variance)"

    def setup(self, objective: str, estimator: str) -> None:
        if estimator == "exact":
            raise NotImplementedError("exact enumeration has zero variance (log10 = -inf)")
        self.problem = Problem(objective, estimator)
        # measured here, where asv can still skip: an estimator that is deterministic on this
        # problem (DisARM, IndeCateR, the unordered set on the one-variable Bernoulli toy) has
        # zero variance, and log10 0 = -inf is no value to track
        self.stats = _gradient_stats(self.problem)
        if self.stats.total_variance == 0:
            raise NotImplementedError(f"{estimator} is deterministic on {objective}: zero "
                                      "variance (log10 = -inf)")

    def track_log10_gradient_variance(self, objective: str, estimator: str) -> float:
        return finite(self.stats.log10_total_variance, "log10 total variance")


class GradientBias(_Tracked):
    unit = "norm"

    def setup(self, objective: str, estimator: str) -> None:
        if estimator == "exact":
            raise NotImplementedError("exact enumeration is the reference: its bias is 0")
        self.problem = Problem(objective, estimator)
        if not self.problem.objective.has_exact:
            raise NotImplementedError(f"{objective} has no exact gradient")

    def track_bias_norm(self, objective: str, estimator: str) -> float:
        stats = _gradient_stats(self.problem)
        if stats.bias_norm is None:
            raise ValueError("gradient_stats returned no bias for an objective with exact")
        return finite(stats.bias_norm, "bias norm")


class ElboGap(_Tracked):
    unit = "nats"

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)
        model = self.problem.objective
        if self.problem.is_toy or not getattr(model, "has_log_marginal", False):
            raise NotImplementedError(f"{objective} has no exact log p(x)")
        self.problem.train()

    def track_elbo_gap(self, objective: str, estimator: str) -> float:
        from estibench.benchmarks import metrics

        result = metrics.bounds(self.problem.objective, self.problem.x, ks=IWAE_KS, seed=SEED)
        return finite(result.as_dict()["gap"], "ELBO gap")


class TimePerSample(_Tracked):
    unit = "seconds"
    measurements = 3  # the smallest of these medians: interference from other work only adds

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)

    def track_time_per_sample(self, objective: str, estimator: str) -> float:
        from estibench.benchmarks import metrics

        return finite(min(
            metrics.throughput(
                self.problem.objective, self.problem.estimator, x=self.problem.x,
                num_samples=NUM_SAMPLES, device="cpu", min_run_time=0.2, memory=False,
            ).time_per_sample
            for _ in range(self.measurements)
        ), "time per sample")


class EstimateMemory(_Tracked):
    unit = "bytes"

    def setup(self, objective: str, estimator: str) -> None:
        self.problem = Problem(objective, estimator)
        self.problem.gradient_estimate()  # warm up: first-call allocations are not counted
        self.problem.clear_gradients()

    def track_estimate_memory(self, objective: str, estimator: str) -> float:
        problem = self.problem
        return float(peak_tensor_bytes(lambda: problem.loss().backward()))
