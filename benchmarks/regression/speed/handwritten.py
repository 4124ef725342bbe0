"""Time one gradient estimate through estibench against a hand-written plain-torch step.

    python -m estibench.benchmarks.regression.speed.handwritten [--threads 1] [--batch 32,512]
    [--calls 300]

For each family the plain-torch step computes the same surrogate with the same networks, the
same number of samples and the same noise (uniforms drawn by `torch.rand` in the same order, so
from one seed both sides compute the same gradient:
`tests/benchmarks/regression/test_speed_handwritten.py` checks it),
written the way one would inline it in a training script (no distribution objects, no registry,
no checks). Target: estibench within 1.1x.

Method: the two steps are called alternately, call by call, in one process (the order swapped
every round, gradients cleared before each call), and the ratio is that of the medians of the
per-call times; so a change of the machine's load hits both sides alike. Times are the CPU time
of the calling thread (`time.thread_time`; with one intra-op thread torch computes forward and
backward on it), which a busy machine's preemptions do not inflate; `--clock wall` takes
`time.perf_counter` instead. The load average is printed before and after each batch size.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from estibench import estimators
from estibench.benchmarks import objectives

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
        """(objective, estibench step, plain step) on a random binary batch; with `against`
        (another checkout's `estimators` package, `import_estimators`), also that package's
        estimator through the same objective, in the same state (None where it lacks the
        estimator), registered as `objective.estimator_against`. An estimator with
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
        ours = library_step(objective, estimator, x, S)
        if against is None:
            return objective, ours, plain
        if name not in against.available():
            return objective, ours, plain, None
        other = against.get(name, **self.estimator_options)
        if "estimator" in objective._modules:  # the same parameters and running state
            other.prepare(objective.posterior(x))
            other.load_state_dict(estimator.state_dict())
            other.train(estimator.training)
            objective.estimator_against = other
        return objective, ours, plain, library_step(objective, other, x, S)


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
    parser.add_argument("--against", default="", metavar="CHECKOUT",
                        help="also time the estimators of this estibench checkout (e.g. a git "
                             "worktree of an earlier commit), interleaved as a third side")
    args = parser.parse_args()
    against = import_estimators(args.against) if args.against else None
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of "
          f"per-call {args.clock} times, the two sides interleaved call by call")
    for batch in (int(b) for b in args.batch.split(",")):
        calls = max(50, args.calls * 32 // batch) if batch > 32 else args.calls
        print(f"\nbatch {batch}, {calls} calls per side; load average before: {load()}")
        print(f"{'objective / estimator':52s} {'estibench ms':>12s} {'plain ms':>9s} "
              f"{'ratio':>7s}" + (f" {'against':>8s}" if against else ""))
        for case in CASES:
            if args.only not in case.label:
                continue
            steps: dict[str, Step | None] = {}
            if against is None:
                objective, steps["ours"], steps["plain"] = case.build(batch)
            else:
                objective, steps["ours"], steps["plain"], steps["against"] = case.build(
                    batch, against=against)
            t = interleaved(objective, {k: v for k, v in steps.items() if v is not None},
                            calls, clock=clock)
            m = {k: statistics.median(v) for k, v in t.items()}
            other = (f" {m['against'] / m['plain']:7.2f}x" if "against" in m
                     else "      n/a" if against else "")
            print(f"{case.label:52s} {m['ours'] * 1e3:12.3f} {m['plain'] * 1e3:9.3f} "
                  f"{m['ours'] / m['plain']:6.2f}x{other}", flush=True)
        print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
