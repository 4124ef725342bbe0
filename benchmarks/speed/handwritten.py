"""Time one gradient estimate through estibench against a hand-written plain-torch step.

    python -m benchmarks.speed.handwritten [--threads 1] [--batch 32,512] [--calls 300]

For each family the plain-torch step computes the same surrogate with the same networks, the
same number of samples and the same noise (uniforms drawn by `torch.rand` in the same order, so
from one seed both sides compute the same gradient: `tests/test_speed_handwritten.py` checks it),
written the way one would inline it in a training script (no distribution objects, no registry,
no checks). Target: estibench within 1.1x.

Method: the two steps are called alternately, call by call, in one process (the order swapped
every round, gradients cleared before each call), and the ratio is that of the medians of the
per-call times; so a change of the machine's load hits both sides alike. Times are the CPU time
of the calling thread (`time.thread_time`; with one intra-op thread torch computes forward and
backward on it), which a busy machine's preemptions do not inflate; `--clock wall` takes
`time.perf_counter` instead. The load average is printed before and after each batch size.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import estimators
from benchmarks import objectives

TINY, ONE_MINUS_EPS = torch.finfo(torch.float32).tiny, 1.0 - torch.finfo(torch.float32).eps
Step = Callable[[], None]


def uniforms(*shape: int) -> torch.Tensor:
    """Uniforms as the estimators draw them (float32, clamped to [tiny, 1 - eps])."""
    return torch.rand(shape).clamp(TINY, ONE_MINUS_EPS)


def log_normalize(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the last dimension, written as logits - logsumexp: for a few categories
    2-4x faster than `torch.log_softmax` on CPU (forward and backward), as estibench does it."""
    return logits - logits.logsumexp(-1, keepdim=True)


def one_hot(index: torch.Tensor, K: int) -> torch.Tensor:
    """F.one_hot(index, K).float() as a scatter into zeros (faster), as estibench does it."""
    return torch.zeros(*index.shape, K).scatter_(-1, index.unsqueeze(-1), 1.0)


def bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                               reduction="none").sum(-1)


def categorical_step(vae, x, estimator: str, S: int, kl: str, tau: float = 1.0) -> Step:
    """The categorical VAE's ELBO surrogate for one family; kl="sampled" puts
    log p(z) - log q(z) in f (log q detached: the estimators' default direct_term=False for
    reinforce; the relaxed ones see Concrete densities and are measured with analytic KL)."""
    N, K = vae.variables, vae.categories

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        perturbed = logp - torch.log(-torch.log(uniforms(S, *logits.shape)))
        if estimator == "reinforce":
            z = one_hot(perturbed.argmax(-1), K)
        elif estimator == "gumbel_softmax":
            z = log_normalize(perturbed / tau).exp()
        elif estimator == "st_gumbel":
            soft = log_normalize(perturbed / tau).exp()
            z = one_hot(soft.argmax(-1), K) + (soft - soft.detach())
        else:  # straight_through
            probs = logp.exp()
            z = one_hot(perturbed.argmax(-1), K) + (probs - probs.detach())
        f = bce(vae.decoder(z.flatten(-2)), x)
        if kl == "sampled":
            log_q = (z * logp).sum((-1, -2))
            f = f - N * math.log(K) - log_q.detach()
        if estimator == "reinforce":
            log_q = (z * logp).sum((-1, -2))
            baseline = (f.sum(0, keepdim=True) - f) / (S - 1) if S > 1 else 0.0
            f = f + (f - baseline).detach() * (log_q - log_q.detach())
        loss = f.mean(0)
        if kl == "analytic":
            loss = loss - (logp.exp() * (logp + math.log(K))).sum((-1, -2))
        (-loss.sum()).backward()

    return step


def gaussian_step(vae, x, S: int, kl: str) -> Step:
    """Pathwise ELBO of the Gaussian VAE; kl="sampled": log N(z; 0, 1) - log q(z) in f (with
    q's parameters, the pathwise estimator's default direct_term=True)."""
    D = vae.latent_dim
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def step() -> None:
        params = vae.encoder(x).unflatten(-1, (2, D))
        loc, scale = params[..., 0, :], F.softplus(params[..., 1, :]) + 1e-4
        eps = torch.special.ndtri(uniforms(S, *loc.shape))
        z = loc + scale * eps
        f = bce(vae.decoder(z), x)
        if kl == "sampled":
            log_q = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - half_log_2pi).sum(-1)
            f = f + (-0.5 * z**2 - half_log_2pi).sum(-1) - log_q
            loss = f.mean(0)
        else:
            loss = f.mean(0) - 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum(-1)
        (-loss.sum()).backward()

    return step


def dreg_step(vae, x, K: int) -> Step:
    """DReG on the Gaussian VAE's IWAE-K bound: the log-weights at the detached samples, their
    z-gradient with cotangent w~^2 carried to the encoder through z, w~ log w to the decoder."""
    D = vae.latent_dim
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def step() -> None:
        params = vae.encoder(x).unflatten(-1, (2, D))
        loc, scale = params[..., 0, :], F.softplus(params[..., 1, :]) + 1e-4
        z = loc + scale * torch.special.ndtri(uniforms(K, *loc.shape))
        held = z.detach().requires_grad_(True)
        log_q = (-0.5 * ((held - loc.detach()) / scale.detach()) ** 2 - scale.detach().log()
                 - half_log_2pi).sum(-1)
        log_w = bce(vae.decoder(held), x) + (-0.5 * held**2 - half_log_2pi).sum(-1) - log_q
        weights = torch.softmax(log_w.detach(), 0)
        (through_z,) = torch.autograd.grad(log_w, held, weights**2, retain_graph=True)
        surrogate = (weights * log_w).sum(0) + (through_z * z).sum((0, -1))
        (-surrogate.sum()).backward()

    return step


def bernoulli_kl(logits: torch.Tensor, prior_logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    return (p * (F.logsigmoid(logits) - F.logsigmoid(prior_logits))
            + (1 - p) * (F.logsigmoid(-logits) - F.logsigmoid(-prior_logits))).sum(-1)


def antithetic_step(vae, x, S: int, estimator: str) -> Step:
    """ARM or DisARM on the Bernoulli VAE (analytic KL to its learned prior)."""

    def step() -> None:
        logits = vae.encoder(x)
        u = uniforms(S, *logits.shape)
        b1 = (u > torch.sigmoid(-logits)).float()
        b2 = (u < torch.sigmoid(logits)).float()
        f1, f2 = bce(vae.decoder(torch.cat([b1, b2])), x).split(S)
        if estimator == "arm":
            weight = u - 0.5
        else:
            weight = 0.5 * (b1 - b2) * torch.sigmoid(logits.detach().abs())
        g = ((f1 - f2).detach().unsqueeze(-1) * weight).mean(0)
        score = (g * (logits - logits.detach())).sum(-1)
        loss = 0.5 * (f1 + f2).mean(0) + score - bernoulli_kl(logits, vae.prior_logits)
        (-loss.sum()).backward()

    return step


def vimco_step(vae, x, K: int) -> Step:
    """VIMCO on the Bernoulli VAE's IWAE-K bound (log q in the log-weights, with gradient)."""

    def log_bernoulli(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(logits.expand_as(z), z,
                                                   reduction="none").sum(-1)

    diagonal = torch.eye(K, dtype=torch.bool).unsqueeze(-1)

    def step() -> None:
        logits = vae.encoder(x)
        z = (uniforms(K, *logits.shape) > torch.sigmoid(-logits)).float()
        log_q = log_bernoulli(logits, z)
        log_w = bce(vae.decoder(z), x) + log_bernoulli(vae.prior_logits, z) - log_q
        bound = torch.logsumexp(log_w, 0) - math.log(K)
        held = log_w.detach()
        loo = (held.sum(0, keepdim=True) - held) / (K - 1)
        others = torch.where(diagonal, loo.unsqueeze(1), held.expand(K, *held.shape))
        signal = bound.detach() - (torch.logsumexp(others, 1) - math.log(K))
        loss = bound + (signal * (log_q - log_q.detach())).sum(0)
        (-loss.sum()).backward()

    return step


def library_step(objective, estimator, x, S: int) -> Step:
    def step() -> None:
        (-objective.estimate(x, estimator, S).loss.sum()).backward()

    return step


@dataclass(frozen=True)
class Case:
    label: str
    objective: str
    estimator: str
    samples: int
    kl: str = "analytic"
    objective_options: dict[str, Any] = field(default_factory=dict)
    estimator_options: dict[str, Any] = field(default_factory=dict)

    def build(self, batch: int, seed: int = 0) -> tuple[Any, Step, Step]:
        """(objective, estibench step, plain step) on a random binary batch."""
        torch.manual_seed(seed)
        objective = objectives.get(self.objective, input_dim=64, hidden=200, kl=self.kl,
                                   **self.objective_options)
        estimator = estimators.get(self.estimator, **self.estimator_options)
        x = (torch.rand(batch, 64) < 0.5).float()
        S = self.samples
        if self.objective == "categorical_vae":
            plain = categorical_step(objective, x, self.estimator, S, self.kl)
        elif self.estimator == "dreg":
            plain = dreg_step(objective, x, S)
        elif self.objective == "gaussian_vae":
            plain = gaussian_step(objective, x, S, self.kl)
        elif self.estimator in ("arm", "disarm"):
            plain = antithetic_step(objective, x, S, self.estimator)
        else:
            plain = vimco_step(objective, x, S)
        return objective, library_step(objective, estimator, x, S), plain


CAT_8x8 = {"variables": 8, "categories": 8}
CAT_2x4 = {"variables": 2, "categories": 4}
LOO = {"baseline": "loo"}
BERNOULLI = {"latent_dim": 16}
CASES = [
    Case("categorical 8x8 / reinforce, S=1", "categorical_vae", "reinforce", 1,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / reinforce(loo), S=4", "categorical_vae", "reinforce", 4,
         objective_options=CAT_8x8, estimator_options=LOO),
    Case("categorical 2x4 / reinforce(loo), S=4", "categorical_vae", "reinforce", 4,
         objective_options=CAT_2x4, estimator_options=LOO),
    Case("categorical 8x8 / reinforce(loo), S=4, kl=sampled", "categorical_vae", "reinforce",
         4, kl="sampled", objective_options=CAT_8x8, estimator_options=LOO),
    Case("categorical 8x8 / gumbel_softmax", "categorical_vae", "gumbel_softmax", 1,
         objective_options=CAT_8x8),
    Case("categorical 2x4 / gumbel_softmax", "categorical_vae", "gumbel_softmax", 1,
         objective_options=CAT_2x4),
    Case("categorical 8x8 / st_gumbel", "categorical_vae", "st_gumbel", 1,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / straight_through", "categorical_vae", "straight_through", 1,
         objective_options=CAT_8x8),
    Case("gaussian 16 / pathwise", "gaussian_vae", "pathwise", 1,
         objective_options={"latent_dim": 16}),
    Case("gaussian 16 / pathwise, kl=sampled", "gaussian_vae", "pathwise", 1, kl="sampled",
         objective_options={"latent_dim": 16}),
    Case("gaussian 16 / dreg, K=4 (iwae)", "gaussian_vae", "dreg", 4,
         objective_options={"latent_dim": 16, "bound": "iwae"}),
    Case("bernoulli 16 / arm, 1 pair", "bernoulli_vae", "arm", 1,
         objective_options=BERNOULLI),
    Case("bernoulli 16 / disarm, 1 pair", "bernoulli_vae", "disarm", 1,
         objective_options=BERNOULLI),
    Case("bernoulli 16 / vimco, K=4 (iwae)", "bernoulli_vae", "vimco", 4,
         objective_options={**BERNOULLI, "bound": "iwae"}),
]


def interleaved(objective, steps: dict[str, Step], calls: int, warmup: int = 10,
                clock: Callable[[], float] = time.thread_time) -> dict[str, list[float]]:
    """Seconds of each call of each step, called alternately (order reversed every round)."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + calls):
        for name in (names if i % 2 == 0 else names[::-1]):
            objective.zero_grad(set_to_none=True)
            start = clock()
            steps[name]()
            elapsed = clock() - start
            if i >= warmup:
                times[name].append(elapsed)
    objective.zero_grad(set_to_none=True)
    return times


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", default="32,512", help="comma-separated batch sizes")
    parser.add_argument("--calls", type=int, default=300,
                        help="timed calls per side at batch 32 (scaled down for larger batches)")
    parser.add_argument("--only", default="", help="run the cases whose label contains this")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="per-call thread CPU time (default) or wall time")
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of "
          f"per-call {args.clock} times, the two sides interleaved call by call")
    for batch in (int(b) for b in args.batch.split(",")):
        calls = max(50, args.calls * 32 // batch) if batch > 32 else args.calls
        print(f"\nbatch {batch}, {calls} calls per side; load average before: {load()}")
        print(f"{'objective / estimator':52s} {'estibench ms':>12s} {'plain ms':>9s} "
              f"{'ratio':>7s}")
        for case in CASES:
            if args.only not in case.label:
                continue
            objective, ours, plain = case.build(batch)
            t = interleaved(objective, {"ours": ours, "plain": plain}, calls, clock=clock)
            lib, ref = statistics.median(t["ours"]), statistics.median(t["plain"])
            print(f"{case.label:52s} {lib * 1e3:12.3f} {ref * 1e3:9.3f} {lib / ref:6.2f}x",
                  flush=True)
        print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
