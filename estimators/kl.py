"""KL(q || p) of `torch.distributions` objects in closed form, without torch's masked writes.

    from estibench.estimators.kl import kl_divergence
    kl = kl_divergence(q, prior)          # as torch.distributions.kl_divergence(q, prior)

For the pairs a training loop meets every step (Normal, Bernoulli, Categorical and
OneHotCategorical against the same family, each optionally inside `Independent` with the same
number of reinterpreted dimensions on both sides) the KL is computed from the parameters by
torch's own formulas, summed once over the event. torch's Bernoulli and categorical rules patch
zero probabilities in with boolean-mask writes (`t[mask] = inf`): a data-dependent indexing per
call (a host synchronisation on a GPU), which neither broadcasts a shared prior of a smaller
shape nor runs under `torch.func.vmap`. Here the formulas broadcast, zero probabilities are
handled by `torch.where` where they can occur, and the rule for a pair of types is one
dictionary lookup. Any other pair (another family, a subclass, mixed
`Independent` wrappers) goes to `torch.distributions.kl_divergence`, which raises what it raises.

Values: those of torch wherever the probabilities are strictly between 0 and 1 (a test compares
value and gradient for each pair); a zero probability of q contributes 0 and a zero probability
of p under a positive one of q gives +inf, as in torch. A Bernoulli built from logits whose
sigmoid rounds to exactly 0 or 1 keeps the formula's finite value where torch's mask gives inf.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)
from torch.distributions import kl_divergence as torch_kl_divergence

Rule = Callable[[Distribution, Distribution], Tensor]


def _normal(q: Normal, p: Normal) -> Tensor:
    """KL(N(m_q, s_q^2) || N(m_p, s_p^2)) = (r + ((m_q - m_p) / s_p)^2 - 1 - log r) / 2 with
    r = (s_q / s_p)^2, per coordinate (torch's formula)."""
    var_ratio = (q.scale / p.scale).pow(2)
    t1 = ((q.loc - p.loc) / p.scale).pow(2)
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


def _from_probs(d: Bernoulli | Categorical) -> bool:
    """Whether `d` was built from probabilities (its parameter is `probs`; a lazily computed
    `probs`, cached by a read such as argument validation, does not count)."""
    return d._param is d.__dict__.get("probs")


def _bernoulli(q: Bernoulli, p: Bernoulli) -> Tensor:
    """sum over b in {0, 1} of q(b) (log q(b) - log p(b)), with the log-probabilities as
    softplus of the logits (torch's formula). A Bernoulli built from probabilities is read as
    torch reads it, zero and one probabilities masked as torch masks them; one built from
    logits has no exact zero or one, so no mask (where sigmoid rounds to 0 or 1 in the
    dtype, torch's mask would give inf, this the finite value of the formula)."""
    q_probs, q_logits, p_logits = q.probs, q.logits, p.logits
    one = q_probs * (F.softplus(-p_logits) - F.softplus(-q_logits))
    zero = (1 - q_probs) * (F.softplus(p_logits) - F.softplus(q_logits))
    if _from_probs(p):
        one = torch.where(p.probs == 0, math.inf, one)
        zero = torch.where(p.probs == 1, math.inf, zero)
    if _from_probs(q):
        one = torch.where(q_probs == 0, 0.0, one)
        zero = torch.where(q_probs == 1, 0.0, zero)
    return one + zero


def _categorical(q: Categorical, p: Categorical) -> Tensor:
    """The terms q_k (log q_k - log p_k) of the KL, per category k (the last dimension).
    torch's Categorical keeps its logits normalized (log-probabilities), so for one built from
    logits q_k = exp(logits_k), one exp where `probs` is a softmax; one built from
    probabilities is read as torch reads it (the given probabilities, the logits of the clamped
    ones). A zero q_k contributes 0; a zero p_k under a positive q_k gives +inf."""
    q_logits = q.logits
    q_probs = q.probs if _from_probs(q) else q_logits.exp()
    terms = q_probs * (q_logits - p.logits)
    if _from_probs(p):  # its logits are those of clamped probabilities: finite
        terms = torch.where(p.probs == 0, math.inf, terms)
    return torch.where(q_probs == 0, 0.0, terms)  # summed over k by `kl_divergence`


def _one_hot_categorical(q: OneHotCategorical, p: OneHotCategorical) -> Tensor:
    return _categorical(q._categorical, p._categorical)


RULES: dict[tuple[type, type], tuple[Rule, int]] = {
    (Normal, Normal): (_normal, 0),  # type: ignore[dict-item]
    (Bernoulli, Bernoulli): (_bernoulli, 0),  # type: ignore[dict-item]
    (Categorical, Categorical): (_categorical, 1),  # type: ignore[dict-item]
    (OneHotCategorical, OneHotCategorical): (_one_hot_categorical, 1),  # type: ignore[dict-item]
}
"""The closed forms by exact type pair (a subclass, with its own rule in torch, falls back):
the rule's terms and how many of their trailing dimensions are summed for the KL (the
categories), in one reduction with the dimensions an `Independent` reinterprets."""

_DIMS: dict[int, tuple[int, ...]] = {}  # n summed dimensions -> (-n, ..., -1)


def kl_divergence(q: Distribution, p: Distribution) -> Tensor:
    """KL(q || p), shape = the broadcast batch shape: `torch.distributions.kl_divergence(q, p)`
    in value and gradient, computed in closed form for the pairs of `RULES` (through matching
    `Independent` wrappers) and by torch for any other pair."""
    base_q, base_p, ndims = q, p, 0
    while type(base_q) is Independent and type(base_p) is Independent:
        if base_q.reinterpreted_batch_ndims != base_p.reinterpreted_batch_ndims:
            return torch_kl_divergence(q, p)
        ndims += base_q.reinterpreted_batch_ndims
        base_q, base_p = base_q.base_dist, base_p.base_dist
    found = RULES.get((type(base_q), type(base_p)))
    if found is None:
        return torch_kl_divergence(q, p)
    rule, summed = found
    kl = rule(base_q, base_p)
    ndims += summed
    if not ndims:
        return kl
    dims = _DIMS.get(ndims)
    if dims is None:
        dims = _DIMS[ndims] = tuple(range(-ndims, 0))
    return kl.sum(dims)


__all__ = ["RULES", "kl_divergence"]
