"""The submitit executor: cells as a SLURM job array (or as processes on this machine), each
cell's result sent back to the client, which alone writes the store.

    SubmititExecutor("slurm", partition="gpu", time_min=120, mem_gb=16, gpus=1, account="lab")
    SubmititExecutor("local")  # the same path through submitit's LocalExecutor, on this machine

Tasks. Starting a task costs seconds (Python, torch) and, on SLURM, a wait in the queue, so
cells travel in groups: on SLURM, array tasks of about `task_minutes` of work each by the cost
model (`cost.rough_seconds`); on this machine, where every task starts at once,
`array_parallelism` tasks (one per core by default). Either way the groups are balanced by
cost, and one `map_array` submits them as one job array.

Settings. What a task asks for (partition, time, memory, GPUs, account, task minutes, array
parallelism) comes from the suite's `[cluster]` table, overridden by the options given here
(the command line's); both are recorded in `cluster.json`, so a resumed run asks for the same
unless told otherwise.

Files, under RUN_DIR/submitit/ (on SLURM the nodes must see the run directory: a shared
filesystem, where the store uses its rollback journal if SQLite cannot use WAL there):
- `cluster.json`: the cluster, the options given on the command line (those of every client
  of the run, the latest winning) and the settings the tasks ask for;
- `tasks.jsonl`: one line per submitted task: its job id, its cells' keys, its log;
- `jobs/`: submitit's pickles and each task's logs (`<job id>_0_log.err` and `.out`);
- `results/`: a task writes `<cell key>.running` as it starts a cell and `<cell key>.pkl`
  (the `CellResult`) as it ends it. The client collects these as they appear, passes them to
  the runner, and deletes them once stored.

Resuming. Tasks do not depend on the client: they go on if it stops or dies (local tasks
share the terminal's Ctrl-C, though), and the results of the cells they finish wait in
`results/`. The next `run` on the run directory (`estibench run
--resume`) collects those, waits for the tasks still queued or running, and submits only the
cells that no task holds.

Faults. A task that ends with cells not done (killed, out of memory or time, a crash): the cell
it was running fails with the task's log; the cells it had not started go out again in a new
task. A task that ended before it started any cell fails all its cells with its log (a node
that cannot run them: another task would not do better).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import pickle
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from estibench.benchmarks.harness.cell import failed, run_cell
from estibench.benchmarks.harness.cost import rough_seconds
from estibench.benchmarks.harness.executors.base import ExecutorError
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results import rundir
from estibench.benchmarks.results.store import COMPLETED_STATUSES, CellResult
from estibench.benchmarks.suites.schema import SLURM_NAME, ClusterSpec, error_lines

__all__ = ["CLUSTERS", "FOLDER", "OPTIONS", "SLURM_ONLY", "TASK_MINUTES", "TASK_STATES",
           "SubmititExecutor", "TaskRecord", "TaskState", "cluster_settings", "plan_tasks",
           "read_tasks", "run_task", "slurm_parameters", "task_states"]

CLUSTERS = ("local", "slurm")
TASK_MINUTES = 10.0  # SLURM: work per array task, against seconds of start-up and the queue
FOLDER = "submitit"  # RUN_DIR/submitit
LEDGER = "tasks.jsonl"
SETTINGS = "cluster.json"
JOBS = "jobs"
RESULTS = "results"
LOCAL_TIME_MIN = 7 * 24 * 60  # local tasks: no time limit worth the name
SLURM_MIN_TIME_MIN = 60  # SLURM default --time: 4 x the longest task's estimate, at least this
# The settings: [cluster] key -> (SubmititExecutor's keyword, the command line's option).
OPTIONS = {"partition": ("partition", "--partition"), "time": ("time_min", "--time"),
           "mem": ("mem_gb", "--mem"), "gpus": ("gpus", "--gpus"),
           "account": ("account", "--account"),
           "task_minutes": ("task_minutes", "--task-minutes"),
           "array_parallelism": ("array_parallelism", "--array-parallelism")}
SLURM_ONLY = ("partition", "mem", "account", "task_minutes")  # --cluster local has no use

CellFunction = Callable[[CellSpec, str], CellResult]


# --------------------------------------------------------------------------------------------
# On the node
# --------------------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_task(cells: Sequence[CellSpec], device: str, results: str,
             cell_function: CellFunction = run_cell) -> list[str]:
    """One array task: run its cells in order, each result written to `results` as it ends
    (`<key>.pkl`, after a `<key>.running` mark as it starts). Returns the keys it ran."""
    folder = Path(results)
    ran = []
    for cell in cells:
        key = cell.key
        (folder / f"{key}.running").touch()
        result = cell_function(cell, device)
        _write_atomically(folder / f"{key}.pkl", pickle.dumps(result))
        ran.append(key)
    return ran


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------


def plan_tasks(cells: Sequence[CellSpec], *, task_seconds: float | None = None,
               tasks: int | None = None) -> list[list[CellSpec]]:
    """Cells in groups, one per array task, balanced by `cost.rough_seconds`: `tasks` groups,
    or as many as it takes for about `task_seconds` of work each (one of the two); never more
    groups than cells. Each group keeps the cells' order; a cell longer than `task_seconds` is
    a group of its own."""
    if not cells:
        return []
    if (task_seconds is None) == (tasks is None):
        raise ValueError("plan_tasks needs exactly one of task_seconds and tasks")
    seconds = [max(rough_seconds(c), 0.0) for c in cells]
    if tasks is None:
        assert task_seconds is not None
        tasks = math.ceil(sum(seconds) / task_seconds) if task_seconds > 0 else len(cells)
    n = max(1, min(tasks, len(cells)))
    # Longest first into the least loaded group (LPT): within 4/3 of the best balance.
    members: list[list[int]] = [[] for _ in range(n)]
    heap = [(0.0, 0, g) for g in range(n)]  # (load, cells, group)
    for i in sorted(range(len(cells)), key=lambda i: -seconds[i]):
        load, count, g = heapq.heappop(heap)
        members[g].append(i)
        heapq.heappush(heap, (load + seconds[i], count + 1, g))
    ordered = sorted((sorted(m) for m in members if m), key=lambda m: m[0])
    return [[cells[i] for i in m] for m in ordered]


# --------------------------------------------------------------------------------------------
# The record of submitted tasks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRecord:
    """One submitted array task, as `tasks.jsonl` keeps it."""

    job_id: str
    cluster: str
    cells: list[str]  # keys, in the order the task runs them
    submitted: float
    log: str  # the task's stderr (stdout beside it, .out)


def read_tasks(run_dir: Path) -> list[TaskRecord]:
    """The tasks submitted for `run_dir`, oldest first (none: an empty list)."""
    path = Path(run_dir) / FOLDER / LEDGER
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(TaskRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as err:
            if n == len(lines):
                break  # a last line cut short by a client killed while writing it
            raise ExecutorError(f"{path} line {n} is damaged ({err}); the tasks it lists "
                                "cannot be followed: start a new run directory") from None
    return records


def _append(run_dir: Path, records: Iterable[TaskRecord]) -> None:
    path = run_dir / FOLDER / LEDGER
    text = "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write(text)
        ledger.flush()
        os.fsync(ledger.fileno())


def _local_alive(record: TaskRecord) -> bool:
    """Whether a local task's controller still runs: its job id is its pid, and its command
    line names the task's folder (a pid reused by another process is not the task)."""
    try:
        pid = int(record.job_id)
    except ValueError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: whether the pid exists is all there is
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return b"submitit" in cmdline and os.fsencode(str(Path(record.log).parent)) in cmdline


def _last_line(path: Path) -> str:
    """The last non-empty line of a log that is not submitit's own bookkeeping."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [ln.strip() for ln in lines if ln.strip() and "submitit" not in ln]
    return lines[-1][:300] if lines else ""


@dataclass
class _Task:
    """A task the client follows: its record, submitit's job (None when re-attached to a
    local task after a restart) and the keys it still owes."""

    record: TaskRecord
    job: Any
    owed: list[str]
    started_any: bool = False

    @property
    def log(self) -> Path:
        return Path(self.record.log)


# --------------------------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------------------------


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as err:
        raise ExecutorError("--executor submitit needs submitit: pip install 'estibench[cluster]' "
                            f"(or pip install submitit) ({err})") from None
    return submitit


def _check_name(option: str, value: str | None) -> None:
    if value is not None and not SLURM_NAME.match(value):
        raise ExecutorError(f"{option} must be a SLURM name (letters, digits, '_', '.', '-'; "
                            f"comma-separated for several), got {value!r}")


def _slurm_partitions() -> list[str] | None:
    """The partitions `sinfo` lists, or None if it cannot say."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted({p.strip().rstrip("*") for p in out.split() if p.strip()})


def cluster_settings(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What RUN_DIR/submitit/cluster.json records: {"cluster": "slurm" | "local",
    "command_line": the options given, "settings": what the tasks ask for} (both keyed as in
    [cluster]), or None for a run that did not use the submitit executor."""
    path = Path(run_dir) / FOLDER / SETTINGS
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExecutorError(f"{str(path)!r} cannot be read ({err}); give the cluster options "
                            "again and remove it") from None
    try:
        if raw.get("cluster") not in CLUSTERS:
            raise ValueError(f"cluster must be one of {', '.join(CLUSTERS)}")
        for part in ("command_line", "settings"):
            ClusterSpec.model_validate(raw.get(part, {}))
    except (AttributeError, ValueError) as err:
        why = "; ".join(error_lines(err)) if hasattr(err, "errors") else str(err)
        raise ExecutorError(f"{str(path)!r} is damaged ({why}); give the cluster options "
                            "again and remove it") from None
    return raw


class SubmititExecutor:
    """Cells as array tasks through submitit: on SLURM (`cluster="slurm"`, run where `sbatch`
    works, a login node) or as processes here (`cluster="local"`).

    partition, account: SLURM's; time_min: each task's limit in minutes (SLURM default: four
        times the longest task's estimate, at least an hour); mem_gb: memory per task; gpus:
        GPUs per task (local default: the GPUs this machine shows when the device may use
        them).
    task_minutes: SLURM: minutes of estimated work per array task (default TASK_MINUTES).
    array_parallelism: tasks running at once: SLURM's `%N` limit of the array; locally the
        number of tasks (default: this machine's cores).
    folder: the directory whose submitit/ folder keeps the files when `attach` is not called
        (the runner attaches the run directory).
    poll_interval: seconds between looks at the results and the tasks.
    cell_function: what runs one cell on the node, a top-level function with `run_cell`'s
        signature; tests substitute a faulty one.
    """

    def __init__(
        self,
        cluster: str = "local",
        *,
        partition: str | None = None,
        time_min: float | None = None,
        mem_gb: float | None = None,
        gpus: int | None = None,
        account: str | None = None,
        task_minutes: float | None = None,
        array_parallelism: int | None = None,
        folder: str | os.PathLike[str] | None = None,
        poll_interval: float = 1.0,
        cell_function: CellFunction = run_cell,
    ) -> None:
        if cluster not in CLUSTERS:
            raise ExecutorError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
        if poll_interval <= 0:
            raise ExecutorError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        given = {"partition": partition, "time": time_min, "mem": mem_gb, "gpus": gpus,
                 "account": account, "task_minutes": task_minutes,
                 "array_parallelism": array_parallelism}
        self.given = {k: v for k, v in given.items() if v is not None}
        self.cluster = cluster
        self.local = cluster == "local"  # cells run on this machine: the client checks device
        self._configure(self.given)
        if self.local:
            for key in SLURM_ONLY:
                if key in self.given:
                    raise ExecutorError(f"{OPTIONS[key][1]} applies to --cluster slurm; "
                                        "--cluster local runs --array-parallelism tasks on "
                                        "this machine")
        self.submitit = _submitit()
        if cluster == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
            raise ExecutorError("--cluster slurm needs SLURM's commands (sbatch, srun, "
                                "sacct) on this machine: run estibench on a login node of "
                                "the cluster, or try --cluster local")
        self._check_partition(partition, "--partition")
        self.poll_interval = poll_interval
        self.cell_function = cell_function
        self.run_dir: Path | None = Path(folder) if folder is not None else None

    def _configure(self, settings: dict[str, Any], where: str | None = None) -> None:
        """Check the settings (keyed as in [cluster]) and take them; `where` names their
        source in errors (default: the command line's options)."""
        def name(key: str) -> str:
            return OPTIONS[key][1] if where is None else f"{key} ({where})"

        for key in ("time", "mem", "task_minutes"):
            value = settings.get(key)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ExecutorError(f"{name(key)} must be a number > 0, got {value}")
        if (gpus := settings.get("gpus")) is not None and gpus < 0:
            raise ExecutorError(f"{name('gpus')} must be >= 0, got {gpus}")
        if (parallel := settings.get("array_parallelism")) is not None and parallel < 1:
            raise ExecutorError(f"{name('array_parallelism')} must be >= 1, got {parallel}")
        for key in ("partition", "account"):
            _check_name(name(key), settings.get(key))
        self.partition, self.account = settings.get("partition"), settings.get("account")
        self.time_min, self.mem_gb = settings.get("time"), settings.get("mem")
        self.gpus = settings.get("gpus")
        self.task_minutes = settings.get("task_minutes")
        self.array_parallelism = settings.get("array_parallelism")

    def _check_partition(self, partition: str | None, option: str) -> None:
        if self.cluster != "slurm" or partition is None:
            return
        known = _slurm_partitions()
        unknown = [p for p in partition.split(",") if known is not None and p not in known]
        if unknown:
            raise ExecutorError(f"{option} {unknown[0]!r} is not a partition of this "
                                f"cluster; sinfo lists: {', '.join(known or [])}")

    # -- the run directory ------------------------------------------------------------------

    def attach(self, run_dir: str | os.PathLike[str]) -> None:
        """Keep the job files, the task records and the results in RUN_DIR/submitit, and ask
        for what the run's `[cluster]` table says, overridden by the options given here and by
        earlier clients of the run (recorded in RUN_DIR/submitit/cluster.json)."""
        self.run_dir = Path(run_dir)
        table = rundir.stored_cluster(self.run_dir).model_dump(exclude_none=True)
        recorded = cluster_settings(self.run_dir) or {}
        earlier = recorded.get("command_line", {}) if recorded.get("cluster") == self.cluster \
            else {}  # options given for another cluster do not carry over
        command_line = {**earlier, **self.given}
        settings = {**table, **command_line}
        if self.local:
            settings = {k: v for k, v in settings.items() if k not in SLURM_ONLY}
        where = f"the run's [cluster] table, or {SETTINGS}"
        self._configure(settings, where)
        if "partition" not in self.given:  # the suite's or an earlier client's
            self._check_partition(self.partition, f"partition ({where})")
        base, _, _ = self._folders()
        text = json.dumps({"cluster": self.cluster, "command_line": command_line,
                           "settings": settings}, indent=2, sort_keys=True)
        try:
            _write_atomically(base / SETTINGS, text.encode())
        except OSError as err:
            raise ExecutorError(f"cannot write {str(base / SETTINGS)!r}: "
                                f"{err.strerror or err}") from None

    def _folders(self) -> tuple[Path, Path, Path]:
        if self.run_dir is None:
            raise ExecutorError("the submitit executor needs a folder for its jobs: run it "
                                "through estibench.run (the run directory) or give folder=")
        base = self.run_dir / FOLDER
        jobs, results = base / JOBS, base / RESULTS
        try:
            jobs.mkdir(parents=True, exist_ok=True)
            results.mkdir(exist_ok=True)
        except OSError as err:
            raise ExecutorError(f"cannot write the job files in {str(base)!r}: "
                                f"{err.strerror or err}") from None
        return base, jobs, results

    # -- submitting ---------------------------------------------------------------------------

    def _groups(self, cells: list[CellSpec]) -> list[list[CellSpec]]:
        if self.local:
            tasks = self.array_parallelism or len(os.sched_getaffinity(0))
            return plan_tasks(cells, tasks=tasks)
        return plan_tasks(cells, task_seconds=(self.task_minutes or TASK_MINUTES) * 60)

    def _executor(self, jobs: Path, groups: list[list[CellSpec]], device: str) -> Any:
        if self.local:
            executor = self.submitit.LocalExecutor(folder=jobs)
            gpus = self.gpus
            if gpus is None:
                gpus = _visible_gpus() if device != "cpu" else 0
            visible = _cuda_visible_devices()
            parameters: dict[str, Any] = {
                "timeout_min": math.ceil(self.time_min or LOCAL_TIME_MIN), "gpus_per_node": gpus}
            if visible is not None and gpus:
                parameters["visible_gpus"] = visible
            executor.update_parameters(**parameters)
            return executor
        longest = max(sum(rough_seconds(c) for c in g) for g in groups) / 60
        time_min = self.time_min or max(SLURM_MIN_TIME_MIN, 4 * longest)
        executor = self.submitit.SlurmExecutor(folder=jobs)
        executor.update_parameters(**slurm_parameters(
            time_min=time_min, partition=self.partition, mem_gb=self.mem_gb,
            gpus=self.gpus, account=self.account, array_parallelism=self.array_parallelism))
        return executor

    def _submit(self, groups: list[list[CellSpec]], device: str) -> list[_Task]:
        assert self.run_dir is not None
        _, jobs, results = self._folders()
        executor = self._executor(jobs, groups, device)
        n = len(groups)
        try:
            handles = executor.map_array(run_task, groups, [device] * n, [str(results)] * n,
                                         [self.cell_function] * n)
        except Exception as err:  # sbatch refused it (an account, a time over the limit, ...)
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
            raise ExecutorError(f"the {self.cluster} cluster refused the array of {n} task(s): "
                                f"{lines[-1] if lines else type(err).__name__}") from None
        now = time.time()
        records = [TaskRecord(job_id=str(h.job_id), cluster=self.cluster,
                              cells=[c.key for c in g], submitted=now, log=str(h.paths.stderr))
                   for h, g in zip(handles, groups, strict=True)]
        _append(self.run_dir, records)
        return [_Task(r, h, list(r.cells)) for r, h in zip(records, handles, strict=True)]

    def _reattach(self, record: TaskRecord, owed: list[str]) -> _Task | None:
        """A task submitted before (by an earlier client) that may still run its cells."""
        ran_some = len(owed) < len(record.cells)  # the others are stored: it ran them
        if record.cluster == "local":
            alive = _local_alive(record)
            return _Task(record, None, owed, ran_some) if alive else None
        if self.cluster != "slurm":
            raise ExecutorError(f"the run directory has SLURM tasks (job {record.job_id}); "
                                "resume it with --cluster slurm on the cluster")
        _, jobs, _ = self._folders()
        job = self.submitit.SlurmJob(folder=jobs, job_id=record.job_id)
        return None if job.done() else _Task(record, job, owed, ran_some)

    # -- following ----------------------------------------------------------------------------

    def _ended(self, task: _Task) -> str | None:
        """None while the task may still run its cells; once it ended, SLURM's word for how
        (TIMEOUT, OUT_OF_MEMORY, ...), or "" where there is none (local tasks: their log)."""
        job = task.job
        if job is None:  # a local task re-attached after a restart: its pid is all there is
            return None if _local_alive(task.record) else ""
        process = getattr(job, "_process", None)
        if process is not None:  # local: the controller's exit says nothing of the task's
            return None if process.poll() is None else ""
        if not job.done():
            return None
        return str(job.state)

    def run(self, cells: Iterable[CellSpec], device: str) -> Iterator[CellResult]:
        """Submit the cells no task holds, then yield every cell's result once, as it comes.

        Stopping the iteration early leaves the tasks running: the next `run` on the run
        directory collects what they finish."""
        if not self.local and not self.gpus and (device == "cuda" or device.startswith("cuda:")):
            raise ExecutorError(f"--device {device} on SLURM needs GPUs in each array task: "
                                "give --gpus 1 (or more)")
        todo: dict[str, CellSpec] = {}
        for cell in cells:
            todo.setdefault(cell.key, cell)
        _, _, results = self._folders()
        return self._follow(todo, results, device)

    def _follow(self, todo: dict[str, CellSpec], results: Path, device: str
                ) -> Iterator[CellResult]:
        assert self.run_dir is not None
        # Results waiting from tasks of an earlier client: a completed one is collected; a
        # failed one is not (a resume retries failed cells).
        waiting = {name.removesuffix(".pkl") for name in os.listdir(results)}
        for key in [k for k in todo if k in waiting]:
            result = _load(results / f"{key}.pkl")
            if result is not None and result.status in COMPLETED_STATUSES:
                del todo[key]
                yield result
                _forget(results, key)
        tasks: list[_Task] = []
        held: set[str] = set()
        latest: dict[str, TaskRecord] = {}
        for record in read_tasks(self.run_dir):
            for key in record.cells:
                latest[key] = record
        by_record: dict[str, list[str]] = {}
        for key in todo:
            record = latest.get(key)
            if record is not None:
                by_record.setdefault(record.job_id, []).append(key)
        records = {r.job_id: r for r in latest.values()}
        for job_id, keys in by_record.items():
            task = self._reattach(records[job_id], [k for k in records[job_id].cells
                                                    if k in keys])
            if task is not None:
                tasks.append(task)
                held.update(task.owed)
        fresh = [c for k, c in todo.items() if k not in held]
        for cell in fresh:
            _forget(results, cell.key)  # a failed result or a mark of an earlier try
        if fresh:
            tasks.extend(self._submit(self._groups(fresh), device))
        yield from self._collect(todo, tasks, results, device)

    def _collect(self, todo: dict[str, CellSpec], tasks: list[_Task], results: Path,
                 device: str) -> Iterator[CellResult]:
        while todo:
            names = set(os.listdir(results))
            for task in list(tasks):
                ended = self._ended(task)
                if ended is not None:  # what it wrote before it ended is there now
                    names = set(os.listdir(results))
                for key in list(task.owed):
                    if f"{key}.running" in names or f"{key}.pkl" in names:
                        task.started_any = True
                    if f"{key}.pkl" not in names:
                        continue
                    result = _load(results / f"{key}.pkl")
                    if result is None:
                        continue  # being written (a non-atomic filesystem): next look
                    task.owed.remove(key)
                    if todo.pop(key, None) is not None:
                        yield result
                    _forget(results, key)
                if not task.owed:
                    tasks.remove(task)
                elif ended is not None:
                    tasks.remove(task)
                    yield from self._ended_early(task, ended, todo, tasks, names, results,
                                                 device)
            if todo and not tasks:  # nothing holds them (never submitted, records lost)
                tasks.extend(self._submit(self._groups(list(todo.values())), device))
            if todo:
                time.sleep(self.poll_interval)

    def _ended_early(self, task: _Task, ended: str, todo: dict[str, CellSpec],
                     tasks: list[_Task], names: set[str], results: Path, device: str
                     ) -> Iterator[CellResult]:
        """A task that ended owing cells: fail the one it ran, send the others out again."""
        where = f"array task {task.record.job_id} ended" + (f" ({ended})" if ended else "")
        last = _last_line(task.log)
        tail = f"; its log ends: {last}" if last else "; its log says no more (killed?)"
        running = [k for k in task.owed if f"{k}.running" in names]
        waiting = [k for k in task.owed if k not in running]
        for key in running:
            cell = todo.pop(key, None)
            if cell is not None:
                yield failed(cell, f"{where} while the cell ran{tail}; log: {task.log}")
            _forget(results, key)
        if not task.started_any:
            for key in waiting:
                cell = todo.pop(key, None)
                if cell is not None:
                    yield failed(cell, f"{where} before it ran any cell{tail}; log: {task.log}")
            return
        again = [todo[k] for k in waiting if k in todo]
        if again:
            tasks.extend(self._submit([again], device))

    def close(self) -> None:
        """Nothing to release: tasks outlive the client by design (see `run`)."""


def _load(path: Path) -> CellResult | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        result = pickle.loads(data)
    except Exception:  # cut short or damaged: as good as absent
        return None
    return result if isinstance(result, CellResult) else None


def _forget(results: Path, key: str) -> None:
    for name in (f"{key}.pkl", f"{key}.running"):
        (results / name).unlink(missing_ok=True)


def _cuda_visible_devices() -> tuple[int, ...] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        return None


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def slurm_parameters(*, time_min: float, partition: str | None = None,
                     mem_gb: float | None = None, gpus: int | None = None,
                     account: str | None = None, array_parallelism: int | None = None
                     ) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for the options (what the sbatch file says)."""
    parameters: dict[str, Any] = {"job_name": "estibench", "time": math.ceil(time_min),
                                  "cpus_per_task": 1, "ntasks_per_node": 1}
    if partition is not None:
        parameters["partition"] = partition
    if mem_gb is not None:
        parameters["mem"] = f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else \
            f"{math.ceil(mem_gb * 1024)}MB"
    if gpus:
        parameters["gpus_per_node"] = gpus
    if account is not None:
        parameters["account"] = account
    if array_parallelism is not None:
        parameters["array_parallelism"] = array_parallelism
    return parameters


# --------------------------------------------------------------------------------------------
# Where the tasks of a run stand
# --------------------------------------------------------------------------------------------


TASK_STATES = ("queued", "running", "done", "failed", "unknown")


@dataclass(frozen=True)
class TaskState:
    """One submitted task of a run: queued, running, done (its function returned), failed
    (it raised, or ended without a word: killed, out of memory or time) or unknown (a SLURM
    task looked at where sacct does not answer)."""

    record: TaskRecord
    state: str
    detail: str = ""  # SLURM's state, where sacct gave one


def task_states(run_dir: str | os.PathLike[str]) -> list[TaskState]:
    """Where each task submitted for `run_dir` stands, oldest first."""
    run_dir = Path(run_dir)
    jobs = run_dir / FOLDER / JOBS
    out = []
    for record in read_tasks(run_dir):
        detail = ""
        if record.cluster == "local":
            state = "running" if _local_alive(record) else ""
        else:
            detail = _sacct_state(record.job_id)
            state = {"PENDING": "queued", "REQUEUED": "queued", "CONFIGURING": "queued",
                     "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running"
                     }.get(detail.split()[0] if detail else "", "")
        if not state:
            outcome = _outcome(jobs / f"{record.job_id}_0_result.pkl")
            if outcome == "success":
                state = "done"
            elif outcome is not None or record.cluster == "local" or detail:
                state = "failed"
            else:
                state = "unknown"
        out.append(TaskState(record, state, detail))
    return out


def _outcome(path: Path) -> str | None:
    """'success' or 'error': what submitit recorded as the task's function ended, if it did."""
    try:
        with open(path, "rb") as f:
            outcome = pickle.load(f)[0]
    except (OSError, EOFError, pickle.UnpicklingError, IndexError, TypeError):
        return None
    return str(outcome)


def _sacct_state(job_id: str) -> str:
    """SLURM's state of a job ("PENDING", "OUT_OF_MEMORY", ...), or "" where sacct is silent."""
    try:
        out = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return lines[0] if lines else ""
