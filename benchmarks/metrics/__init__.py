"""estibench.benchmarks.metrics: the measurement engine.

- `gradient_stats`: variance, SNR, bias and a calibrated unbiasedness test of M gradient
  estimates at a frozen checkpoint, streamed; the estimates come from `engine`, vectorized with
  torch.func (`common_noise` for paired comparisons);
- `reference_gradient`: an unbiased estimator averaged over many replicas, for the bias of
  estimators on objectives without an exact gradient;
- `bounds`: ELBO, IWAE-k, log p(x) and the gap on held-out data, chunked over samples;
- `throughput`: time per estimate and per step, the bare-network floor, peak memory;
- `work_normalized_variance`: variance x time; `evaluation_normalized_variance`: variance x
  evaluations of f;
- `environment`: commit, versions, device, host; `machine_load`: load beside timings.
"""

from __future__ import annotations

from .bounds import BoundsResult, bounds
from .efficiency import evaluation_normalized_variance, work_normalized_variance
from .engine import common_noise
from .environment import environment, machine_load
from .errors import MetricsError, NonFiniteGradientError
from .gradient_statistics import AutoReplicas, GradientStats, gradient_stats
from .reference import ReferenceGradient, reference_gradient
from .throughput import ThroughputResult, throughput

__all__ = [
    "AutoReplicas",
    "BoundsResult",
    "GradientStats",
    "MetricsError",
    "NonFiniteGradientError",
    "ReferenceGradient",
    "ThroughputResult",
    "bounds",
    "common_noise",
    "environment",
    "evaluation_normalized_variance",
    "gradient_stats",
    "machine_load",
    "reference_gradient",
    "throughput",
    "work_normalized_variance",
]
