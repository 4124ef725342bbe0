"""Closed-form KL divergences written with logits: broadcasting, finite and vmap-friendly.

torch's own Bernoulli and categorical KLs patch infinities in with masked in-place writes, which
neither broadcast a shared prior nor run under `torch.func.vmap`; these do both.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    OneHotCategorical,
    kl_divergence,
)


def analytic_kl(q: Distribution, p: Distribution) -> Tensor:
    """KL(q || p) summed over the event, shape = the broadcast batch shape."""
    if isinstance(q, Independent) and isinstance(p, Independent):
        kl = analytic_kl(q.base_dist, p.base_dist)
        return kl.sum(tuple(range(-q.reinterpreted_batch_ndims, 0)))
    if isinstance(q, Bernoulli) and isinstance(p, Bernoulli):
        # sum over b in {0, 1} of q(b) (log q(b) - log p(b)), with log-sigmoids of the logits.
        pq, lq1, lq0 = q.probs, F.logsigmoid(q.logits), F.logsigmoid(-q.logits)
        lp1, lp0 = F.logsigmoid(p.logits), F.logsigmoid(-p.logits)
        return pq * (lq1 - lp1) + (1 - pq) * (lq0 - lp0)
    if isinstance(q, OneHotCategorical) and isinstance(p, OneHotCategorical):
        q, p = q._categorical, p._categorical
    if isinstance(q, Categorical) and isinstance(p, Categorical):
        # torch's Categorical stores normalized logits (log-probabilities).
        return (q.logits.exp() * (q.logits - p.logits)).sum(-1)
    return kl_divergence(q, p)
