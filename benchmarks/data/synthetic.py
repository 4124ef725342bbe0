"""The ``synthetic`` dataset: samples from a known sigmoid belief net, so ``log p(x)`` is exact.

A benchmark can then report how far an estimator's bound or estimate is from the true
log-likelihood, which real datasets cannot offer. Exactness comes from enumerating all
``2**latent_dim`` latent configurations, hence the cap ``MAX_LATENT_DIM``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from estibench.benchmarks.data.dataset import Dataset, check_int, check_split, split_indices
from estibench.benchmarks.data.errors import DataError

NAME = "synthetic"
MAX_LATENT_DIM = 16  # 2**16 configurations: still exact in well under a second per 1000 rows
DEFAULT_LATENT_DIM = 6
DEFAULT_NUM_FEATURES = 64
DEFAULT_NUM_EXAMPLES = 2000
WEIGHT_SCALE = 2.0  # std of W: large enough that x depends strongly on z (non-trivial data)
_CHUNK_ELEMENTS = 1 << 22  # bound on the (rows, configurations) score matrix: 32 MiB in float64


def _log1p_exp(logits: torch.Tensor) -> torch.Tensor:
    """``softplus(l) = log(1 + exp(l))`` computed stably and without softplus's cut-off."""
    return torch.logaddexp(torch.zeros_like(logits), logits)


def check_latent_dim(latent_dim: object) -> int:
    """Return ``latent_dim`` if exact enumeration is affordable (1..16), else raise."""
    value = check_int("latent_dim", latent_dim, minimum=1)
    if value > MAX_LATENT_DIM:
        raise DataError(
            f"latent_dim={value} is too large: the exact log-likelihood enumerates "
            f"2**latent_dim latent configurations; expected an int in 1..{MAX_LATENT_DIM}"
        )
    return value


def latent_configurations(latent_dim: int) -> torch.Tensor:
    """All binary latent vectors, ``(2**latent_dim, latent_dim)`` float64, row ``i`` = bits of i."""
    codes = torch.arange(2**latent_dim).unsqueeze(1)
    return ((codes >> torch.arange(latent_dim)) & 1).to(torch.float64)


@dataclass(frozen=True, eq=False)
class SigmoidBeliefNet:
    """A one-layer sigmoid belief net with binary latents ``z`` and binary pixels ``x``.

    ``p(z) = prod_j Bernoulli(z_j; sigmoid(a_j))`` and
    ``p(x | z) = prod_d Bernoulli(x_d; sigmoid(W z + b)_d)``.

    Attributes:
        prior_logits: ``a``, shape ``(K,)`` float64.
        weight: ``W``, shape ``(D, K)`` float64.
        bias: ``b``, shape ``(D,)`` float64.
    """

    prior_logits: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def __post_init__(self) -> None:
        k, d = self.prior_logits.shape[-1], self.bias.shape[-1]
        if (
            self.prior_logits.shape != (k,)
            or self.bias.shape != (d,)
            or self.weight.shape != (d, k)
        ):
            raise DataError(
                f"SigmoidBeliefNet has prior_logits {tuple(self.prior_logits.shape)}, weight "
                f"{tuple(self.weight.shape)}, bias {tuple(self.bias.shape)}; "
                "expected (K,), (D, K), (D,)"
            )

    @property
    def latent_dim(self) -> int:
        """``K``, the number of binary latents."""
        return int(self.prior_logits.shape[0])

    @property
    def num_features(self) -> int:
        """``D``, the number of binary pixels."""
        return int(self.bias.shape[0])

    @classmethod
    def random(
        cls,
        latent_dim: int,
        num_features: int,
        generator: torch.Generator,
        *,
        weight_scale: float = WEIGHT_SCALE,
    ) -> SigmoidBeliefNet:
        """Draw parameters: ``a ~ N(0, 1)``, ``W ~ N(0, weight_scale**2)``, ``b`` centred.

        ``b = N(0, 1) - W @ 1 / 2`` cancels the mean of ``W z`` under ``z ~ Bernoulli(1/2)``, so
        pixels are neither almost always on nor almost always off.
        """
        check_latent_dim(latent_dim)
        check_int("num_features", num_features, minimum=1)
        f64 = torch.float64
        prior_logits = torch.randn(latent_dim, generator=generator, dtype=f64)
        weight = weight_scale * torch.randn(
            num_features, latent_dim, generator=generator, dtype=f64
        )
        bias = torch.randn(num_features, generator=generator, dtype=f64) - 0.5 * weight.sum(dim=1)
        return cls(prior_logits=prior_logits, weight=weight, bias=bias)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` examples ``x ~ p(x)`` (ancestral sampling), ``(n, D)`` float32 of 0./1."""
        check_int("n", n, minimum=0)
        prior = torch.sigmoid(self.prior_logits).expand(n, self.latent_dim)
        z = torch.bernoulli(prior, generator=generator)
        x = torch.bernoulli(torch.sigmoid(z @ self.weight.T + self.bias), generator=generator)
        return x.to(torch.float32)

    def log_marginal(self, x: torch.Tensor, *, chunk_rows: int | None = None) -> torch.Tensor:
        """Exact ``log p(x) = logsumexp_z [log p(z) + log p(x | z)]`` over all ``2**K`` ``z``.

        Args:
            x: ``(N, D)`` binary examples (any float or int dtype holding 0/1).
            chunk_rows: rows scored at once; default keeps the ``(rows, 2**K)`` matrix ~32 MiB.

        Returns:
            ``(N,)`` float64 log-likelihoods (each <= 0).
        """
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise DataError(
                f"x has shape {tuple(x.shape)}; expected (N, {self.num_features}) binary examples"
            )
        x = x.to(torch.float64)
        if not bool(((x == 0) | (x == 1)).all()):
            raise DataError("x has values other than 0 and 1; expected binary examples")
        z = latent_configurations(self.latent_dim)  # (C, K)
        # Bernoulli log-prob with logit l: x * l - log(1 + exp(l)).
        log_prior = z @ self.prior_logits - _log1p_exp(self.prior_logits).sum()  # (C,)
        logits = z @ self.weight.T + self.bias  # (C, D)
        offset = log_prior - _log1p_exp(logits).sum(dim=1)  # (C,): the x-independent terms
        rows = chunk_rows or max(1, _CHUNK_ELEMENTS // z.shape[0])
        check_int("chunk_rows", rows, minimum=1)
        parts = [torch.logsumexp(chunk @ logits.T + offset, dim=1) for chunk in x.split(rows)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def make_synthetic(
    *,
    latent_dim: int = DEFAULT_LATENT_DIM,
    num_features: int = DEFAULT_NUM_FEATURES,
    num_examples: int = DEFAULT_NUM_EXAMPLES,
    seed: int = 0,
) -> tuple[SigmoidBeliefNet, torch.Tensor]:
    """The generating model and its ``(num_examples, num_features)`` float32 0/1 samples.

    Both come from one ``torch.Generator`` seeded with ``seed``, so the pair is reproducible and
    the model behind a ``synthetic`` dataset can be rebuilt from its options.
    """
    check_latent_dim(latent_dim)
    check_int("num_features", num_features, minimum=1)
    check_int("num_examples", num_examples, minimum=2)  # both splits must be non-empty
    check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    model = SigmoidBeliefNet.random(latent_dim, num_features, generator)
    return model, model.sample(num_examples, generator)


def open_synthetic(
    split: str = "train",
    *,
    binarization: str = "fixed",
    threshold: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
    latent_dim: int = DEFAULT_LATENT_DIM,
    num_features: int = DEFAULT_NUM_FEATURES,
    num_examples: int = DEFAULT_NUM_EXAMPLES,
    model_seed: int | None = None,
) -> Dataset:
    """The ``split`` part of a synthetic dataset, with exact ``true_log_likelihood``.

    ``seed`` picks the train/test split and, unless ``model_seed`` is given, also the model and its
    samples (``model_seed`` lets several runs share one dataset while varying the split seed).
    ``intensities`` are the sampled 0/1 values, so any threshold in (0, 1) and dynamic
    binarization return them unchanged. ``image_shape`` is ``(8, 8)`` for 64 features, else
    ``(1, num_features)``.
    """
    check_split(split)
    if model_seed is not None:
        check_int("model_seed", model_seed, minimum=0)
    model, x = make_synthetic(
        latent_dim=latent_dim,
        num_features=num_features,
        num_examples=num_examples,
        seed=seed if model_seed is None else model_seed,
    )
    train, test = split_indices(num_examples, seed=seed, test_fraction=test_fraction)
    rows = x[train if split == "train" else test]
    return Dataset(
        name=NAME,
        split=split,
        intensities=rows,
        image_shape=(8, 8) if num_features == 64 else (1, num_features),
        binarization=binarization,
        threshold=threshold,
        # Only the requested rows are scored: enumeration is the costly part for large K.
        true_log_likelihood=model.log_marginal(rows),
    )
