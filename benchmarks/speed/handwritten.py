"""Time one gradient estimate through estibench against a hand-written plain-torch step.

    python -m benchmarks.speed.handwritten [--threads 1] [--batch 32]

For each family the plain-torch step computes the same surrogate with the same networks and the
same number of samples, written the way one would inline it in a training script (no
distribution objects, no registry, no checks). Target: estibench within 1.1x. Both sides are
timed with torch.utils.benchmark (blocked_autorange, medians), interleaved over rounds.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

import estimators
from benchmarks import objectives


def bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                               reduction="none").sum(-1)


def categorical_step(vae, x, estimator: str, S: int, tau: float = 1.0):
    """Hand-written ELBO surrogate (analytic KL to the uniform prior) for one family."""
    N, K = vae.variables, vae.categories

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = torch.log_softmax(logits, -1)
        u = torch.rand(S, *logits.shape).clamp(1.2e-38, 1 - 1.2e-7)
        perturbed = logits - torch.log(-torch.log(u))
        if estimator == "reinforce":
            z = F.one_hot(perturbed.argmax(-1), K).float()
        elif estimator == "gumbel_softmax":
            z = torch.softmax(perturbed / tau, -1)
        elif estimator == "st_gumbel":
            soft = torch.softmax(perturbed / tau, -1)
            z = F.one_hot(soft.argmax(-1), K).float() + (soft - soft.detach())
        else:  # straight_through
            probs = logp.exp()
            z = F.one_hot(perturbed.argmax(-1), K).float() + (probs - probs.detach())
        f = bce(vae.decoder(z.flatten(-2)), x)
        if estimator == "reinforce":
            logq = (z * logp).sum((-1, -2))
            baseline = (f.sum(0, keepdim=True) - f) / (S - 1)
            surrogate = f + (f - baseline).detach() * (logq - logq.detach())
        else:
            surrogate = f
        kl = (logp.exp() * (logp + math.log(K))).sum((-1, -2))
        (-(surrogate.mean(0) - kl)).mean().backward()

    return step


def gaussian_step(vae, x, S: int):
    D = vae.latent_dim

    def step() -> None:
        params = vae.encoder(x).unflatten(-1, (2, D))
        loc, scale = params[..., 0, :], F.softplus(params[..., 1, :]) + 1e-4
        z = loc + scale * torch.randn(S, *loc.shape)
        f = bce(vae.decoder(z), x)
        kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum(-1)
        (-(f.mean(0) - kl)).mean().backward()

    return step


def library_step(objective, estimator, x, S: int):
    def step() -> None:
        (-objective.estimate(x, estimator, S).loss).mean().backward()

    return step


def median_time(step, objective) -> float:
    def run() -> None:
        objective.zero_grad(set_to_none=True)
        step()

    for _ in range(5):
        run()
    timer = Timer("run()", globals={"run": run}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=0.3).median


CASES = [
    ("categorical_vae", "reinforce", {"baseline": "loo"}, 2),
    ("categorical_vae", "gumbel_softmax", {}, 1),
    ("categorical_vae", "st_gumbel", {}, 1),
    ("categorical_vae", "straight_through", {}, 1),
    ("gaussian_vae", "pathwise", {}, 1),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}")
    print(f"{'objective / estimator':40s} {'estibench ms':>12s} {'plain ms':>9s} {'ratio':>7s}")
    for name, estimator_name, options, S in CASES:
        torch.manual_seed(0)
        options_vae = {"variables": 8, "categories": 8} if name == "categorical_vae" else {}
        objective = objectives.get(name, input_dim=64, hidden=200, **options_vae)
        estimator = estimators.get(estimator_name, **options)
        x = (torch.rand(args.batch, 64) < 0.5).float()
        plain = (categorical_step(objective, x, estimator_name, S) if name == "categorical_vae"
                 else gaussian_step(objective, x, S))
        ours = library_step(objective, estimator, x, S)
        lib, ref = [], []
        for _ in range(args.rounds):
            lib.append(median_time(ours, objective))
            ref.append(median_time(plain, objective))
        lib_t, ref_t = statistics.median(lib), statistics.median(ref)
        print(f"{name + ' / ' + estimator_name:40s} {lib_t * 1e3:12.3f} {ref_t * 1e3:9.3f} "
              f"{lib_t / ref_t:6.2f}x")


if __name__ == "__main__":
    main()
