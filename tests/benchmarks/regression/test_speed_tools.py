"""The speed tools' device handling and their CPU paths at tiny sizes: the GPU table, the
compile comparison, and the CUDA branch's refusal where CUDA is missing. Nothing here checks a
timing's value."""

from __future__ import annotations

import math

import pytest
import torch

from estibench.benchmarks.regression.speed import compiled, gpu
from estibench.benchmarks.regression.speed.timing import (
    DeviceUnavailable,
    call_timer,
    device_of,
    on_device,
)

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")


@no_cuda
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable, match="CUDA is not available on this machine"):
        device_of("cuda")
    with pytest.raises(SystemExit, match="--device cpu"):
        gpu.main(["--gpu"])


def test_device_names_are_checked() -> None:
    assert device_of("cpu") == torch.device("cpu")
    with pytest.raises(DeviceUnavailable, match="not a torch device"):
        device_of("gpu0")
    with pytest.raises(DeviceUnavailable, match="'cpu' and 'cuda'"):
        device_of("meta")


def test_cpu_timer_times_a_call() -> None:
    for clock in ("cpu", "wall"):
        seconds = call_timer(torch.device("cpu"), clock)(lambda: sum(range(10_000)))
        assert seconds >= 0


def test_on_device_puts_new_tensors_there() -> None:
    with on_device(torch.device("meta")):
        assert torch.zeros(2).device.type == "meta"
    with on_device(torch.device("cpu")):
        assert torch.zeros(2).device.type == "cpu"


def test_gpu_table_runs_its_cpu_path_at_tiny_sizes(tmp_path, capsys) -> None:
    out = tmp_path / "gpu.md"
    gpu.main(["--gpu", "--device", "cpu", "--batches", "4", "--dtypes", "float32",
              "--min-run-time", "0.005", "--only", "8x8 / reinforce, S=1", "--out", str(out)])
    text = out.read_text()
    assert "| categorical 8x8 / reinforce, S=1 | 4 | float32 |" in text
    assert "--gpu --device cpu" in text and "load" in text
    row = gpu.measure(gpu.families()[0], 4, torch.float32, "cpu", 0.005)
    assert row.estimates_per_second > 0 and row.floor_per_second > 0 and not row.error
    assert math.isclose(row.ratio, row.floor_per_second / row.estimates_per_second, rel_tol=1e-9)


def test_every_estimator_has_a_gpu_family() -> None:
    from estibench.benchmarks.regression.speed.handwritten import CASES

    assert {c.estimator for c in gpu.families()} == {c.estimator for c in CASES}


def test_compiled_against_eager_runs_with_a_tracing_backend() -> None:
    rows = compiled.run(batches=(4,), min_run_time=0.005, backend="eager",
                        only="gaussian 16 / pathwise", report=lambda line: None)
    assert len(rows) == 1 and not rows[0].error
    assert rows[0].eager_ms > 0 and rows[0].compiled_ms > 0 and rows[0].compile_seconds > 0


def test_every_compile_family_is_a_handwritten_case() -> None:
    assert len(compiled.cases()) == len(compiled.FAMILIES)


def test_compiling_leaves_torchs_argument_validation_as_it_was() -> None:
    """torch's dynamo switches the default validation off at its first compile; the compile
    comparison puts it back, so what runs after it (the user's path) is timed as written."""
    from torch.distributions import Distribution

    before = Distribution._validate_args
    compiled.run(batches=(4,), min_run_time=0.005, backend="eager",
                 only="gaussian 16 / pathwise", report=lambda line: None)
    assert Distribution._validate_args == before
