"""Tests for `estibench.benchmarks.metrics.throughput`, the floor, `environment` and
`work_normalized_variance`. Timings are checked for being measured and consistent, never for
their values (speed lives in tests/benchmarks and benchmarks/regression/speed/engine.py)."""

from __future__ import annotations

import math

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.metrics import (
    MetricsError,
    ThroughputResult,
    environment,
    throughput,
    work_normalized_variance,
)
from estibench.benchmarks.metrics.floor import bare_step, plain_sample

FAST = {"min_run_time": 0.01, "warmup": 1}



def small_categorical() -> objectives.Objective:
    torch.manual_seed(0)
    return objectives.get("categorical_vae", variables=3, categories=3, hidden=16)


def assert_consistent(r: ThroughputResult) -> None:
    for name in ("time_per_estimate", "time_per_step", "floor_time"):
        value = getattr(r, name)
        assert math.isfinite(value) and value > 0, name
        assert getattr(r, f"{name}_iqr") >= 0
    assert math.isfinite(r.overhead_ratio) and r.overhead_ratio > 0
    assert r.overhead_ratio == pytest.approx(r.time_per_estimate / r.floor_time)
    assert r.estimates_per_second == pytest.approx(1 / r.time_per_estimate)
    samples = r.num_samples * r.batch_size
    assert r.samples_per_second == pytest.approx(samples / r.time_per_estimate)
    assert r.time_per_sample == pytest.approx(r.time_per_estimate / samples)
    assert r.device_name and r.torch_version == torch.__version__ and r.threads >= 1


def test_throughput_of_a_vae_on_a_given_batch() -> None:
    obj = small_categorical()
    x = (torch.rand(8, 64) < 0.5).float()
    before = {k: v.clone() for k, v in obj.state_dict().items()}
    r = throughput(obj, estimators.get("reinforce", baseline="loo"), x, num_samples=2, **FAST)
    assert_consistent(r)
    assert (r.batch_size, r.num_samples, r.device, r.dtype) == (8, 2, "cpu", "float32")
    assert r.objective == "categorical_vae" and r.estimator == "reinforce"
    assert r.peak_memory_method in ("cpu_profiler", "ru_maxrss_increase")
    if r.peak_memory_method == "cpu_profiler":
        # at least the parameters and one set of gradients are alive during a step
        params = sum(p.numel() * p.element_size() for p in obj.parameters())
        assert r.peak_memory_bytes > 2 * params
    # the optimizer stepped a copy: the caller's model is untouched, with no gradients
    for k, v in obj.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in obj.parameters())
    d = r.as_dict()
    assert {"time_per_estimate", "time_per_step", "overhead_ratio", "estimates_per_second",
            "samples_per_second", "peak_memory_bytes", "device_name", "dtype",
            "torch_version", "threads"} <= set(d)


def test_cpu_peak_memory_grows_with_the_batch() -> None:
    obj = small_categorical()
    est = estimators.get("gumbel_softmax")
    small = throughput(obj, est, batch_size=8, **FAST)
    large = throughput(obj, est, batch_size=512, **FAST)
    if small.peak_memory_method != "cpu_profiler":
        pytest.skip("the profiler's memory events are unavailable here")
    # activations alone: 512 x 2 hidden layers of 16 floats, forward and backward
    assert large.peak_memory_bytes - small.peak_memory_bytes > 504 * 2 * 16 * 4


def test_throughput_with_a_batch_size_and_float64() -> None:
    torch.manual_seed(0)
    obj = objectives.get("gaussian_vae", latent_dim=2, hidden=16)
    r = throughput(obj, estimators.get("pathwise"), batch_size=5, dtype=torch.float64,
                   optimizer="sgd", **FAST)
    assert_consistent(r)
    assert r.batch_size == 5 and r.dtype == "float64"
    assert next(obj.parameters()).dtype == torch.float32  # the caller's copy is not converted


def test_throughput_of_a_toy() -> None:
    r = throughput(objectives.get("bernoulli_toy", dims=4), estimators.get("st_gumbel"),
                   num_samples=3, memory=False, **FAST)
    assert_consistent(r)
    assert r.batch_size == 4 and math.isnan(r.peak_memory_bytes)


def test_throughput_keeps_the_global_random_state() -> None:
    state = torch.get_rng_state()
    throughput(objectives.get("gaussian_toy"), estimators.get("pathwise"), memory=False, **FAST)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_throughput_on_cuda() -> None:
    obj = small_categorical()
    r = throughput(obj, estimators.get("gumbel_softmax"), batch_size=32, device="cuda", **FAST)
    assert_consistent(r)
    assert r.device.startswith("cuda")
    assert r.device_name == torch.cuda.get_device_name(0)
    assert r.peak_memory_method == "cuda_max_memory_allocated" and r.peak_memory_bytes > 0
    assert next(obj.parameters()).device.type == "cpu"


def test_auto_device_picks_what_is_there() -> None:
    r = throughput(objectives.get("gaussian_toy"), estimators.get("pathwise"), device="auto",
                   memory=False, **FAST)
    assert r.device.startswith("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"device": "tpu"}, ["device", "'tpu'", "'cpu'", "'cuda'", "'auto'"]),
    ({"optimizer": "rmsprop"}, ["optimizer", "'rmsprop'", "'adam'", "'sgd'"]),
    ({"num_samples": 0}, ["num_samples", ">= 1"]),
    ({"min_run_time": 0}, ["min_run_time", "0"]),
    ({"dtype": torch.int64}, ["dtype", "torch.int64"]),
    ({"batch_size": 3, "x": torch.zeros(2, 64)}, ["batch_size=3", "(2, 64)"]),
])
def test_bad_arguments_raise_naming_the_field(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(MetricsError) as info:
        throughput(small_categorical(), estimators.get("reinforce"), **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(MetricsError, match="CUDA is not available"):
        throughput(objectives.get("gaussian_toy"), estimators.get("pathwise"), device="cuda")


def test_bare_step_reaches_both_networks() -> None:
    obj = small_categorical()
    x = (torch.rand(4, 64) < 0.5).float()
    bare_step(obj, x, 2)()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0)
               for p in obj.parameters())


def test_plain_samples_have_the_estimators_shapes() -> None:
    obj = small_categorical()
    x = (torch.rand(4, 64) < 0.5).float()
    q = obj.posterior(x)
    z = plain_sample(q, 5)
    assert z.shape == (5, 4, 3, 3)
    torch.testing.assert_close(z.sum(-1), torch.ones(5, 4, 3))


def test_environment_records_what_a_figure_needs() -> None:
    env = environment()
    assert {"commit", "dirty", "torch", "python", "device", "host", "threads",
            "platform"} <= set(env)
    assert env["torch"] == torch.__version__ and env["threads"] >= 1
    assert env["commit"] is None or len(env["commit"]) == 40
    assert env["dirty"] in (None, True, False)


def test_work_normalized_variance_is_invariant_to_averaging() -> None:
    assert work_normalized_variance(2.0, 0.25) == 0.5
    # averaging n estimates: variance / n, time x n -> the same efficiency
    assert work_normalized_variance(2.0 / 8, 0.25 * 8) == pytest.approx(0.5)


def test_cuda_event_timing_grows_blocks_and_takes_medians(monkeypatch) -> None:
    """The CUDA branch's block logic, with events that read the host clock (no GPU here):
    per-call seconds at least the call's known duration, n grown until a block lasts 1 ms."""
    import importlib
    import time as clock

    module = importlib.import_module("estibench.benchmarks.metrics.throughput")

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            self.at = 0.0

        def record(self) -> None:
            self.at = clock.perf_counter()

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end: Event) -> float:
            return (end.at - self.at) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", Event)
    calls = []

    def fn() -> None:
        calls.append(1)
        clock.sleep(2e-4)

    median, iqr = module._cuda_event_time(fn, min_run_time=0.01)
    assert median >= 2e-4 and iqr >= 0  # each call sleeps 0.2 ms at least
    assert len(calls) >= 5 * 10  # blocks of 10 calls at least (one call is under 1 ms)
