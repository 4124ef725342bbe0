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

import math

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)
from torch.nn.functional import softplus

NOISE_FAMILIES = (Normal, Bernoulli, Categorical, OneHotCategorical)


def base_of(q: Distribution) -> Distribution:
    """The distribution inside any number of `Independent` wrappers."""
    while isinstance(q, Independent):
        q = q.base_dist
    return q


def describe(q: Distribution) -> str:
    """A short name such as 'Independent(OneHotCategorical)' for error messages."""
    if isinstance(q, Independent):
        return f"Independent({describe(q.base_dist)})"
    return type(q).__name__


def supports_noise(q: Distribution) -> bool:
    """Whether `q` (through Independent) is a family this module maps noise to samples for."""
    return type(base_of(q)) in NOISE_FAMILIES


def _parameter(base: Distribution) -> Tensor:
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


def cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """`x.to(dtype)`, without the dispatch when it already has that dtype (the common case)."""
    return x if x.dtype == dtype else x.to(dtype)


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


def _perturbed(base: Distribution, u: Tensor) -> Tensor:
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


def one_hot(index: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot encoding of `index` as an out-of-place scatter into zeros: unlike `F.one_hot`
    (which checks the index values, a data-dependent step), this runs under `torch.func.vmap`,
    and it is 2x faster than a comparison with arange."""
    zeros = torch.zeros((*index.shape, num_classes), dtype=dtype, device=index.device)
    return zeros.scatter(-1, index.unsqueeze(-1), 1.0)


_ONE_HOT = "_estibench_one_hot"


def marked_one_hot(z: Tensor) -> Tensor:
    """`z`, a one-hot hard sample, marked as such: `log_prob` reads it as z . logits (one
    product and one sum) instead of torch's argmax and gather. Like the log-space variable, the
    mark rides on the tensor object, so any operation on z returns an unmarked tensor."""
    setattr(z, _ONE_HOT, True)
    return z


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


def carrying(z: Tensor, v: Tensor) -> Tensor:
    """`z`, marked as carrying the log-space variable `v`."""
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


def hard_log_prob(q: Distribution, z: Tensor) -> Tensor:
    """log q(z) for a *hard* sample z (one-hot vectors for OneHotCategorical): z . logits, where
    torch's OneHotCategorical.log_prob takes an argmax and a gather. Other families: `log_prob`."""
    base = base_of(q)
    if not isinstance(base, OneHotCategorical):
        return log_prob(q, z)
    # Categorical keeps its logits normalized; one sum over the category and Independent dims.
    return (z * base.logits).sum(tuple(range(-len(q.event_shape), 0)))


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_STANDARD = "_estibench_standard_normal"


def marked_standard_normal(p: Distribution) -> Distribution:
    """`p`, a Normal (optionally inside Independent) with loc 0 and scale 1, checked once here
    and marked as such: `log_prob` then computes -z^2 / 2 - log sqrt(2 pi) without reading its
    parameters (a fixed prior, built once, evaluated on every step)."""
    base = base_of(p)
    if not (type(base) is Normal and bool((base.loc == 0).all())
            and bool((base.scale == 1).all())):
        raise ValueError(f"marked_standard_normal: {describe(p)} is not a Normal with loc 0 "
                         "and scale 1")
    setattr(p, _STANDARD, True)
    return p


def is_standard_normal(p: Distribution) -> bool:
    """Whether `p` was marked by `marked_standard_normal`."""
    return getattr(p, _STANDARD, False)


def log_prob(q: Distribution, z: Tensor, detach: bool = False) -> Tensor:
    """`q.log_prob(z)` (with `detach`, `detached(q).log_prob(z)`), for Normal, Bernoulli,
    Categorical and OneHotCategorical (through Independent) computed from q's parameters by
    torch's own formulas (Bernoulli's -BCE-with-logits as z logits - softplus(logits), its
    algebraic equal, which broadcasts without a copy of the logits per sample): no distribution
    is built and nothing validated, which at small batch costs more than the arithmetic. A hard
    sample marked one-hot (`marked_one_hot`) is read as z . logits. Other families, and a q that
    validates its arguments, take the general path."""
    base = base_of(q)
    kind = type(base)
    if kind not in NOISE_FAMILIES or q._validate_args or base._validate_args:
        return (detached(q) if detach else q).log_prob(z)
    ndims = len(q.event_shape) - len(base.event_shape)  # the Independent dimensions
    if kind is Normal and getattr(q, _STANDARD, False):
        lp = -0.5 * z**2 - _HALF_LOG_2PI
    elif kind is Normal:
        loc, scale = (base.loc.detach(), base.scale.detach()) if detach else (base.loc,
                                                                               base.scale)
        lp = -0.5 * ((z - loc) / scale) ** 2 - scale.log() - _HALF_LOG_2PI
    else:
        logits = base.logits.detach() if detach else base.logits
        if kind is Bernoulli:  # -BCE-with-logits, written so that it broadcasts
            lp = z * logits - softplus(logits)
        elif kind is OneHotCategorical and getattr(z, _ONE_HOT, False):
            return (z * logits).sum(tuple(range(-ndims - 1, 0)))
        else:  # Categorical's logits are normalized; a one-hot z is read at its argmax
            index = z.max(-1)[1] if kind is OneHotCategorical else z.long()
            index, log_pmf = torch.broadcast_tensors(index.unsqueeze(-1), logits)
            lp = log_pmf.gather(-1, index[..., :1]).squeeze(-1)
    return lp.sum(tuple(range(-ndims, 0))) if ndims else lp


def mean_of(q: Distribution) -> Tensor:
    """The mean (probabilities) of a Bernoulli or one-hot categorical `q`; for the categorical
    exp(logits), which Categorical keeps normalized: one exp where torch's `probs` is a softmax
    over the last dimension (its kernel is slow for a few categories: 2 ms at 512 x 8 x 8)."""
    base = base_of(q)
    return base.logits.exp() if isinstance(base, OneHotCategorical) else base.probs


def one_hot_categorical(logits: Tensor) -> OneHotCategorical:
    """`OneHotCategorical(logits=logits, validate_args=False)`, minus the argument check that
    torch's constructor makes regardless: it builds its inner Categorical with the default
    validate_args (a reduction and a host sync per call); here neither is validated. The inner
    one is built without its constructor, normalized as torch normalizes (logits - logsumexp:
    over a few categories 2-4x faster than log_softmax, forward and backward, on CPU), with the
    attributes `Categorical.__init__` sets (a test compares them)."""
    inner = Categorical.__new__(Categorical)
    inner.logits = inner._param = logits - logits.logsumexp(-1, keepdim=True)
    inner._num_events = logits.shape[-1]
    batch_shape = logits.shape[:-1]
    Distribution.__init__(inner, batch_shape, validate_args=False)
    q = OneHotCategorical.__new__(OneHotCategorical)
    q._categorical = inner
    Distribution.__init__(q, batch_shape, logits.shape[-1:], validate_args=False)
    return q


def bernoulli(logits: Tensor) -> Bernoulli:
    """`Bernoulli(logits=logits, validate_args=False)` without torch's `broadcast_all` of its
    one parameter (a Python pass over it that costs 8x the rest of the constructor); the
    attributes are those torch's constructor sets (a test compares them)."""
    q = Bernoulli.__new__(Bernoulli)
    q.logits = q._param = logits
    Distribution.__init__(q, logits.shape, validate_args=False)
    return q


def normal(loc: Tensor, scale: Tensor) -> Normal:
    """`Normal(loc, scale, validate_args=False)`, without torch's `broadcast_all` where the two
    already have one shape (the amortized posteriors); otherwise torch's constructor."""
    if loc.shape != scale.shape:
        return Normal(loc, scale, validate_args=False)
    q = Normal.__new__(Normal)
    q.loc, q.scale = loc, scale
    Distribution.__init__(q, loc.shape, validate_args=False)
    return q


def detached(q: Distribution) -> Distribution:
    """`q` rebuilt from detached parameters: its log_prob then carries no gradient to them."""
    if isinstance(q, Independent):
        return Independent(detached(q.base_dist), q.reinterpreted_batch_ndims,
                           validate_args=False)
    if type(q) is Normal:
        return normal(q.loc.detach(), q.scale.detach())
    if isinstance(q, OneHotCategorical):
        return one_hot_categorical(q.logits.detach())
    if type(q) is Bernoulli:
        return bernoulli(q.logits.detach())
    if isinstance(q, (Bernoulli, Categorical)):
        return type(q)(logits=q.logits.detach(), validate_args=False)
    # Any other family: rebuild from whichever constructor arguments it stores.
    names = [n for n in q.arg_constraints if n in vars(q)]
    if "logits" in names and "probs" in names:
        names.remove("probs")
    return type(q)(**{n: getattr(q, n).detach() for n in names}, validate_args=False)
