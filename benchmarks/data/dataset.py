"""The :class:`Dataset` container, its binarization and the seeded train/test split.

Loaders in this package produce grey-level intensities in ``[0, 1]``; turning them into the binary
observations the VAE objectives model is deferred to :meth:`Dataset.binary`, so one dataset can be
binarized once (``"fixed"``) or re-sampled every epoch (``"dynamic"``). ``"none"`` keeps the values
as they are, any finite real numbers (a researcher's own features, read by the ``file`` dataset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from estibench.benchmarks.data.errors import DataError

SPLITS: tuple[str, ...] = ("train", "test")
BINARIZATIONS: tuple[str, ...] = ("fixed", "dynamic", "none")


def check_split(split: object) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise :class:`DataError`."""
    if split not in SPLITS:
        raise DataError(f"split={split!r} is not allowed; expected one of {', '.join(SPLITS)}")
    return str(split)


def check_binarization(binarization: object) -> str:
    """Return ``binarization`` if it is ``"fixed"``, ``"dynamic"`` or ``"none"``, else raise."""
    if binarization not in BINARIZATIONS:
        raise DataError(
            f"binarization={binarization!r} is not allowed; "
            f"expected one of {', '.join(BINARIZATIONS)}"
        )
    return str(binarization)


def check_open_unit(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a real number strictly inside ``(0, 1)``, else raise.

    Used for ``threshold`` and ``test_fraction``: both endpoints would make the result degenerate
    (all-zero/all-one images, or an empty split).
    """
    # bool is an int subclass, but threshold=True is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{field}={value!r} is not a number; expected a float in (0, 1)")
    number = float(value)
    if not (0.0 < number < 1.0):  # also rejects NaN
        raise DataError(f"{field}={value!r} is out of range; expected a float strictly in (0, 1)")
    return number


def check_int(field: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``, else raise :class:`DataError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{field}={value!r} is not an integer; expected an int >= {minimum}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise DataError(f"{field}={value!r} is out of range; expected an int >= {minimum}{upper}")
    return value


def split_indices(
    num_examples: int, *, seed: int, test_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(num_examples)`` into disjoint train and test index sets.

    The permutation comes from a private ``torch.Generator`` seeded with ``seed``, so the split is a
    pure function of ``(num_examples, seed, test_fraction)`` and never touches global RNG state.
    ``round(num_examples * test_fraction)`` examples (clamped so neither side is empty) go to test.

    Returns:
        ``(train, test)``: int64 tensors of shapes ``(num_examples - n_test,)`` and ``(n_test,)``,
        each sorted ascending so subsets keep the source order.
    """
    check_int("num_examples", num_examples, minimum=2)
    check_int("seed", seed, minimum=0)
    fraction = check_open_unit("test_fraction", test_fraction)
    num_test = min(max(round(num_examples * fraction), 1), num_examples - 1)
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(num_examples, generator=generator)
    test = permutation[:num_test].sort().values
    train = permutation[num_test:].sort().values
    return train, test


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset, held as grey levels plus how to binarize them.

    ``eq=False`` because field-wise ``==`` on tensors is ambiguous; identity equality is kept.

    Attributes:
        name: registry name, e.g. ``"digits"``.
        split: ``"train"`` or ``"test"``.
        intensities: ``(N, D)`` float32 grey levels in ``[0, 1]`` (with binarization ``"none"``:
            any finite values); ``D = prod(image_shape)``.
        image_shape: ``(height, width)`` for reshaping a row into an image.
        binarization: ``"fixed"`` (threshold once), ``"dynamic"`` (Bernoulli draw per call) or
            ``"none"`` (the values as they are).
        threshold: cut-off in ``(0, 1)`` for fixed binarization; pixels strictly above it are 1.
        true_log_likelihood: ``(N,)`` float64 exact ``log p(x)`` of each binary example under the
            generating model (synthetic data only), else ``None``.
    """

    name: str
    split: str
    intensities: torch.Tensor
    image_shape: tuple[int, int]
    binarization: str = "fixed"
    threshold: float = 0.5
    true_log_likelihood: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_split(self.split)
        check_binarization(self.binarization)
        check_open_unit("threshold", self.threshold)
        x = self.intensities
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.float32:
            found = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x)
            raise DataError(f"intensities is {found}; expected a 2-D float32 tensor (N, D)")
        if len(self.image_shape) != 2 or math.prod(self.image_shape) != x.shape[1]:
            raise DataError(
                f"image_shape={self.image_shape!r} does not match intensities with D={x.shape[1]}; "
                "expected (height, width) with height * width == D"
            )
        if self.binarization == "none":
            if x.numel() and not bool(torch.isfinite(x).all()):
                raise DataError(f"intensities of {self.name!r} hold NaN or infinite values; "
                                "expected finite numbers")
        elif x.numel() and not (bool((x >= 0).all()) and bool((x <= 1).all())):
            raise DataError(
                f"intensities of {self.name!r} range over [{float(x.min())}, {float(x.max())}]; "
                "expected grey levels in [0, 1]"
            )
        ll = self.true_log_likelihood
        if ll is not None and (not isinstance(ll, torch.Tensor) or ll.shape != (x.shape[0],)):
            found = tuple(ll.shape) if isinstance(ll, torch.Tensor) else type(ll)
            raise DataError(
                f"true_log_likelihood has shape {found}; expected ({x.shape[0]},), one per example"
            )

    @property
    def num_features(self) -> int:
        """``D``, the number of pixels per example."""
        return int(self.intensities.shape[1])

    def __len__(self) -> int:
        """``N``, the number of examples."""
        return int(self.intensities.shape[0])

    def binary(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary observations, ``(N, D)`` float32 of 0./1.

        ``"fixed"``: ``intensities > threshold`` (deterministic, ``generator`` unused).
        ``"dynamic"``: a fresh ``Bernoulli(intensities)`` draw from ``generator`` on every call, so
        the runner gets a new binarization each epoch (the standard dynamic-MNIST protocol).
        ``"none"``: the values as they are (not binary), a copy.
        """
        if self.binarization == "none":
            return self.intensities.clone()
        if self.binarization == "fixed":
            return (self.intensities > self.threshold).to(torch.float32)
        return torch.bernoulli(self.intensities, generator=generator)


def subset_dataset(
    name: str,
    intensities: torch.Tensor,
    image_shape: tuple[int, int],
    *,
    split: str,
    binarization: str,
    threshold: float,
    seed: int,
    test_fraction: float,
    true_log_likelihood: torch.Tensor | None = None,
) -> Dataset:
    """Build the ``split`` part of a dataset with no official split via :func:`split_indices`.

    Args:
        intensities: ``(N, D)`` float32 grey levels of the whole dataset.
        true_log_likelihood: optional ``(N,)`` values, subset with the same indices.
    """
    train, test = split_indices(intensities.shape[0], seed=seed, test_fraction=test_fraction)
    index = train if check_split(split) == "train" else test
    return Dataset(
        name=name,
        split=split,
        intensities=intensities[index],
        image_shape=image_shape,
        binarization=binarization,
        threshold=threshold,
        true_log_likelihood=None if true_log_likelihood is None else true_log_likelihood[index],
    )
