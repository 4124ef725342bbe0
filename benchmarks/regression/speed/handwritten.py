"""Time one gradient estimate through estibench against a hand-written plain-torch step.

    python -m estibench.benchmarks.regression.speed.handwritten [--threads 1] [--batch 32,512]
    [--calls 300] [--device cpu|cuda] [--no-user]

For each family the plain-torch step computes the same surrogate with the same networks, the
same number of samples and the same noise (uniforms drawn by `torch.rand` in the same order, so
from one seed both sides compute the same gradient:
`tests/benchmarks/regression/test_speed_handwritten.py` checks it),
written the way one would inline it in a training script (no distribution objects, no registry,
no checks). Target: estibench within 1.1x.

The user's path (`user_step`, columns "user" and "user,fast") is the same model written as a
user writes it with the public contract: a `torch.distributions` q, the user's own f, the KL by
`torch.distributions.kl_divergence` with torch's default argument validation ("user"), or by
`estibench.estimators.kl.kl_divergence` with the validation switched off ("user,fast").

Method: the two steps are called alternately, call by call, in one process (the order swapped
every round, gradients cleared before each call), and the ratio is that of the medians of the
per-call times; so a change of the machine's load hits both sides alike. Times are the CPU time
of the calling thread (`time.thread_time`; with one intra-op thread torch computes forward and
backward on it), which a busy machine's preemptions do not inflate; `--clock wall` takes
`time.perf_counter` instead; on CUDA, CUDA events around each call. The load average is
printed before and after each batch size.

Before and after a change: `--against CHECKOUT` (say `git worktree add /tmp/before HEAD~1`)
times that checkout's estimators as a third side, interleaved with the other two through the
same objectives and noise, and prints their ratio to the same plain step.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical
from torch.distributions import kl_divergence as torch_kl_divergence

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.regression.speed.timing import (
    CallTimer,
    DeviceUnavailable,
    call_timer,
    device_of,
    load,
    on_device,
)
from estibench.estimators.kl import kl_divergence as fast_kl_divergence

Step = Callable[[], None]


def uniforms(*shape: int) -> torch.Tensor:
    """Uniforms as the estimators draw them (in the default dtype, float32 when timed,
    clamped to [tiny, 1 - eps])."""
    u = torch.rand(shape)
    info = torch.finfo(u.dtype)
    return u.clamp(info.tiny, 1.0 - info.eps)


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


def categorical_step(vae, x, estimator: str, S: int, kl: str, tau: float = 1.0,
                     baseline: str = "none") -> Step:
    """The categorical VAE's ELBO surrogate for one family; kl="sampled" puts
    log p(z) - log q(z) in f (log q detached: the estimators' default direct_term=False for
    reinforce; the relaxed ones see Concrete densities and are measured with analytic KL).
    reinforce's signal: f minus the leave-one-out mean ("none" with S = 1 and "loo"), or the
    group baselines f - mean ("drgrpo") and (f - mean) / (sample std + 1e-4) ("grpo")."""
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
            held = f.detach()
            if baseline == "grpo":
                signal = (held - held.mean(0)) / (held.std(0) + 1e-4)
            elif baseline == "drgrpo":
                signal = held - held.mean(0)
            else:
                signal = held - ((held.sum(0, keepdim=True) - held) / (S - 1) if S > 1 else 0.0)
            f = f + signal * (log_q - log_q.detach())
        loss = f.mean(0)
        if kl == "analytic":
            loss = loss - categorical_analytic_kl(logp)
        (-loss.sum()).backward()

    return step


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_sample(vae, x, S: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loc, scale, z) of the Gaussian VAE's posterior, z = loc + scale ndtri(u) for S draws."""
    params = vae.encoder(x).unflatten(-1, (2, vae.latent_dim))
    loc, scale = params[..., 0, :], F.softplus(params[..., 1, :]) + 1e-4
    return loc, scale, loc + scale * torch.special.ndtri(uniforms(S, *loc.shape))


def log_normal(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - HALF_LOG_2PI).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * z**2 - HALF_LOG_2PI).sum(-1)


def gaussian_step(vae, x, S: int, kl: str) -> Step:
    """Pathwise ELBO of the Gaussian VAE; kl="sampled": log N(z; 0, 1) - log q(z) in f (with
    q's parameters, the pathwise estimator's default direct_term=True)."""

    def step() -> None:
        loc, scale, z = gaussian_sample(vae, x, S)
        f = bce(vae.decoder(z), x)
        if kl == "sampled":
            loss = (f + log_standard_normal(z) - log_normal(z, loc, scale)).mean(0)
        else:
            loss = f.mean(0) - 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum(-1)
        (-loss.sum()).backward()

    return step


def dreg_step(vae, x, K: int) -> Step:
    """DReG on the Gaussian VAE's IWAE-K bound: the log-weights at the detached samples, their
    z-gradient with cotangent w~^2 carried to the encoder through z, w~ log w to the decoder."""

    def step() -> None:
        loc, scale, z = gaussian_sample(vae, x, K)
        held = z.detach().requires_grad_(True)
        log_q = log_normal(held, loc.detach(), scale.detach())
        log_w = bce(vae.decoder(held), x) + log_standard_normal(held) - log_q
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
        b1 = (u > torch.sigmoid(-logits)).to(logits.dtype)
        b2 = (u < torch.sigmoid(logits)).to(logits.dtype)
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


def categorical_disarm_step(vae, x, S: int) -> Step:
    """Coupled stick-breaking DisARM on the categorical VAE (analytic KL): the K - 1
    stick-breaking logits psi_i = log p_i - log sum_{j > i} p_j, two chains of binaries
    b = 1[u > sigma(-psi)] and 1[1 - u > sigma(-psi)] from the first K - 1 uniforms of each
    variable, z = the number of leading zeros; per binary the Bernoulli DisARM weight where
    both chains reach it, (b_k - sigma(psi)) where only chain k does; surrogate
    (f1 + f2) / 2 + sg(g).(psi - sg psi)."""
    N, K = vae.variables, vae.categories

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        tail = logp.flip(-1).logcumsumexp(-1).flip(-1)
        psi = logp[..., :-1] - tail[..., 1:]
        held = psi.detach()
        u = uniforms(S, *logits.shape)[..., :-1]
        threshold = torch.sigmoid(-held)
        b1, b2 = (u > threshold).to(u.dtype), (1 - u > threshold).to(u.dtype)
        zeros1, zeros2 = (1 - b1).cumprod(-1), (1 - b2).cumprod(-1)
        ones = torch.ones_like(zeros1[..., :1])
        reach1 = torch.cat([ones, zeros1[..., :-1]], -1)
        reach2 = torch.cat([ones, zeros2[..., :-1]], -1)
        z = torch.cat([one_hot(zeros1.sum(-1).long(), K), one_hot(zeros2.sum(-1).long(), K)])
        f1, f2 = bce(vae.decoder(z.flatten(-2)), x).split(S)
        diff = (f1 - f2).detach()[..., None, None]
        sigma = torch.sigmoid(held)
        g = 0.5 * diff * (reach1 * reach2 * (b1 - b2) * torch.sigmoid(held.abs())
                          + reach1 * (1 - reach2) * (b1 - sigma)
                          - reach2 * (1 - reach1) * (b2 - sigma))
        loss = 0.5 * (f1 + f2).mean(0) + (g.mean(0) * (psi - held)).sum((-1, -2))
        (-(loss - categorical_analytic_kl(logp)).sum()).backward()

    return step


def carms_step(vae, x, S: int) -> Step:
    """CARMS on the categorical VAE (analytic KL), Dirichlet copula and exact pair ratio: per
    variable one category order from the last sample's uniform among the K (K - 1) / 2 orders
    with each pair of categories at the two ends; S uniforms u_i = (1 - d_i)^(S-1) from the
    spacings d of the other S - 1 uniforms, mapped by the inverse CDF in that order; the pair
    pmf P(a, b) the mixture over the orders of the copula's inclusion-exclusion at the
    categories' interval ends; r = pi_a pi_b / P(a, b); surrogate mean_i [f_i + sg(sum_{j != i}
    r_ij (f_i - f_j) / (S - 1)).(log q_i - sg)]."""
    from estibench.estimators.antithetic import end_pair_orders

    N, K = vae.variables, vae.categories
    order, rank = end_pair_orders(K)
    M, a = order.shape[0], 1.0 / (S - 1)

    def cdf(x_: torch.Tensor, y_: torch.Tensor) -> torch.Tensor:  # C over the pairs (i, j)
        return (x_[:, None] - y_[None]).clamp(min=0) ** (S - 1)

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        p = logp.detach().exp()
        v = uniforms(S, *logits.shape)[..., 0]  # (S, B, N)
        in_order = p[..., order]  # (B, N, M, K)
        head_hi = in_order.cumsum(-1)
        tail_lo = in_order.flip(-1).cumsum(-1).flip(-1)
        nothing = torch.zeros_like(in_order[..., :1])
        head_lo = torch.cat([nothing, head_hi[..., :-1]], -1)
        tail_hi = torch.cat([tail_lo[..., 1:], nothing], -1)
        sorted_v = v[: S - 1].sort(0).values
        edge = torch.zeros_like(sorted_v[:1])
        u = (torch.cat([edge, sorted_v]) + torch.cat([1 - sorted_v, edge])).flip(0) ** (S - 1)
        pick = (v[S - 1] * M).long().clamp(max=M - 1)  # (B, N)
        bounds = head_hi.gather(-2, pick[..., None, None].expand(*pick.shape, 1, K)).squeeze(-2)
        position = (u.unsqueeze(-1) >= bounds).sum(-1).clamp(max=K - 1)
        index = order[pick].expand(S, *pick.shape, K).gather(-1, position.unsqueeze(-1))
        index = index.squeeze(-1)  # (S, B, N)
        by_category = rank.expand(*in_order.shape)
        x_lo, x_hi = (h.gather(-1, by_category).clamp(max=1) ** a for h in (head_lo, head_hi))
        y_lo, y_hi = (-torch.expm1(a * torch.log1p(-t.gather(-1, by_category).clamp(max=1)))
                      for t in (tail_lo, tail_hi))
        at = index[..., None, None].expand(*index.shape, M, 1)
        x_lo, x_hi, y_lo, y_hi = (t.expand(S, *t.shape).gather(-1, at).squeeze(-1)
                                  for t in (x_lo, x_hi, y_lo, y_hi))
        joint = (cdf(x_hi, y_hi) - cdf(x_lo, y_hi) - cdf(x_hi, y_lo) + cdf(x_lo, y_lo))
        joint = joint.mean(-1).clamp(min=0)  # (S, S, B, N)
        p_z = p.expand(S, *p.shape).gather(-1, index.unsqueeze(-1)).squeeze(-1)
        product = p_z[:, None] * p_z[None]
        ratio = torch.where(joint > 0, product / joint.clamp(min=torch.finfo(p.dtype).tiny),
                            torch.zeros_like(joint))
        z = one_hot(index, K)
        f = bce(vae.decoder(z.flatten(-2)), x)
        held = f.detach()
        signal = ((held[:, None] - held[None]).unsqueeze(-1) * ratio).sum(1) / (S - 1)
        log_q = (z * logp).sum(-1)  # (S, B, N)
        loss = f.mean(0) + (signal * (log_q - log_q.detach())).sum(-1).mean(0)
        (-(loss - categorical_analytic_kl(logp)).sum()).backward()

    return step


def vimco_step(vae, x, K: int) -> Step:
    """VIMCO on the Bernoulli VAE's IWAE-K bound (log q in the log-weights, with gradient)."""

    def log_bernoulli(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # -BCE-with-logits written as estibench writes it (broadcasting, one softplus)
        return (z * logits - F.softplus(logits)).sum(-1)

    diagonal = torch.eye(K, dtype=torch.bool).unsqueeze(-1)

    def step() -> None:
        logits = vae.encoder(x)
        z = (uniforms(K, *logits.shape) > torch.sigmoid(-logits)).to(logits.dtype)
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


def iwae_step(vae, x, K: int) -> Step:
    """Pathwise IWAE-K on the Gaussian VAE: autograd of logsumexp_k log w_k - log K, log q with
    its parameters in the log-weights (the iwae estimator's default direct_term=True)."""

    def step() -> None:
        loc, scale, z = gaussian_sample(vae, x, K)
        log_w = bce(vae.decoder(z), x) + log_standard_normal(z) - log_normal(z, loc, scale)
        bound = torch.logsumexp(log_w, 0) - math.log(K)
        (-bound.sum()).backward()

    return step


def jacobian_product(p: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """J(p) delta = p * delta - p (p . delta), J(p) = diag(p) - p p^T the softmax Jacobian."""
    return p * delta - p * (p * delta).sum(-1, keepdim=True)


def categorical_analytic_kl(logp: torch.Tensor) -> torch.Tensor:
    """KL(q || uniform) of N categoricals with log-probabilities logp (B, N, K)."""
    return (logp.exp() * (logp + math.log(logp.shape[-1]))).sum((-1, -2))


def straight_through_family_step(vae, x, estimator, S: int) -> Step:
    """The modern straight-through estimators on the categorical VAE (analytic KL): the hard
    Gumbel-max sample D forward, plus a zero-valued term whose gradient in the logits theta is
    M^T g (`estibench.estimators.straight_through`):
    reinmax: 2 J(pi_1) delta - J(pi) delta / 2, pi = softmax(theta), pi_1 = (D + softmax(theta /
    tau)) / 2, delta = theta - sg(theta); gapped_st: soft - sg(soft), soft = softmax((theta + m)
    / tau), m = (max theta - theta) D - relu(theta - max theta + gap) (1 - D) stopped;
    gumbel_rao: the mean over mc draws theta + G_k given argmax = D (draw 0 from the sample's
    own noise, the others from streams 1..mc-1) of softmax((sg(theta + G_k) + delta) / tau),
    minus its stopped value."""
    N, K = vae.variables, vae.categories
    name, tau = estimator.name, estimator.temperature
    streams = estimator.mc if name == "gumbel_rao" else 1

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        theta = logp.detach()
        u = uniforms(streams * S, *logits.shape)
        log_e = torch.log(-torch.log(u))  # -Gumbel; for gumbel_rao the log of Exp(1) draws
        hard = one_hot((theta - log_e[:S]).argmax(-1), K)
        delta = logp - theta
        if name == "reinmax":
            pi = torch.softmax(theta, -1)
            pi_1 = (hard + (pi if tau == 1 else torch.softmax(theta / tau, -1))) / 2
            term = 2 * jacobian_product(pi_1, delta) - jacobian_product(pi, delta) / 2
        elif name == "gapped_st":
            top = theta.max(-1, keepdim=True).values
            m = (top - theta) * hard - F.relu(theta - top + estimator.gap) * (1 - hard)
            soft = torch.softmax((logp + m) / tau, -1)
            term = soft - soft.detach()
        else:  # gumbel_rao: exponential race T_i = E_i e^-theta_i given argmin T = D
            log_e = log_e.unflatten(0, (streams, S))
            log_z = theta.logsumexp(-1, keepdim=True)
            log_t = log_e[0] - theta
            log_t_min = (log_t * hard).sum(-1, keepdim=True)
            gap = torch.log1p(-torch.exp(log_t_min - log_t).clamp(max=1.0))
            own = torch.where(hard > 0, log_z + log_t_min, log_e[0] + gap)
            log_e = torch.cat([own[None], log_e[1:]])
            log_e_d = (log_e * hard).sum(-1, keepdim=True)
            others = -torch.logaddexp(log_e - theta, log_e_d - log_z)
            perturbed = torch.where(hard > 0, log_z - log_e_d, others)
            soft = torch.softmax((perturbed + delta) / tau, -1).mean(0)
            term = soft - soft.detach()
        f = bce(vae.decoder((hard + term).flatten(-2)), x)
        loss = f.mean(0) - categorical_analytic_kl(logp)
        (-loss.sum()).backward()

    return step


def muprop_step(vae, x, S: int) -> Step:
    """MuProp on the categorical VAE (analytic KL): the Taylor expansion h(D) = f(pi) + f'(pi).(D
    - pi) around pi = exp(theta) as control variate, f'(pi) by autograd.grad of the same decoder
    call (f at the S samples and at pi in one batch); surrogate mean_S [f(D) + (f(D) -
    h(D)) (log q(D) - sg)] + f'(pi).(pi - sg(pi))."""
    N, K = vae.variables, vae.categories

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        b = one_hot((logp - torch.log(-torch.log(uniforms(S, *logits.shape)))).argmax(-1), K)
        mean = logp.exp()
        point = mean[None]
        fb, f_mean = bce(vae.decoder(torch.cat([b, point]).flatten(-2)), x).split([S, 1])
        (slope,) = torch.autograd.grad(f_mean.sum(), point, retain_graph=True)
        taylor = f_mean.detach() + (slope * (b - mean.detach())).sum((-1, -2))
        log_q = (b * logp).sum((-1, -2))
        loss = (fb + (fb.detach() - taylor) * (log_q - log_q.detach())).mean(0)
        loss = loss + ((mean - mean.detach()) * slope[0]).sum((-1, -2))
        (-(loss - categorical_analytic_kl(logp)).sum()).backward()

    return step


def nvil_step(vae, x, S: int, nvil) -> Step:
    """NVIL on the categorical VAE, kl="sampled" (log q detached in f, direct_term=False): the
    signal l = f(D) centred by the running centre c and the baseline network b_psi reading the
    detached logits, divided by max(1, sqrt(v)); the score surrogate mean_S [f + l^ (log q -
    sg)], plus the baseline's squared error mean_S (l - c - b_psi)^2 (aux_loss, added to the
    loss as the harness's throughput does). It reads the estimator's own network and buffers
    c, v, which the timed estimator leaves as they are only in eval mode (see `Case.build`)."""
    N, K = vae.variables, vae.categories
    baseline, centre, variance = nvil.baseline, nvil.centre, nvil.variance

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        z = one_hot((logp - torch.log(-torch.log(uniforms(S, *logits.shape)))).argmax(-1), K)
        log_q = (z * logp).sum((-1, -2))
        f = bce(vae.decoder(z.flatten(-2)), x) - N * math.log(K) - log_q.detach()
        learned = baseline(logp.detach().flatten(-2)).squeeze(-1)
        signal = f.detach()
        centred = (signal - centre - learned.detach()) / variance.sqrt().clamp_min(1.0)
        loss = (f + centred * (log_q - log_q.detach())).mean(0)
        aux = ((signal - centre - learned) ** 2).mean(0)
        (-loss.sum() + aux.sum()).backward()

    return step


def conditional_relaxation_step(vae, x, S: int, estimator) -> Step:
    """REBAR or RELAX on the categorical VAE (analytic KL), in training mode: b = H(z) with z =
    log pi + Gumbel(u), z~ ~ p(z | b) from the second stream v (the top is the Gumbel
    -log(-log v_b), the others Gumbels of location log pi_i truncated below it), the control
    variate c at softmax([z, z~] / lambda) (REBAR: eta f(.), in the decoder call of f(b); RELAX:
    the estimator's network c_psi(2 sigma - 1)); g = mean_S (f(b) - c(z~)) (b - pi) + grad_theta
    (c(z) - c(z~)) / S, the pathwise part by autograd.grad with create_graph=True, in the
    logits the encoder outputs. Surrogate mean_S f(b) + sg(g).(theta - sg theta), plus |g|^2
    (aux_loss, added to the loss as the harness's throughput does: it reaches eta, the
    log-temperature and c_psi, and through g the model too). It reads the estimator's own
    parameters, registered on the objective (see `Case.build`)."""
    N, K = vae.variables, vae.categories
    rebar = estimator.name == "rebar"
    log_temperature = estimator.log_temperature
    eta, network = (estimator.eta, None) if rebar else (None, estimator.network)

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        noise = uniforms(2 * S, *logits.shape)
        u, v = noise[:S], noise[S:]
        z = logp - torch.log(-torch.log(u))
        b = one_hot(z.detach().argmax(-1), K)
        exponential = -torch.log(v)
        log_top = (exponential * b).sum(-1, keepdim=True).log()
        z_tilde = torch.where(b > 0, -log_top,
                              -torch.logaddexp(exponential.log() - logp, log_top))
        relaxed = log_normalize(torch.cat([z, z_tilde]) / log_temperature.exp()).exp()
        if rebar:
            fb, f_relaxed = bce(vae.decoder(torch.cat([b, relaxed]).flatten(-2)),
                                x).split([S, 2 * S])
            c = eta * f_relaxed
        else:
            fb = bce(vae.decoder(b.flatten(-2)), x)
            c = network(2 * relaxed.flatten(-2) - 1).squeeze(-1)
        c_z, c_tilde = c[:S], c[S:]
        score = (fb.detach() - c_tilde)[..., None, None] * (b - logp.exp())
        (pathwise,) = torch.autograd.grad((c_z - c_tilde).sum(), logits, create_graph=True)
        g = score.mean(0) + pathwise / S
        loss = fb.mean(0) + ((logits - logits.detach()) * g.detach()).sum((-1, -2))
        aux = g.pow(2).sum((-1, -2))
        (-(loss - categorical_analytic_kl(logp)).sum() + aux.sum()).backward()

    return step


def indecater_step(vae, x, S: int) -> Step:
    """IndeCateR on the categorical VAE (analytic KL): f at every sample with variable d set to
    each category k (S x N x K points, one decoder call), fbar_{d,k} their mean over the
    samples; surrogate mean_d sum_k sg(pi_dk) fbar_dk + sum_{d,k} (pi_dk - sg) sg(fbar_dk)."""
    N, K = vae.variables, vae.categories
    diagonal = torch.eye(N, dtype=torch.bool).reshape(N, 1, 1, 1, N)
    categories = torch.arange(K).reshape(1, K, 1, 1, 1)

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (N, K))
        logp = log_normalize(logits)
        index = (logp.detach() - torch.log(-torch.log(uniforms(S, *logits.shape)))).argmax(-1)
        points = one_hot(torch.where(diagonal, categories, index), K)  # (N, K, S, B, N, K)
        fbar = bce(vae.decoder(points.flatten(-2)), x).mean(2).permute(2, 0, 1)  # (B, N, K)
        probs = logp.exp()
        loss = ((probs.detach() * fbar).sum(-1).mean(-1)
                + ((probs - probs.detach()) * fbar.detach()).sum((-1, -2)))
        (-(loss - categorical_analytic_kl(logp)).sum()).backward()

    return step


def unordered_set_step(vae, x, S: int) -> Step:
    """The unordered set estimator with k = 2 and its built-in baseline, for one categorical
    variable (analytic KL): S sets {a, b} by Gumbel-top-2; in closed form for two members, with
    r = 1 - p (detached), the weight p(s) R(S, s) of a is r_b / (r_a + r_b) and the baseline
    leaves the learning signal r_a (f_a - f_b); surrogate mean_S sum_s w_s [f_s + sg(l_s)
    (log p_s - sg)]."""
    K = vae.categories

    def step() -> None:
        logits = vae.encoder(x).unflatten(-1, (1, K))
        logp = log_normalize(logits)
        log_p = logp[..., 0, :]
        keys = log_p.detach() - torch.log(-torch.log(uniforms(S, *log_p.shape)))
        members = keys.topk(2, -1).indices  # (S, B, 2)
        f = bce(vae.decoder(one_hot(members.permute(2, 0, 1), K)), x).permute(1, 2, 0)
        log_pk = log_p.expand(S, -1, -1).gather(-1, members)
        rest = -torch.expm1(log_pk.detach())
        weights = rest.flip(-1) / rest.sum(-1, keepdim=True)
        signal = rest * (f - f.flip(-1)).detach()
        loss = (weights * (f + signal * (log_pk - log_pk.detach()))).sum(-1).mean(0)
        (-(loss - categorical_analytic_kl(logp)).sum()).backward()

    return step


def measure_valued_step(vae, x, S: int) -> Step:
    """Measure-valued derivatives on the Gaussian VAE (analytic KL): 6 streams (the base sample,
    the Weibull, the double-sided Maxwell's radial, normal and sign uniforms, the coupling
    uniform); f at the base sample with coordinate i set to mu_i +- sigma_i w, mu_i + sigma_i m
    and mu_i + sigma_i u m (4 D points, one decoder call), all without gradient; surrogate:
    f's mean over the last set (samples of q) plus the weak derivatives times (mu - sg) and
    (sigma - sg)."""
    D = vae.latent_dim
    diagonal = torch.eye(D, dtype=torch.bool).reshape(D, 1, 1, D)
    root_2pi = math.sqrt(2 * math.pi)

    def step() -> None:
        params = vae.encoder(x).unflatten(-1, (2, D))
        loc, scale = params[..., 0, :], F.softplus(params[..., 1, :]) + 1e-4
        u0, u_w, u_r, u_n, u_s, u_c = uniforms(6 * S, *loc.shape).unflatten(0, (6, S))
        mu, sigma = loc.detach(), scale.detach()
        base = mu + sigma * torch.special.ndtri(u0)
        w = torch.sqrt(-2 * torch.log(u_w))
        m = torch.sqrt(-2 * torch.log(u_r) + torch.special.ndtri(u_n) ** 2)
        m = torch.where(u_s < 0.5, -m, m)
        values = torch.stack([mu + sigma * w, mu - sigma * w, mu + sigma * m,
                              mu + sigma * u_c * m])  # (4, S, B, D)
        fz = bce(vae.decoder(torch.where(diagonal, values.unsqueeze(1), base)), x)
        diff = fz.detach().mean(2).transpose(1, 2)  # (4, B, D)
        grad_loc = (diff[0] - diff[1]) / (sigma * root_2pi)
        grad_scale = (diff[2] - diff[3]) / sigma
        loss = fz[3].mean((0, 1)) + (grad_loc * (loc - mu) + grad_scale * (scale - sigma)).sum(-1)
        kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum(-1)
        (-(loss - kl).sum()).backward()

    return step


@contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """torch.distributions' default argument validation set to `enabled`, then restored."""
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


def user_step(objective, estimator, x, S: int, kl: str, fast: bool) -> Step:
    """A user's own training step through the public contract, in the shape of the README's
    example: q a `torch.distributions` object built from the encoder's output, f the user's
    own log-likelihood (with the prior and `estimator.log_q` inside it for a sampled KL and
    for the IWAE estimators' log-weights), the analytic KL added with `EstimatorOutput.minus`,
    -loss (plus aux_loss) backpropagated. Not fast: torch's `kl_divergence` and torch's
    default argument validation. Fast: `estibench.estimators.kl.kl_divergence` and the
    validation switched off (`Distribution.set_default_validate_args(False)`, which a script
    sets once). The same networks, noise and gradient as the plain step."""
    kl_of = fast_kl_divergence if fast else torch_kl_divergence
    name = objective.name
    B = x.shape[0]
    if name == "categorical_vae":
        N, K = objective.variables, objective.categories
        prior = Independent(OneHotCategorical(logits=torch.zeros(N, K)), 1)

        def posterior():
            return Independent(OneHotCategorical(logits=objective.encoder(x).view(B, N, K)), 1)

        def log_lik(z):
            return bce(objective.decoder(z.flatten(-2)), x)
    elif name == "gaussian_vae":
        D = objective.latent_dim
        prior = Independent(Normal(torch.zeros(D), torch.ones(D)), 1)

        def posterior():
            params = objective.encoder(x).view(B, 2, D)
            return Independent(Normal(params[:, 0], F.softplus(params[:, 1]) + 1e-4), 1)

        def log_lik(z):
            return bce(objective.decoder(z), x)
    else:  # bernoulli_vae: its prior is learned, so built in the step (expanded to the batch:
        prior = None  # torch's Bernoulli KL does not broadcast one)

        def posterior():
            return Independent(Bernoulli(logits=objective.encoder(x)), 1)

        def log_lik(z):
            return bce(objective.decoder(z), x)

    in_f = kl == "sampled" or estimator.estimates == "iwae"

    def body() -> None:
        p = prior if prior is not None else Independent(
            Bernoulli(logits=objective.prior_logits.expand(B, -1)), 1)
        q = posterior()
        if in_f:
            def f(z):
                return log_lik(z) + p.log_prob(z) - estimator.log_q(q, z)
            out = estimator(q, f, num_samples=S)
        else:
            out = estimator(q, log_lik, num_samples=S).minus(kl_of(q, p))
        loss = -out.loss.sum()
        (loss if out.aux_loss is None else loss + out.aux_loss.sum()).backward()

    if not fast:
        return body

    def step() -> None:
        with validation(False):
            body()

    return step


def library_step(objective, estimator, x, S: int) -> Step:
    """-loss, plus the estimator's aux_loss where it has one (as the harness's throughput)."""

    def step() -> None:
        out = objective.estimate(x, estimator, S)
        loss = -out.loss.sum()
        (loss if out.aux_loss is None else loss + out.aux_loss.sum()).backward()

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

    def build(self, batch: int, seed: int = 0, against: ModuleType | None = None
              ) -> tuple[Any, Step, Step] | tuple[Any, Step, Step, Step | None]:
        """(objective, estibench step, plain step), and with `against` that checkout's step
        (None where it lacks the estimator): `sides` as a tuple."""
        objective, sides = self.sides(batch, seed, against)
        if against is None:
            return objective, sides["estibench"], sides["plain"]  # type: ignore[return-value]
        return (objective, sides["estibench"], sides["plain"],  # type: ignore[return-value]
                sides["against"])

    def sides(self, batch: int, seed: int = 0, against: ModuleType | None = None,
              user: bool = False) -> tuple[Any, dict[str, Step | None]]:
        """The objective and the steps to compare, by name: "estibench" (the objective's own
        step), "plain" (hand-written torch), with `user` the user's path ("user": torch's
        KL and validation; "user, fast": the KL fast path, validation off; `user_step`),
        with `against` (another checkout's `estimators` package, `import_estimators`) that
        package's estimator through the same objective, in the same state ("against", None
        where it lacks the estimator), registered as `objective.estimator_against`. All on
        one random binary batch. An estimator with
        parameters (NVIL's baseline, REBAR's eta and temperature, RELAX's network and
        temperature) has them built here (`prepare`, before any step draws noise) and is
        registered on the objective as `objective.estimator`, so that `zero_grad` clears their
        gradients and `named_parameters` lists them: the test compares them too. NVIL's running
        centre and variance are set by three training calls (so that neither the centring nor
        the normalization is the identity), then frozen by eval mode: both sides read the same
        values on every call. REBAR and RELAX keep no running state: they stay in training
        mode, where their aux_loss (a double backward) is built and timed, as in training."""
        torch.manual_seed(seed)
        objective = objectives.get(self.objective, input_dim=64, hidden=200, kl=self.kl,
                                   **self.objective_options)
        estimator = estimators.get(self.estimator, **self.estimator_options)
        x = (torch.rand(batch, 64) < 0.5).to(torch.get_default_dtype())
        S = self.samples
        name = self.estimator
        if name == "nvil":
            with torch.no_grad():  # a few training calls move c and v off their initial 0, 1
                estimator.prepare(objective.posterior(x))
                for _ in range(3):
                    objective.estimate(x, estimator, S)
            estimator.eval()  # in training mode each call would move the centre and variance
            objective.estimator = estimator
            plain = nvil_step(objective, x, S, estimator)
        elif name in ("rebar", "relax"):  # training mode: aux_loss built and timed
            with torch.no_grad():  # RELAX's network is sized by q (REBAR: nothing to build)
                estimator.prepare(objective.posterior(x))
            objective.estimator = estimator
            plain = conditional_relaxation_step(objective, x, S, estimator)
        elif name == "indecater":
            plain = indecater_step(objective, x, S)
        elif name == "unordered_set":
            plain = unordered_set_step(objective, x, S)
        elif name == "measure_valued":
            plain = measure_valued_step(objective, x, S)
        elif name == "muprop":
            plain = muprop_step(objective, x, S)
        elif name == "carms":
            plain = carms_step(objective, x, S)
        elif name == "disarm" and self.objective == "categorical_vae":
            plain = categorical_disarm_step(objective, x, S)
        elif name in ("reinmax", "gapped_st", "gumbel_rao"):
            plain = straight_through_family_step(objective, x, estimator, S)
        elif self.objective == "categorical_vae":
            plain = categorical_step(objective, x, name, S, self.kl,
                                     baseline=self.estimator_options.get("baseline", "none"))
        elif name == "dreg":
            plain = dreg_step(objective, x, S)
        elif name == "iwae":
            plain = iwae_step(objective, x, S)
        elif self.objective == "gaussian_vae":
            plain = gaussian_step(objective, x, S, self.kl)
        elif name in ("arm", "disarm"):
            plain = antithetic_step(objective, x, S, name)
        else:
            plain = vimco_step(objective, x, S)
        sides: dict[str, Step | None] = {
            "estibench": library_step(objective, estimator, x, S), "plain": plain}
        if user:
            for fast in (False, True):
                sides["user, fast" if fast else "user"] = user_step(
                    objective, estimator, x, S, self.kl, fast)
        if against is None:
            return objective, sides
        if name not in against.available():
            sides["against"] = None
            return objective, sides
        other = against.get(name, **self.estimator_options)
        if "estimator" in objective._modules:  # the same parameters and running state
            other.prepare(objective.posterior(x))
            other.load_state_dict(estimator.state_dict())
            other.train(estimator.training)
            objective.estimator_against = other
        sides["against"] = library_step(objective, other, x, S)
        return objective, sides


def import_estimators(checkout: str) -> ModuleType:
    """The `estimators` package of another estibench checkout (a git worktree of an earlier
    commit, say), imported beside this one as `estimators_against`: its estimators run through
    this checkout's objectives, so a difference between the two is the estimators'."""
    init = Path(checkout) / "estimators" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--against: {checkout!r} has no estimators/__init__.py")
    spec = importlib.util.spec_from_file_location(
        "estimators_against", init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["estimators_against"] = package
    spec.loader.exec_module(package)
    return package


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
    Case("categorical 8x8 / reinforce(grpo), S=4", "categorical_vae", "reinforce", 4,
         objective_options=CAT_8x8, estimator_options={"baseline": "grpo"}),
    Case("categorical 8x8 / reinforce(drgrpo), S=4", "categorical_vae", "reinforce", 4,
         objective_options=CAT_8x8, estimator_options={"baseline": "drgrpo"}),
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
    Case("gaussian 16 / iwae, K=4 (iwae)", "gaussian_vae", "iwae", 4,
         objective_options={"latent_dim": 16, "bound": "iwae"}),
    Case("bernoulli 16 / arm, 1 pair", "bernoulli_vae", "arm", 1,
         objective_options=BERNOULLI),
    Case("bernoulli 16 / disarm, 1 pair", "bernoulli_vae", "disarm", 1,
         objective_options=BERNOULLI),
    Case("bernoulli 16 / vimco, K=4 (iwae)", "bernoulli_vae", "vimco", 4,
         objective_options={**BERNOULLI, "bound": "iwae"}),
    # Categorical antithetic: coupled stick-breaking DisARM (2 evaluations per pair) and CARMS
    # (S jointly antithetic samples through the Dirichlet copula, the exact pair ratio).
    Case("categorical 8x8 / disarm, 1 pair", "categorical_vae", "disarm", 1,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / carms, S=2", "categorical_vae", "carms", 2,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / carms, S=4", "categorical_vae", "carms", 4,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / reinmax", "categorical_vae", "reinmax", 1,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / muprop, S=1", "categorical_vae", "muprop", 1,
         objective_options=CAT_8x8),
    # NVIL in eval mode (both sides read the same centre and variance: see `Case.build`);
    # kl="sampled": the signal is the whole ELBO integrand, as NVIL's docstring advises.
    Case("categorical 8x8 / nvil, S=1, kl=sampled (eval)", "categorical_vae", "nvil", 1,
         kl="sampled", objective_options=CAT_8x8),
    Case("categorical 8x8 / gapped_st", "categorical_vae", "gapped_st", 1,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / gumbel_rao, mc=10", "categorical_vae", "gumbel_rao", 1,
         objective_options=CAT_8x8),
    # REBAR and RELAX in training mode, aux_loss added (their parameters registered on the
    # objective: see `Case.build`); 2 noise streams, u then v.
    Case("categorical 8x8 / rebar, S=1 (train)", "categorical_vae", "rebar", 1,
         objective_options=CAT_8x8),
    Case("categorical 8x8 / relax, S=1 (train)", "categorical_vae", "relax", 1,
         objective_options=CAT_8x8),
    # IndeCateR evaluates f at S x N x K points per example: 64 at 8x8, 8 at 2x4.
    Case("categorical 8x8 / indecater, S=1", "categorical_vae", "indecater", 1,
         objective_options=CAT_8x8),
    Case("categorical 2x4 / indecater, S=1", "categorical_vae", "indecater", 1,
         objective_options=CAT_2x4),
    # The unordered set estimator needs one categorical variable per example.
    Case("categorical 1x16 / unordered_set (k=2), S=2", "categorical_vae", "unordered_set", 2,
         objective_options={"variables": 1, "categories": 16}),
    # Measure-valued: f at 4 D points per sample, 6 noise streams.
    Case("gaussian 4 / measure_valued, S=1", "gaussian_vae", "measure_valued", 1,
         objective_options={"latent_dim": 4}),
]


def interleaved(objective, steps: dict[str, Step], calls: int, warmup: int = 10,
                clock: Callable[[], float] = time.thread_time,
                timer: CallTimer | None = None) -> dict[str, list[float]]:
    """Seconds of each call of each step, called alternately (order reversed every round);
    `timer` (a `timing.call_timer`, CUDA events on a GPU) times a call, else `clock`."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    if timer is None:
        timer = call_timer(torch.device("cpu"), "cpu" if clock is time.thread_time else "wall")
    for i in range(warmup + calls):
        for name in (names if i % 2 == 0 else names[::-1]):
            objective.zero_grad(set_to_none=True)
            elapsed = timer(steps[name])
            if i >= warmup:
                times[name].append(elapsed)
    objective.zero_grad(set_to_none=True)
    return times


@dataclass(frozen=True)
class Row:
    """One case at one batch size: median milliseconds per call of each side timed."""

    label: str
    batch: int
    ms: dict[str, float]

    def ratio(self, side: str) -> float:
        """The side's median over the plain step's."""
        return self.ms[side] / self.ms["plain"]


def compare(cases: list[Case], batches: tuple[int, ...], calls: int = 300, *,
            device: str = "cpu", clock: str = "cpu", user: bool = True,
            against: ModuleType | None = None,
            report: Callable[[str], None] | None = None) -> list[Row]:
    """Each case at each batch size, its sides interleaved call by call (`interleaved`);
    `calls` per side at batch 32, scaled down (to 50 at least) for larger batches. `report`
    receives each printed line as it is measured."""
    target = device_of(device)
    timer = call_timer(target, clock)
    rows = []
    for batch in batches:
        n = max(50, calls * 32 // batch) if batch > 32 else calls
        if report:
            report(f"\nbatch {batch}, {n} calls per side; load average before: {load()}")
        for case in cases:
            with on_device(target):
                objective, sides = case.sides(batch, against=against, user=user)
                steps = {k: v for k, v in sides.items() if v is not None}
                t = interleaved(objective, steps, n, timer=timer)
            row = Row(case.label, batch, {k: statistics.median(v) * 1e3 for k, v in t.items()})
            rows.append(row)
            if report:
                report(format_row(row, user, against is not None))
        if report:
            report(f"load average after: {load()}")
    return rows


def header(user: bool, against: bool) -> str:
    return (f"{'objective / estimator':52s} {'estibench ms':>12s} {'plain ms':>9s} "
            f"{'ratio':>7s}" + (f" {'user':>7s} {'user,fast':>9s}" if user else "")
            + (f" {'against':>8s}" if against else ""))


def format_row(row: Row, user: bool, against: bool) -> str:
    line = (f"{row.label:52s} {row.ms['estibench']:12.3f} {row.ms['plain']:9.3f} "
            f"{row.ratio('estibench'):6.2f}x")
    if user:
        line += f" {row.ratio('user'):6.2f}x {row.ratio('user, fast'):8.2f}x"
    if against:
        line += f" {row.ratio('against'):7.2f}x" if "against" in row.ms else "      n/a"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", default="32,512", help="comma-separated batch sizes")
    parser.add_argument("--calls", type=int, default=300,
                        help="timed calls per side at batch 32 (scaled down for larger batches)")
    parser.add_argument("--only", default="", help="run the cases whose label contains this")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="per-call thread CPU time (default) or wall time (CPU only)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda[:N]: on CUDA each call is timed by CUDA "
                             "events")
    parser.add_argument("--no-user", action="store_true",
                        help="leave out the user's path (torch.distributions q, own f)")
    parser.add_argument("--against", default="", metavar="CHECKOUT",
                        help="also time the estimators of this estibench checkout (e.g. a git "
                             "worktree of an earlier commit), interleaved as a third side")
    args = parser.parse_args()
    try:
        device_of(args.device)
    except DeviceUnavailable as error:
        raise SystemExit(str(error)) from None
    against = import_estimators(args.against) if args.against else None
    torch.set_num_threads(args.threads)
    clock = "cuda events" if args.device.startswith("cuda") else f"{args.clock} time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device "
          f"{args.device}; medians of per-call {clock}, the sides interleaved call by call")
    print(header(not args.no_user, against is not None))
    compare([c for c in CASES if args.only in c.label],
            tuple(int(b) for b in args.batch.split(",")), args.calls, device=args.device,
            clock=args.clock, user=not args.no_user, against=against,
            report=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
