"""The ``digits`` dataset: scikit-learn's bundled 8x8 handwritten digits (no download needed)."""

from __future__ import annotations

import torch

from estibench.benchmarks.data.dataset import Dataset, subset_dataset

NAME = "digits"
IMAGE_SHAPE: tuple[int, int] = (8, 8)
_MAX_GREY_LEVEL = 16.0  # the UCI digits count 0..16 set pixels per 4x4 block


def digits_intensities() -> torch.Tensor:
    """All 1797 digits as ``(1797, 64)`` float32 grey levels in ``[0, 1]``."""
    # Imported here so importing estibench.benchmarks.data stays cheap for callers that never use
    # digits.
    from sklearn.datasets import load_digits

    pixels = load_digits().data  # (1797, 64) float64 in 0..16, read from sklearn's package data
    return torch.from_numpy(pixels / _MAX_GREY_LEVEL).to(torch.float32)


def open_digits(
    split: str = "train",
    *,
    binarization: str = "fixed",
    threshold: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """The ``split`` part of ``digits`` under a ``seed``-determined train/test split.

    Returns a :class:`Dataset` with ``intensities`` of shape ``(N, 64)`` and ``image_shape (8, 8)``.
    """
    return subset_dataset(
        NAME,
        digits_intensities(),
        IMAGE_SHAPE,
        split=split,
        binarization=binarization,
        threshold=threshold,
        seed=seed,
        test_fraction=test_fraction,
    )
