"""The dataset ``file``: a researcher's own examples from one ``.npy``, ``.npz``, ``.pt`` or
``.csv`` file, split into train and test by the seeded split every dataset uses.

- ``.npy``: one array; ``.npz``: its one array, or the one named by the option ``array``;
- ``.pt``: a tensor saved with ``torch.save`` (or a dict of tensors: its one tensor, or the one
  named by ``array``), read with ``weights_only=True``, so nothing in the file runs;
- ``.csv``: numbers separated by commas, one example per row, with or without one header row
  (a first row that is not all numbers is the header).

The array has one row per example: ``(N, D)``, or ``(N, H, W)`` images (flattened to
``(N, H * W)``, with ``image_shape = (H, W)``); ``(N,)`` is ``N`` examples of one feature.
Booleans and integers are read as numbers; NaN and infinities are refused. The harness
binarizes examples (``binarization = "fixed"`` or ``"dynamic"``), which needs values in
``[0, 1]`` (grey levels or 0/1); ``binarization = "none"`` uses the values as they are, any real
numbers (contexts, features, rewards). Every problem is a :class:`DataError` that names the file.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from estibench.benchmarks.data.dataset import Dataset, subset_dataset
from estibench.benchmarks.data.errors import DataError

FILE_NAME = "file"
SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".pt", ".csv")


def _fail(path: Path, what: str) -> DataError:
    return DataError(f"data file {str(path)!r}: {what}")


def _one_of(path: Path, arrays: dict[str, object], array: str | None, kind: str) -> object:
    """The one array of a multi-array file, or the one named `array`."""
    names = sorted(arrays)
    if array is not None:
        if array not in arrays:
            raise _fail(path, f"has no {kind} named {array!r}; it holds {', '.join(names)} "
                              "(set [data] options.array to one of them)")
        return arrays[array]
    if len(arrays) != 1:
        held = ", ".join(names) if names else "nothing"
        raise _fail(path, f"holds {len(names)} {kind}s ({held}); name the one to read with "
                          "[data] options.array")
    return arrays[names[0]]


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise _fail(path, "holds Python objects (a pickled array); save a numeric array "
                              "(np.save of a float, int or bool array)") from None
        raise _fail(path, f"is not a .npy array: {err}") from None
    except OSError as err:
        raise _fail(path, f"cannot be read as a .npy array: {err}") from None


def _read_npz(path: Path, array: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return np.asarray(_one_of(path, {k: archive[k] for k in archive.files}, array,
                                      "array"))
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise _fail(path, f"is not an .npz (zip) archive of numeric arrays: {err}") from None


def _read_pt(path: Path, array: str | None) -> np.ndarray:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle and zip errors of every kind: the file is not a tensor
        last = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _fail(path, f"cannot be read by torch.load(weights_only=True): {last}") from None
    if isinstance(value, dict):
        value = _one_of(path, value, array, "tensor")
    if not isinstance(value, torch.Tensor):
        raise _fail(path, f"holds a {type(value).__name__}; expected a tensor (torch.save(x, "
                          "path) with x of shape (N, D)) or a dict of tensors")
    return value.detach().cpu().numpy()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> np.ndarray:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise _fail(path, f"is not a comma-separated text file: {err}") from None
    if rows and not all(_is_number(c) for c in rows[0]):
        rows = rows[1:]  # the header
        first = 2
    else:
        first = 1
    if not rows:
        raise _fail(path, "has no rows of numbers")
    width = len(rows[0])
    values = []
    for line, row in enumerate(rows, first):
        if len(row) != width:
            raise _fail(path, f"line {line} has {len(row)} columns, the first row of numbers "
                              f"{width}; every row must have as many")
        try:
            values.append([float(c) for c in row])
        except ValueError:
            bad = next(c for c in row if not _is_number(c))
            raise _fail(path, f"line {line}: {bad.strip()!r} is not a number (only the first "
                              "row may be a header)") from None
    return np.asarray(values, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def _read(path_text: str, stamp: tuple[int, int], array: str | None
          ) -> tuple[torch.Tensor, tuple[int, int]]:
    """(N, D) float32 values and the image shape, for one version (`stamp`) of the file."""
    path = Path(path_text)
    suffix = path.suffix.lower()
    if array is not None and suffix not in (".npz", ".pt"):
        raise _fail(path, f"option array = {array!r} applies to .npz and .pt files only")
    if suffix == ".npy":
        values = _read_npy(path)
    elif suffix == ".npz":
        values = _read_npz(path, array)
    elif suffix == ".pt":
        values = _read_pt(path, array)
    else:
        values = _read_csv(path)
    if values.dtype.kind not in "biuf":
        raise _fail(path, f"holds {values.dtype} values; expected numbers (float, int or bool)")
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim not in (2, 3):
        raise _fail(path, f"holds an array of shape {values.shape}; expected (N, D) examples "
                          "(or (N, H, W) images, or (N,) of one feature)")
    if values.shape[0] < 2 or math.prod(values.shape[1:]) < 1:
        raise _fail(path, f"holds an array of shape {values.shape}; expected at least 2 "
                          "examples of at least one feature (a train and a test split)")
    image_shape = (int(values.shape[1]), int(values.shape[2])) if values.ndim == 3 else (
        1, int(values.shape[1]))
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    bad = ~np.isfinite(flat)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise _fail(path, f"has {int(bad.sum())} values that are NaN or infinite (the first in "
                          f"example {row}); every value must be a finite number")
    return torch.from_numpy(flat).to(torch.float32), image_shape


def read_file(path: str | os.PathLike[str] | None, array: str | None = None
              ) -> tuple[torch.Tensor, tuple[int, int]]:
    """The examples of a data file as (N, D) float32 and their image shape (1, D) or (H, W)."""
    if path is None:
        raise DataError(f"dataset 'file' needs a path: [data] path = \"examples.npy\" (or "
                        f"--data-path), a {', '.join(SUFFIXES)} file")
    file = Path(path).expanduser()
    if not file.exists():
        raise _fail(file, f"does not exist (a relative path is read from the working "
                          f"directory, {Path.cwd()})")
    if not file.is_file():
        raise _fail(file, f"is not a file; expected a {', '.join(SUFFIXES)} file")
    if file.suffix.lower() not in SUFFIXES:
        raise _fail(file, f"has suffix {file.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if array is not None and not isinstance(array, str):
        raise _fail(file, f"option array = {array!r} must be the name of an array")
    stat = file.stat()
    values, image_shape = _read(str(file), (stat.st_mtime_ns, stat.st_size), array)
    return values.clone(), image_shape  # clone: callers may mutate


def open_file(
    split: str = "train",
    *,
    path: str | os.PathLike[str] | None = None,
    array: str | None = None,
    binarization: str = "fixed",
    threshold: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """The ``split`` part of the examples in the file at ``path`` (see the module docstring)."""
    values, image_shape = read_file(path, array)
    if binarization != "none" and values.numel() and not (
            bool((values >= 0).all()) and bool((values <= 1).all())):
        raise _fail(Path(str(path)), (
            f"values range over [{float(values.min()):g}, {float(values.max()):g}]; "
            f"binarization = {binarization!r} needs values in [0, 1] (grey levels or 0/1): "
            "rescale them, or set [data] binarization = \"none\" to use them as they are"))
    return subset_dataset(FILE_NAME, values, image_shape, split=split,
                          binarization=binarization, threshold=threshold, seed=seed,
                          test_fraction=test_fraction)


__all__ = ["FILE_NAME", "SUFFIXES", "open_file", "read_file"]
