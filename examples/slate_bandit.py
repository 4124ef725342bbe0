"""A slate bandit: a policy fills `slots` positions, each with one of `items` items, for a
context x, and earns a reward. Which gradient estimator trains the policy best?

The latent z is the slate: one one-hot choice per slot, z of shape (slots, items), drawn from
the policy q(z | x) = prod_l Categorical(softmax(policy(x))_l), an MLP's logits per slot.
The reward, to maximise, is linear in what is shown plus a penalty for showing an item twice:

    f(z, x) = sum_l sum_i z_li <w_li, x>  -  penalty * sum_i c_i (c_i - 1) / 2,   c_i = sum_l z_li

with fixed weights w (the environment, a buffer of the reward module, so it moves with the
objective to a GPU or float64). The policy is the only thing trained ("encoder"). The slate has
items^slots configurations (64 by default), so estibench enumerates them: the exact expected
reward and its exact gradient are the reference every estimator is measured against. f is a
polynomial in z, defined between the one-hot corners too, so the relaxed and straight-through
estimators apply (differentiable=True).

The contexts come from a file (`slate_contexts.csv`, read by the suite's [data] name = "file");
`python examples/slate_bandit.py` writes it again.

    estibench run examples/slate_bandit.toml          # from the repository's root
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributions import Independent, OneHotCategorical

import estibench


class SlateReward(nn.Module):
    """The environment: f(z, x) for slates z (S, B, slots, items) and contexts x (B, D)."""

    def __init__(self, features: int, slots: int, items: int, penalty: float, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(slots, items, features, generator=generator))
        self.penalty = float(penalty)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        value = torch.einsum("...bli,lid,bd->...b", z, self.weight.to(z.dtype), x.to(z.dtype))
        shown = z.sum(-2)  # how often each item is shown, (S, B, items)
        return value - self.penalty * (shown * (shown - 1) / 2).sum(-1)


def make_slate_bandit(features: int = 5, slots: int = 3, items: int = 4, hidden: int = 16,
                      penalty: float = 1.0, seed: int = 0) -> estibench.Model:
    """The slate bandit as an estibench Model (the factory a suite names)."""
    policy = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(),
                           nn.Linear(hidden, slots * items))
    reward = SlateReward(features, slots, items, penalty, seed)

    def posterior(x: Tensor) -> Independent:
        logits = policy(x).unflatten(-1, (slots, items))
        return Independent(OneHotCategorical(logits=logits, validate_args=False), 1)

    return estibench.Model(
        posterior=posterior,
        f=reward,                 # f(z, x): (S, B, slots, items), (B, D) -> (S, B)
        encoder=policy,           # trained, reported as "encoder"
        model=reward,             # not trained (no parameters): its buffer moves with it
        example_input=torch.zeros(1, features),
        name="slate_bandit",
    )


def write_contexts(path: Path, examples: int = 200, features: int = 5, seed: int = 1) -> None:
    """Contexts x ~ N(0, I) as a CSV with a header row."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, features, generator=generator)
    lines = [",".join(f"x{j}" for j in range(features))]
    lines += [",".join(f"{v:.4f}" for v in row.tolist()) for row in x]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(
        "slate_contexts.csv")
    write_contexts(target)
    print(f"wrote {target}")
