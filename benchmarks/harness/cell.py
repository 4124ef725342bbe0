"""One cell of a suite: train an objective with an estimator and measure it at checkpoints.

`run_cell(spec, device)` is a plain top-level function of picklable arguments so that every
executor (in-process, process pool, Dask) can ship it; it never raises for a failing cell: the
failure (NaN loss or gradient, an exception) comes back as a `CellResult` with status "failed"
and the reason, and the run goes on. Everything in a cell is deterministic from its seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import traceback
from typing import Any

import torch

from estibench import estimators
from estibench.benchmarks import metrics
from estibench.benchmarks.data.cache import open_data
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.harness.temperature import follow_schedule
from estibench.benchmarks.harness.time_limit import TimeLimitExceeded, time_limit
from estibench.benchmarks.objectives import LatentVariableModel
from estibench.benchmarks.results.store import CellResult, cell_key
from estibench.benchmarks.suites.schema import ReferenceSpec

Row = tuple[int, str, float]


class CellFailure(RuntimeError):
    """A cell that cannot go on (non-finite loss or gradient): the message is the reason."""


def resolve_device(device: str, check_available: bool = True) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error (unless
    `check_available` is False: the spelling alone is checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if check_available and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU")
    return torch.device(device)


def _grad_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor | None:
    """The gradients' total norm as a tensor on their device (no host synchronisation), or
    None without gradients."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))


class _FiniteCheck:
    """The training loss and aux_loss of each step, and its gradient norm, kept on their
    device and checked for a non-finite value only where the loop reads the device anyway (a
    log step, a checkpoint, the end, a failed backward pass): one host synchronisation there
    instead of three per step. The error names the first step with a non-finite value, the
    loss before the gradient, as a check after every step would (the steps after it ran on,
    on the way to the check, and the cell fails all the same)."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, torch.Tensor]] = []
        self.norms: list[tuple[int, torch.Tensor]] = []

    def note_loss(self, step: int, loss: torch.Tensor, aux: torch.Tensor | None) -> None:
        held = loss.detach()
        self.losses.append((step, held.expand(2) if aux is None
                            else torch.stack([held, aux.detach()])))

    def note_gradient(self, step: int, norm: torch.Tensor | None) -> None:
        if norm is not None:
            self.norms.append((step, norm))

    def check(self) -> None:
        """Raise `CellFailure` for the first non-finite value noted since the last check."""
        losses, norms, self.losses, self.norms = self.losses, self.norms, [], []
        if not losses and not norms:
            return
        loss_values = torch.stack([v for _, v in losses]) if losses else None
        norm_values = torch.stack([v for _, v in norms]) if norms else None
        finite = [torch.isfinite(loss_values).all(1)] if loss_values is not None else []
        if norm_values is not None:
            finite.append(torch.isfinite(norm_values).to(finite[0].device if finite else
                                                          norm_values.device))
        flags = torch.cat(finite).tolist()  # the one synchronisation
        if all(flags):
            return
        loss_flags, norm_flags = flags[:len(losses)], flags[len(losses):]
        bad_loss = next((i for i, ok in enumerate(loss_flags) if not ok), None)
        bad_norm = next((i for i, ok in enumerate(norm_flags) if not ok), None)
        if bad_loss is not None and (bad_norm is None
                                     or losses[bad_loss][0] <= norms[bad_norm][0]):
            assert loss_values is not None
            row = loss_values[bad_loss]
            value = float(row[~torch.isfinite(row)][0])
            raise CellFailure(f"non-finite loss ({value}) at training step "
                              f"{losses[bad_loss][0]}")
        assert bad_norm is not None and norm_values is not None
        raise CellFailure(f"non-finite gradient (norm {float(norm_values[bad_norm])}) at "
                          f"training step {norms[bad_norm][0]}")


def _optimizer(name: str, parameters: list[torch.nn.Parameter], lr: float
               ) -> torch.optim.Optimizer | None:
    """Adam or SGD over `parameters`, or None when there are none."""
    optimizer_cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    return optimizer_cls(parameters, lr=lr) if parameters else None


class _Cell:
    def __init__(self, spec: CellSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.rows: list[Row] = []
        torch.manual_seed(spec.seed)
        self.objective = spec.build_objective()
        self.objective.to(device)
        self.estimator = spec.estimator.build()
        self.estimator.to(device)
        if spec.trains_with_the_measured_estimator():
            self.trainer = self.estimator
        else:
            self.trainer = spec.trainer.build()
            self.trainer.to(device)
        # A toy reads no data (no example input); only latent-variable models have bounds.
        self.is_toy = self.objective.example_input() is None
        self.has_bounds = isinstance(self.objective, LatentVariableModel)
        train, test = open_data(spec.data)
        self.train_set = train
        self.generator = torch.Generator().manual_seed(spec.seed)
        test_x = test.binary(torch.Generator().manual_seed(spec.seed)).to(device)
        m = spec.metrics
        self.eval_batch = None if self.is_toy else test_x[: m.eval_batch_size]
        self.held_out = None if self.is_toy else test_x[: m.bounds_examples]

    def record(self, step: int, name: str, value: float) -> None:
        self.rows.append((step, name, float(value)))

    def batches(self):
        """Training batches forever: a fresh permutation (and binarization) each epoch."""
        batch_size = self.spec.training.batch_size
        while True:
            x = self.train_set.binary(self.generator).to(self.device)
            order = torch.randperm(len(x), generator=self.generator).to(self.device)
            for i in range(0, len(x) - batch_size + 1, batch_size):
                yield x[order[i : i + batch_size]]

    def measure(self, step: int) -> None:
        m, S = self.spec.metrics, self.spec.num_samples
        follow_schedule(self.estimator, self.spec.estimator.temperature, step)
        groups = self.objective.parameter_groups()
        for wrt in m.wrt:
            if wrt != "distribution" and not groups.get(wrt):
                continue  # toys have no networks
            reference = self.reference(step, wrt)
            stats = metrics.gradient_stats(
                self.objective, self.estimator, self.eval_batch, replicas=m.replicas_setting(),
                num_samples=S, wrt=wrt, seed=self.spec.seed * 100_003 + step,
                reference=reference,
            )
            for name, value in stats.as_dict().items():
                self.record(step, f"grad/{wrt}/{name}", value)
            if reference is not None:
                self.record(step, f"grad/{wrt}/reference_replicas", reference.replicas)
            # 0: the estimator draws its own random numbers and ran in the loop (slower)
            self.record(step, f"grad/{wrt}/vectorized", float(stats.method == "vectorized"))
        if self.objective.has_exact:
            with torch.no_grad():
                x = self.held_out
                self.record(step, "test/exact_objective", self.objective.exact(x).mean())
        if m.bounds and self.has_bounds:
            result = metrics.bounds(self.objective, self.held_out, ks=tuple(m.iwae_ks),
                                    seed=self.spec.seed)
            for name, value in result.as_dict().items():
                self.record(step, f"test/{name}", value)

    def reference(self, step: int, wrt: str) -> metrics.ReferenceGradient | None:
        """The reference gradient at this checkpoint when the suite asks for one (see
        `MetricsSpec.reference`); cells that share the checkpoint (same objective, trainer,
        seed and parameters) share it within a process."""
        setting = self.spec.metrics.reference
        if not isinstance(setting, ReferenceSpec):
            return None
        # The IWAE-K bound's gradient depends on K: its reference keeps the cell's S.
        iwae = getattr(self.objective, "bound", "elbo") == "iwae"
        num_samples = self.spec.num_samples if iwae else setting.num_samples
        key = (self.spec.objective_name, json.dumps(self.spec.objective_options, sort_keys=True),
               json.dumps(setting.model_dump(), sort_keys=True), num_samples, step, wrt,
               self.spec.seed, _fingerprint(self.objective, self.eval_batch))
        if key not in _REFERENCES:
            if len(_REFERENCES) >= 64:
                _REFERENCES.clear()
            estimator = estimators.get(setting.estimator, **setting.options)
            estimator.to(self.device)
            estimator.eval()
            _REFERENCES[key] = metrics.reference_gradient(
                self.objective, estimator, self.eval_batch, replicas=setting.replicas,
                num_samples=num_samples, wrt=wrt,  # type: ignore[arg-type]
                seed=self.spec.seed * 100_003 + step + 7_919)
        return _REFERENCES[key]

    def train(self) -> None:
        cfg = self.spec.training
        steps, S = cfg.steps, self.spec.trainer_num_samples
        checkpoints = {steps if c == -1 else c for c in self.spec.metrics.checkpoints}
        parameters = list(self.objective.parameters())
        optimizer = _optimizer(cfg.optimizer, parameters, cfg.learning_rate)
        # The estimator's own parameters: their own optimizer, trained from aux_loss alone.
        own_cfg = self.spec.trainer_training
        with torch.no_grad():
            self.trainer.prepare(self.objective.posterior(self.eval_batch))
        own = list(self.trainer.parameters())
        own_optimizer = _optimizer(
            own_cfg.get("optimizer", "adam"), own,
            own_cfg.get("learning_rate") or self.trainer.aux_learning_rate(cfg.learning_rate))
        batches = None if self.is_toy else self.batches()
        # compile: the forward (objective and estimator) compiled once; a temperature schedule
        # changes a guarded float, so it recompiles (and falls back to eager past dynamo's
        # recompile limit).
        estimate = (torch.compile(self.objective.estimate, dynamic=False) if cfg.compile
                    else self.objective.estimate)
        self.trainer.train()
        started = time.perf_counter()
        finite = _FiniteCheck()
        for step in range(steps + 1):
            if step in checkpoints:
                finite.check()
                self.measure(step)
            if step == steps:
                finite.check()
                break
            follow_schedule(self.trainer, self.spec.trainer.temperature, step)
            x = None if batches is None else next(batches)
            out = estimate(x, self.trainer, S)
            loss = -out.loss.mean()
            aux = out.aux_loss.mean() if out.aux_loss is not None and own else None
            assert optimizer is not None
            for opt in (optimizer, own_optimizer):
                if opt is not None:
                    opt.zero_grad(set_to_none=True)
            finite.note_loss(step, loss, aux)
            # Separate passes: the model loss trains only the model, aux_loss only the estimator.
            try:
                loss.backward(inputs=parameters, retain_graph=aux is not None)
                if aux is not None:
                    aux.backward(inputs=own)
            except RuntimeError:
                finite.check()  # a non-finite loss is the reason to report first
                raise
            finite.note_gradient(step, _grad_norm(parameters + own))
            for opt in (optimizer, own_optimizer):
                if opt is not None:
                    opt.step()
            if step % cfg.log_every == 0 or step == steps - 1:
                finite.check()
                self.record(step, "train/objective", out.value.mean())
                self.record(step, "train/seconds", time.perf_counter() - started)
                self.record(step, "train/load_1min", metrics.machine_load()["load_1min"])

    def evaluations(self) -> int:
        """Evaluations of f per batch element in one estimate of the measured estimator (in
        eval mode: no state update)."""
        mode = self.estimator.training
        self.estimator.eval()
        try:
            return int(self.objective.estimate(self.eval_batch, self.estimator,
                                               self.spec.num_samples).evaluations)
        finally:
            self.estimator.train(mode)

    def measure_throughput(self) -> None:
        m, steps = self.spec.metrics, self.spec.training.steps
        evaluations = self.evaluations()
        self.record(steps, "estimator/evaluations", evaluations)
        variance = [v for s, n, v in self.rows
                    if s == steps and n == "grad/distribution/total_variance"]
        if variance:
            self.record(steps, "efficiency/variance_x_evaluations",
                        metrics.evaluation_normalized_variance(variance[-1], evaluations))
        if not m.throughput:
            return
        result = metrics.throughput(
            self.objective, self.estimator,
            x=None if self.is_toy else self.eval_batch,
            num_samples=self.spec.num_samples, device=str(self.device),
            min_run_time=m.throughput_min_run_time,
        )
        for name, value in result.as_dict().items():
            if isinstance(value, (int, float)):
                self.record(steps, f"time/{name}", value)
        if variance:
            self.record(steps, "efficiency/variance_x_time",
                        metrics.work_normalized_variance(variance[-1],
                                                         result.time_per_estimate))


_REFERENCES: dict[tuple[Any, ...], metrics.ReferenceGradient] = {}


def _fingerprint(objective: torch.nn.Module, x: torch.Tensor | None) -> str:
    """A hash of the objective's state and the batch: equal only at the same checkpoint."""
    digest = hashlib.sha1()
    tensors = list(objective.state_dict().values()) + ([] if x is None else [x])
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _environment() -> dict[str, Any]:
    return metrics.environment()


def run_cell(spec: CellSpec, device: str = "cpu", threads: int = 1) -> CellResult:
    """Train and measure one cell; failures come back as status 'failed' with the reason."""
    torch.set_num_threads(threads)  # one thread per cell: same numbers under every executor
    started = time.time()
    env = dict(_environment(), threads=threads)
    rows: list[Row] = []
    try:
        with time_limit(spec.time_limit, "the cell"):
            dev = resolve_device(device)
            env["device"] = str(dev)
            cell = _Cell(spec, dev)
            rows = cell.rows
            cell.train()
            cell.measure_throughput()
        status, reason = "ok", None
    except TimeLimitExceeded as err:
        status, reason = "failed", (f"{err} (the suite's cell_timeout, or --cell-timeout); "
                                    "resume runs it again")
    except CellFailure as err:
        status, reason = "failed", str(err)
    except Exception as err:  # a crashing cell must not take the run down
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        status, reason = "failed", last
    config = spec.to_json()
    return CellResult(key=cell_key(config), config=config, status=status, reason=reason,
                      started=started, finished=time.time(), environment=env,
                      metrics=rows)  # a failed cell keeps its partial curves


def failed(spec: CellSpec, reason: str) -> CellResult:
    """The record of a cell that failed before it could run (its estimator is broken)."""
    now = time.time()
    config = spec.to_json()
    return CellResult(key=cell_key(config), config=config, status="failed", reason=reason,
                      started=now, finished=now, environment={}, metrics=[])


def not_applicable(spec: CellSpec, reason: str) -> CellResult:
    """The record of a pair that does not apply (never run)."""
    now = time.time()
    config = spec.to_json()
    return CellResult(key=cell_key(config), config=config, status="not_applicable",
                      reason=reason, started=now, finished=now, environment={}, metrics=[])
