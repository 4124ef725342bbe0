"""Helpers over `torch.distributions` objects that every estimator and objective shares.

What a distribution is underneath (`base_of`, `describe`), log-densities computed from the
parameters without building or validating a distribution (`log_prob`, `hard_log_prob`), marks
that let a hard one-hot sample or a standard-normal prior take a shorter path, and constructors
that skip torch's per-call argument handling (`bernoulli`, `normal`, `one_hot_categorical`,
`detached`). Each fast path computes torch's own formula (a test compares them).
"""

from __future__ import annotations

import math
from typing import Any

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


def base_of(q: Distribution) -> Any:
    """The distribution inside any number of `Independent` wrappers.

    Typed `Any`: the families estimators read differ in their parameters (`logits` of
    Bernoulli and the categoricals, `loc` and `scale` of Normal), which `Distribution` does not
    declare; callers read them after `applies_to` has checked the family."""
    while isinstance(q, Independent):
        q = q.base_dist
    return q


def describe(q: Distribution) -> str:
    """A short name such as 'Independent(OneHotCategorical)' for error messages."""
    if isinstance(q, Independent):
        return f"Independent({describe(q.base_dist)})"
    return type(q).__name__


def cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """`x.to(dtype)`, without the dispatch when it already has that dtype (the common case)."""
    return x if x.dtype == dtype else x.to(dtype)


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
