"""Small multilayer perceptrons for encoders and decoders."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def hidden_sizes(hidden: int | Sequence[int]) -> tuple[int, ...]:
    """`hidden` as a tuple: one int is one hidden layer, () is a linear map."""
    return (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)


def mlp(inputs: int, hidden: int | Sequence[int], outputs: int, activation: str = "tanh"
        ) -> nn.Sequential:
    """inputs -> hidden... -> outputs, with `activation` between layers (none after the last)."""
    if activation not in ACTIVATIONS:
        from .base import ObjectiveError

        raise ObjectiveError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    sizes = (inputs, *hidden_sizes(hidden), outputs)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
