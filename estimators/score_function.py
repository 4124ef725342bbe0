"""Score-function (REINFORCE) estimator with baselines.

Surrogate, per sample s: f(z_s) + A_s * (log q(z_s) - stop_grad(log q(z_s))), so the forward
value is f and the gradient is grad f + A_s grad log q, with the learning signal A_s = f(z_s) - b_s
(the advantage). Samples are not differentiated; b_s must not depend on z_s for unbiasedness,
since then E[b_s grad log q(z_s)] = E[b_s] E[grad log q] = 0:

- "none": b = 0;
- "ema": an exponential moving average of past batch means of f (bias-corrected like Adam),
  updated after each call in training mode only, so it never depends on the current samples;
- "loo": leave-one-out over the S samples (RLOO, Kool et al. 2019), b_s = mean_{j != s} f(z_j).

The group baselines of RL post-training (S >= 2 samples per input; the instance's `unbiased` is
False for "grpo" and "drgrpo"):

- "drgrpo": A_s = f_s - mean_j f_j, the mean over all S samples, f_s included (Dr. GRPO, Liu et
  al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective", arXiv:2503.20783).
  Writing the mean as f_s / S + ((S - 1) / S) mean_{j != s} f_j,
      f_s - mean_j f_j = ((S - 1) / S) (f_s - mean_{j != s} f_j),
  which is (S - 1) / S times RLOO's signal, sample by sample: the score term's expectation is
  (S - 1) / S times the true gradient's (biased by a known constant; grad f is not scaled);
- "drgrpo_rescaled": S / (S - 1) times Dr. GRPO's signal, which is RLOO's (unbiased);
- "grpo": A_s = (f_s - mean_j f_j) / (std_j f_j + 1e-4) (GRPO, Shao et al. 2024, "DeepSeekMath",
  arXiv:2402.03300), with the sample standard deviation (divisor S - 1) and eps = 1e-4 added to
  it, as TRL's GRPOTrainer computes it (`rewards.view(-1, G).std(dim=1)`, torch's default
  Bessel-corrected std, and `advantages / (std + 1e-4)`). Biased twice: the mean includes f_s
  (the (S - 1) / S above), and the divisor depends on every sample, z_s included, so even the
  leave-one-out part is not a baseline independent of z_s; the estimate is in units of f / std f
  (the same for a f scaled by any positive factor, eps aside), so its mean is neither the
  gradient nor a fixed multiple of it.
  Identical f across the group gives A = 0.

The direct term. When f itself contains log q(z) (a sampled KL or entropy), its gradient at fixed z
has expectation zero, E_q[grad log q] = 0, but not zero variance. The estimator drops it by
default (`direct_term=False`: objectives build f with `estimator.log_q`, which detaches q's
parameters); measured on a small categorical VAE this alone changes RLOO's gradient variance
several-fold. Pyro drops it too (its variance matches a reference without the term to 0.1-0.3%,
not one with it); `direct_term=True` keeps it, as most hand-written surrogates do.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import Estimator, EstimatorOutput, Integrand
from .errors import EstimatorError
from .noise import hard_sample

Baseline = Literal["none", "ema", "loo", "grpo", "drgrpo", "drgrpo_rescaled"]
BASELINES = ("none", "ema", "loo", "grpo", "drgrpo", "drgrpo_rescaled")
GROUP_BASELINES = ("grpo", "drgrpo", "drgrpo_rescaled")  # the signal is a function of the group
BIASED_BASELINES = ("grpo", "drgrpo")
GRPO_EPS = 1e-4  # added to the group's standard deviation (TRL's GRPOTrainer)


def follow_device(module: nn.Module, names: tuple[str, ...], like: Tensor) -> None:
    """Move `module`'s running-state buffers `names` to `like`'s device where they sit on
    another (an estimator built on the CPU, given a q on a GPU): running statistics are state,
    not trained parameters, so they follow q. Assigned through the module, so they stay
    registered buffers (in `state_dict`, moved by `.to`)."""
    device = like.device
    for name in names:
        buffer = getattr(module, name)
        if buffer.device != device:
            setattr(module, name, buffer.to(device))


class Reinforce(Estimator):
    """The score-function estimator. Applies to any distribution with `sample` and `log_prob`.
    Unbiased except with the group baselines "grpo" and "drgrpo" (module docstring)."""

    name = "reinforce"
    supports = "any distribution with sample() and log_prob()"
    ema_sum: Tensor  # buffers (register_buffer): the EMA baseline's running sum and count
    ema_count: Tensor

    def __init__(
        self, baseline: Baseline = "none", decay: float = 0.9, direct_term: bool = False
    ) -> None:
        super().__init__(direct_term=direct_term)
        if baseline not in BASELINES:
            raise EstimatorError(
                f"estimator 'reinforce': baseline must be one of {', '.join(BASELINES)}, "
                f"got {baseline!r}"
            )
        if not 0.0 <= float(decay) < 1.0:
            raise EstimatorError(
                f"estimator 'reinforce': decay must be in [0, 1), got {decay!r}"
            )
        self.baseline = baseline
        self.unbiased = baseline not in BIASED_BASELINES
        self.decay = float(decay)
        # EMA state: running (uncorrected) average and number of updates.
        self.register_buffer("ema_sum", torch.zeros(()))
        self.register_buffer("ema_count", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"baseline={self.baseline!r}, decay={self.decay}, direct_term={self.direct_term}"

    def _group_size(self, fz: Tensor) -> int:
        num = fz.shape[0]
        if num < 2:
            raise EstimatorError(
                f"estimator 'reinforce' with baseline={self.baseline!r} needs num_samples >= 2, "
                f"got {num}"
            )
        return num

    def baseline_values(self, fz: Tensor) -> Tensor:
        """b for each sample (detached), broadcastable to fz's shape (S, *B); for the group
        baselines, the group's mean (`advantages` builds their signal from f - mean)."""
        fz = fz.detach()
        if self.baseline == "loo":
            num = self._group_size(fz)
            return (fz.sum(0, keepdim=True) - fz) / (num - 1)
        if self.baseline in GROUP_BASELINES:
            self._group_size(fz)
            return fz.mean(0, keepdim=True)
        if self.baseline == "ema":
            follow_device(self, ("ema_sum", "ema_count"), fz)
            count = self.ema_count.to(fz.dtype)
            corrected = self.ema_sum.to(fz.dtype) / (1 - self.decay**count).clamp_min(1e-12)
            return torch.where(count > 0, corrected, torch.zeros_like(corrected))
        return torch.zeros((), dtype=fz.dtype, device=fz.device)

    def advantages(self, fz: Tensor) -> Tensor:
        """The learning signal A_s multiplying grad log q(z_s), shape (S, *B), for detached
        values fz (S, *B)."""
        if self.baseline == "drgrpo_rescaled":
            num = self._group_size(fz)
            return (fz - fz.mean(0, keepdim=True)) * (num / (num - 1))
        if self.baseline == "grpo":
            self._group_size(fz)
            return (fz - fz.mean(0, keepdim=True)) / (fz.std(0, keepdim=True) + GRPO_EPS)
        return fz - self.baseline_values(fz)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        z = hard_sample(q, noise) if noise is not None else q.sample((num_samples,))
        fz = self.evaluate(f, z, num_samples, q)
        log_q = self.sample_log_prob(q, z)
        held = fz.detach()
        # b = 0 needs no arithmetic, unless a subclass supplies its own baseline_values
        plain = self.baseline == "none" and type(self).baseline_values is Reinforce.baseline_values
        signal = held if plain else self.advantages(held)
        score = signal * (log_q - log_q.detach())
        out = EstimatorOutput((fz + score).mean(0), held.mean(0), z)
        if self.baseline == "ema" and self.training:
            follow_device(self, ("ema_sum", "ema_count"), fz)
            with torch.no_grad():
                self.ema_sum.mul_(self.decay).add_((1 - self.decay) * fz.mean())
                self.ema_count.add_(1)
        return out
