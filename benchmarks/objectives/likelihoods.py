"""Observation models shared by the VAEs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """sum_d log Bernoulli(x_d; sigmoid(logits_d)): logits (S, B, D), x (B, D) -> (S, B)."""
    return -F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none"
    ).sum(-1)
