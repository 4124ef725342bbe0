"""Noise and the maps from noise to samples, shared by every estimator.

Every estimator samples through one path: uniform base noise `u` in (0, 1), then a deterministic
map to a sample. Drawing the noise outside the estimator makes two things possible: the vectorized
gradient statistics (noise drawn once, outside `torch.func.vmap`, consumed identically by the loop
oracle) and common random numbers (the same `u` given to estimators that sample the same way, for
paired comparisons). The maps:

- Normal: z = loc + scale * ndtri(u) (inverse-CDF reparameterization);
- Bernoulli: hard b = [logits + logistic(u) > 0] (computed as [u > sigmoid(-logits)]), relaxed
  sigmoid(s), s = (logits + logistic(u)) / tau;
- Categorical / OneHotCategorical: Gumbel-max argmax(logits + gumbel(u)), relaxed exp(y), y =
  log_softmax((logits + gumbel(u)) / tau).

A relaxed sample carries its log-space variable (s or y, `log_space`), from which its Concrete
density is computed without underflow (`estibench.estimators.densities`).

So the hard sample of REINFORCE and the forward value of straight-through Gumbel coincide for the
same noise (for Bernoulli, except where u is within float rounding of the threshold). Uniforms
are drawn in float32 at least (float64 for float64) and clamped to [tiny, 1 - eps] of that
precision; the maps run in it and cast their result to the parameters' dtype, so
gumbel/logistic noise is finite and keeps its tail in bfloat16 and float16 too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Normal,
    OneHotCategorical,
)

from .distributions import NOISE_FAMILIES, base_of, cast, marked_one_hot, one_hot


def supports_noise(q: Distribution) -> bool:
    """Whether `q` (through Independent) is a family this module maps noise to samples for."""
    return type(base_of(q)) in NOISE_FAMILIES


def _parameter(base: Any) -> Tensor:
    return base.loc if isinstance(base, Normal) else base.logits


def noise_shape(q: Distribution, num_samples: int, streams: int = 1) -> torch.Size:
    """Shape of the uniform noise for `num_samples` draws: (streams * S, *batch, *event), plus
    the number of categories K for `Categorical`, whose event is an index. Estimators that need
    more than one uniform per sample coordinate (REBAR's u and v) take `streams` > 1: stream k
    is `noise[k * S:(k + 1) * S]` (see `split_streams`)."""
    shape = torch.Size((streams * num_samples, *q.batch_shape, *q.event_shape))
    base = base_of(q)
    if isinstance(base, Categorical) and not isinstance(base, OneHotCategorical):
        shape = shape + base.logits.shape[-1:]
    return shape


_NOISE_DTYPES: dict[torch.dtype, torch.dtype] = {}


def noise_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision base noise is drawn and mapped in for parameters of `dtype`: float32 for
    the short dtypes (in bfloat16, 1% of uniforms would sit at 1 - eps and the Gumbel tail stop
    at 4.8), float64 for float64. Remembered per dtype: `promote_types` is a dispatched op."""
    wide = _NOISE_DTYPES.get(dtype)
    if wide is None:
        wide = _NOISE_DTYPES[dtype] = torch.promote_types(dtype, torch.float32)
    return wide


def uniform(
    shape: torch.Size | tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniforms in [tiny, 1 - eps] for parameters of `dtype`, held in `noise_dtype(dtype)`
    (float32 at least), so no Gumbel or logistic variate is infinite or cut short."""
    draw_dtype = noise_dtype(dtype)
    u = torch.rand(shape, dtype=draw_dtype, device=device, generator=generator)
    info = torch.finfo(draw_dtype)
    return u.clamp(info.tiny, 1.0 - info.eps)


def draw_noise(
    q: Distribution, num_samples: int, generator: torch.Generator | None = None,
    streams: int = 1,
) -> Tensor:
    """Base noise for `num_samples` samples of `q`, in the dtype and device of its parameters;
    with `streams` > 1, the streams are drawn one after the other and stacked along dim 0."""
    p = _parameter(base_of(q))
    if streams == 1 or p.device.type == "cpu":
        # The CPU generator fills a tensor element by element in order, so one draw of all the
        # streams is the streams drawn one after the other (a test compares the two); CUDA's
        # kernels assign random numbers to elements by the launch size, so there each stream
        # is drawn alone and stream 0 stays the noise a one-stream estimator gets.
        return uniform(noise_shape(q, num_samples, streams), p.dtype, p.device, generator)
    shape = noise_shape(q, num_samples)
    return torch.cat([uniform(shape, p.dtype, p.device, generator) for _ in range(streams)])


def split_streams(noise: Tensor, streams: int) -> tuple[Tensor, ...]:
    """The `streams` noise streams of `noise` (streams * S, ...), each (S, ...): the views of
    `stacked_streams`."""
    return stacked_streams(noise, streams).unbind(0)


def stacked_streams(noise: Tensor, streams: int) -> Tensor:
    """The noise streams of `noise` (streams * S, ...) as one view (streams, S, ...)."""
    return noise.unflatten(0, (streams, noise.shape[0] // streams))


def _wide(u: Tensor) -> Tensor:
    return cast(u, noise_dtype(u.dtype))


def neg_gumbel(u: Tensor) -> Tensor:
    """log(-log u) = -Gumbel(u), the log of the Exp(1) variate -log u, in u's dtype (computed
    in float32 at least)."""
    return cast(torch.log(-torch.log(_wide(u))), u.dtype)


def gumbel(u: Tensor) -> Tensor:
    """Standard Gumbel variates from uniforms, computed in float32 at least and returned in
    u's dtype."""
    return -neg_gumbel(u)


def logistic(u: Tensor) -> Tensor:
    """Standard logistic variates from uniforms, computed in float32 at least and returned in
    u's dtype."""
    w = _wide(u)
    return cast(torch.log(w) - torch.log1p(-w), u.dtype)


def _perturbed(base: Any, u: Tensor) -> Tensor:
    """logits + Gumbel (categorical) or logits + logistic (Bernoulli) noise; the noise is
    mapped in its own precision and cast to the logits' dtype (logits - log(-log u) for the
    Gumbel: one negation fewer, the same value)."""
    logits = base.logits
    if isinstance(base, Bernoulli):
        return logits + cast(logistic(u), logits.dtype)
    return logits - cast(neg_gumbel(u), logits.dtype)


def hard_sample(q: Distribution, u: Tensor) -> Tensor:
    """A (non-differentiable) sample of `q` from uniform noise `u` of shape `noise_shape`.

    From detached parameters rather than under `torch.no_grad()` (whose context costs more
    than a small sample's arithmetic). A Bernoulli sample is the threshold [u > sigmoid(-logits)]
    in u's precision: the same event as [logits + logistic(u) > 0] (logistic(u) > -logits),
    in two operations instead of five; the two roundings can disagree only where u is within
    float rounding of the threshold."""
    base = base_of(q)
    if isinstance(base, Normal):
        with torch.no_grad():
            return reparameterized_sample(q, u)
    logits = base.logits.detach()
    if isinstance(base, Bernoulli):
        return (u > torch.sigmoid(-cast(logits, u.dtype))).to(logits.dtype)
    return gumbel_max(q, neg_gumbel(u))


def gumbel_max(q: Distribution, mapped: Tensor) -> Tensor:
    """`hard_sample` of a Categorical or OneHotCategorical q from its noise already mapped,
    `mapped = neg_gumbel(u)`: argmax(logits - log(-log u)), for an estimator that reuses the
    mapped noise (Gumbel-Rao's conditional draws)."""
    index = gumbel_argmax(q, mapped)
    base = base_of(q)
    if isinstance(base, OneHotCategorical):
        return marked_one_hot(one_hot(index, base.logits.shape[-1], base.logits.dtype))
    return index


def gumbel_argmax(q: Distribution, mapped: Tensor) -> Tensor:
    """The category index of `gumbel_max(q, mapped)`: argmax(logits - mapped), for a one-hot q
    too (an estimator that needs the index, not the one-hot: IndeCateR)."""
    logits = base_of(q).logits.detach()
    return (logits - cast(mapped, logits.dtype)).argmax(-1)


def reparameterized_sample(q: Distribution, u: Tensor) -> Tensor:
    """A differentiable sample of a Normal `q`: loc + scale * ndtri(u)."""
    base = base_of(q)
    assert isinstance(base, Normal), "only Normal has an inverse-CDF reparameterization here"
    # ndtri has no bfloat16 kernel: short dtypes go through float32; float64 stays float64
    # (through float32, float64's tiny would underflow to 0 and give -inf).
    eps = cast(torch.special.ndtri(_wide(u)), base.loc.dtype)
    return base.loc + base.scale * eps


_LOG_SPACE = "_estibench_log_space"


def log_space(z: Tensor) -> Tensor | None:
    """The log-space variable a relaxed sample carries (y or s, see the module docstring), or
    None. It rides on the tensor object f receives, so densities evaluated at that very object
    inside f (a sampled KL) can use it; any operation on z returns a tensor without it."""
    return getattr(z, _LOG_SPACE, None)


def carrying(z: Tensor, v: Tensor | None) -> Tensor:
    """`z`, marked as carrying the log-space variable `v` (None: nothing to carry)."""
    setattr(z, _LOG_SPACE, v)
    return z


def relaxed_sample(q: Distribution, u: Tensor, temperature: float) -> Tensor:
    """A Concrete / Gumbel-Softmax sample (binary Concrete for Bernoulli), differentiable:
    drawn in log space, returned in probability space, carrying its log-space variable."""
    base = base_of(q)
    perturbed = _perturbed(base, u) / temperature
    if isinstance(base, Bernoulli):
        return carrying(torch.sigmoid(perturbed), perturbed)
    y = perturbed - perturbed.logsumexp(-1, keepdim=True)  # log_softmax, faster for small K
    return carrying(y.exp(), y)


def hard_of_relaxed(q: Distribution, soft: Tensor) -> Tensor:
    """The discrete value a relaxed sample rounds to (argmax one-hot, or s > 0: the hard sample
    of the same noise), read from its log-space variable when it carries one."""
    with torch.no_grad():
        v = log_space(soft)
        if isinstance(base_of(q), Bernoulli):
            hard = soft > 0.5 if v is None else v > 0
            return hard.to(soft.dtype)
        index = (soft if v is None else v).argmax(-1)
        return one_hot(index, soft.shape[-1], soft.dtype)
