"""The dataset ``file``: a researcher's examples from .npy, .npz, .pt and .csv files, split like
every dataset, binarized or (binarization "none") used as they are; every bad file is a
`DataError` naming the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from estibench.benchmarks.data import DataError, Dataset, open_dataset

VALUES = np.random.default_rng(0).random((10, 3))  # grey levels in [0, 1)


def _both(path: Path, **options: object) -> tuple[Dataset, Dataset]:
    return (open_dataset("file", "train", path=path, **options),
            open_dataset("file", "test", path=path, **options))


def _assert_split_of(train: Dataset, test: Dataset, values: np.ndarray) -> None:
    got = torch.cat([train.intensities, test.intensities]).double()
    assert len(train) + len(test) == len(values) and len(test) == 2
    expected = torch.from_numpy(values.reshape(len(values), -1)).float().double()
    # the seeded split reorders: compare as sets of rows
    assert torch.equal(got[got[:, 0].argsort()], expected[expected[:, 0].argsort()])


def _write(path: Path, values: np.ndarray) -> Path:
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, values)
    elif suffix == ".npz":
        np.savez(path, examples=values)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(values), path)
    else:
        lines = ["a,b,c"] + [",".join(f"{v:.17g}" for v in row) for row in values]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".csv"])
def test_each_format_reads_the_examples(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"x{suffix}", VALUES)
    train, test = _both(path)
    _assert_split_of(train, test, VALUES)
    assert train.name == "file" and train.image_shape == (1, 3)
    assert set(train.binary().unique().tolist()) <= {0.0, 1.0}


def test_csv_without_header_and_named_arrays(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(",".join(map(str, row)) for row in VALUES) + "\n")
    _assert_split_of(*_both(plain), VALUES)
    archive = tmp_path / "two.npz"
    np.savez(archive, contexts=VALUES, labels=np.arange(10))
    _assert_split_of(*_both(archive, array="contexts"), VALUES)
    tensors = tmp_path / "two.pt"
    torch.save({"contexts": torch.from_numpy(VALUES), "other": torch.zeros(2)}, tensors)
    _assert_split_of(*_both(tensors, array="contexts"), VALUES)
    images = tmp_path / "images.npy"
    np.save(images, VALUES.reshape(10, 1, 3).repeat(2, 1))  # (N, 2, 3) images
    train, _ = _both(images)
    assert train.image_shape == (2, 3) and train.num_features == 6


def test_binarization_none_keeps_any_real_values(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(size=(10, 3)) * 5
    path = _write(tmp_path / "contexts.npy", values)
    train, test = _both(path, binarization="none")
    _assert_split_of(train, test, values)
    assert torch.equal(train.binary(), train.intensities)
    with pytest.raises(DataError) as info:
        _both(path)
    for fragment in (str(path), "values range over", "binarization = 'fixed' needs values in "
                     "[0, 1]", 'binarization = "none"'):
        assert fragment in str(info.value)


@pytest.mark.parametrize(("name", "write", "options", "fragments"), [
    ("missing.npy", None, {}, ["missing.npy", "does not exist", "working directory"]),
    ("x.txt", lambda p: p.write_text("1,2\n"), {}, ["x.txt", "suffix '.txt'", ".csv"]),
    ("ragged.csv", lambda p: p.write_text("a,b\n1,2\n3\n"), {},
     ["ragged.csv", "line 3 has 1 columns", "2"]),
    ("words.csv", lambda p: p.write_text("a,b\n1,2\n3,x\n"), {},
     ["words.csv", "line 3", "'x' is not a number"]),
    ("empty.csv", lambda p: p.write_text("a,b\n"), {}, ["empty.csv", "no rows of numbers"]),
    ("nan.npy", lambda p: np.save(p, np.array([[0.1, np.nan], [0.2, 0.3]])), {},
     ["nan.npy", "1 values that are NaN or infinite", "example 0"]),
    ("one.npy", lambda p: np.save(p, np.zeros((1, 3))), {}, ["one.npy", "at least 2 examples"]),
    ("deep.npy", lambda p: np.save(p, np.zeros((2, 2, 2, 2))), {},
     ["deep.npy", "shape (2, 2, 2, 2)", "(N, D)"]),
    ("objects.npy", lambda p: np.save(p, np.array([{"a": 1}, None]), allow_pickle=True), {},
     ["objects.npy", "Python objects"]),
    ("strings.npy", lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), {},
     ["strings.npy", "expected numbers"]),
    ("two.npz", lambda p: np.savez(p, a=np.zeros((2, 2)), b=np.zeros((2, 2))), {},
     ["two.npz", "holds 2 arrays (a, b)", "options.array"]),
    ("named.npz", lambda p: np.savez(p, a=np.zeros((2, 2))), {"array": "b"},
     ["named.npz", "no array named 'b'", "holds a"]),
    ("fake.npz", lambda p: p.write_text("not a zip"), {}, ["fake.npz", "not an .npz"]),
    ("fake.pt", lambda p: p.write_text("not a tensor"), {}, ["fake.pt", "torch.load"]),
    ("list.pt", lambda p: torch.save([1, 2], p), {}, ["list.pt", "holds a list", "tensor"]),
    ("option.npy", lambda p: np.save(p, np.zeros((2, 2))), {"array": "a"},
     ["option.npy", "array = 'a' applies to .npz and .pt files only"]),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, name, write, options,
                                                 fragments: list[str]) -> None:
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(DataError) as info:
        open_dataset("file", "train", path=path, **options)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_a_path_is_required_and_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"needs a path.*\[data\] path"):
        open_dataset("file")
    with pytest.raises(DataError, match="unknown option arary.*did you mean 'array'"):
        open_dataset("file", path=tmp_path / "x.npy", arary="x")
    with pytest.raises(DataError, match="binarization='otsu'.*none"):
        open_dataset("file", path=tmp_path / "x.npy", binarization="otsu")
