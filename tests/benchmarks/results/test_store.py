"""Tests for the SQLite results store (real database files under tmp_path).

Every test of a store on disk runs twice, through the `run_dir` fixture: in WAL mode, and in
the rollback journal that a store falls back to where SQLite cannot use WAL. The fallback is
forced the way a network filesystem forces it: the WAL's shared-memory file cannot be opened
for writing (here a directory stands where `results.sqlite-shm` would be), so SQLite accepts
`journal_mode=WAL` and then refuses to write.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from estibench.benchmarks.results.store import (
    JOURNAL_MODES,
    STORE_FILENAME,
    CellResult,
    Store,
    StoreError,
    cell_key,
    export,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
# The rollback journal's warning is expected wherever a test forces it; its own test checks it.
pytestmark = pytest.mark.filterwarnings(
    "ignore::estibench.benchmarks.results.store.StoreWarning")


def make_cell(
    config: dict[str, Any],
    status: str = "ok",
    metrics: list[tuple[int, str, float]] | None = None,
    reason: str | None = None,
) -> CellResult:
    if metrics is None:
        metrics = [(step, name, float(step)) for step in range(5) for name in ("loss", "var")]
    return CellResult(
        key=cell_key(config),
        config=config,
        status=status,
        reason=reason,
        started=1000.0,
        finished=1001.5,
        environment={"torch": "2.3", "device": "cpu"},
        metrics=metrics,
    )


def without_wal(run_dir: Path) -> None:
    """Make SQLite's WAL unusable in `run_dir` as a network filesystem does: the shared memory
    (`results.sqlite-shm`) opens read-only, so the first write in WAL mode fails."""
    (run_dir / f"{STORE_FILENAME}-shm").mkdir(parents=True)


@pytest.fixture(params=JOURNAL_MODES)
def journal(request: pytest.FixtureRequest) -> str:
    """The journal mode the store under test must run in."""
    return request.param


@pytest.fixture
def run_dir(tmp_path: Path, journal: str) -> Path:
    """A directory whose store will run in `journal` mode (the fallback's warning is expected
    here, and checked in a test of its own)."""
    if journal == "delete":
        without_wal(tmp_path)
    return tmp_path


@pytest.fixture
def store(run_dir: Path, journal: str) -> Iterator[Store]:
    with Store.open(run_dir) as s:
        assert s.journal_mode == journal
        yield s


@pytest.fixture
def run_id(store: Store) -> int:
    return store.start_run("smoke", {"seeds": 2}, {"python": "3.11"})


def metric_count(store: Store, key: str) -> int:
    df = store.metrics()
    return int((df["key"] == key).sum())


# -- round trip --------------------------------------------------------------------------------


def test_round_trip_cells_and_metrics(store: Store, run_id: int) -> None:
    config = {"estimator": "reinforce", "objective": {"name": "vae", "latent": 8}, "lr": 1e-3}
    metrics = [
        (0, "loss", 1.25),
        (0, "var", float("nan")),
        (1, "loss", float("inf")),
        (1, "var", float("-inf")),
        (2, "loss", 1e-300),
        (2, "var", -1.5e300),
    ]
    cell = make_cell(config, metrics=metrics)
    store.write_cell(run_id, cell)

    cells = store.cells()
    assert list(cells.columns) == [
        "id", "run_id", "key", "status", "reason", "started", "finished", "config", "environment",
    ]  # fmt: skip
    assert len(cells) == 1
    row = cells.iloc[0]
    assert row["key"] == cell.key
    assert row["run_id"] == run_id
    assert row["status"] == "ok"
    assert row["reason"] is None
    assert row["started"] == 1000.0 and row["finished"] == 1001.5
    assert row["config"] == config
    assert row["environment"] == cell.environment

    df = store.metrics()
    assert list(df.columns) == ["cell_id", "key", "step", "metric", "value"]
    assert df["value"].dtype == "float64"
    got = {(int(s), m): v for s, m, v in zip(df["step"], df["metric"], df["value"], strict=True)}
    assert len(got) == len(metrics)
    for step, name, value in metrics:
        if math.isnan(value):
            assert math.isnan(got[(step, name)])
        else:
            assert got[(step, name)] == value


def test_nan_stored_as_null_and_inf_as_real(store: Store, run_id: int) -> None:
    metrics = [(0, "a", float("nan")), (0, "b", float("inf")), (0, "c", float("-inf"))]
    store.write_cell(run_id, make_cell({"x": 1}, metrics=metrics))
    raw = sqlite3.connect(store.path)
    try:
        rows = dict(raw.execute("SELECT metric, value FROM metrics").fetchall())
        types = dict(raw.execute("SELECT metric, typeof(value) FROM metrics").fetchall())
    finally:
        raw.close()
    assert rows["a"] is None and types["a"] == "null"
    assert rows["b"] == float("inf") and types["b"] == "real"
    assert rows["c"] == float("-inf") and types["c"] == "real"


def test_runs_history(store: Store) -> None:
    first = store.start_run("smoke", {"a": 1}, {"host": "x"})
    store.finish_run(first)
    second = store.start_run("smoke", {"a": 1}, {"host": "x"})  # a resume: another row
    runs = store.runs()
    assert list(runs["id"]) == [first, second]
    assert list(runs.columns) == ["id", "suite", "config", "environment", "started", "finished"]
    assert runs.loc[0, "finished"] >= runs.loc[0, "started"]
    assert math.isnan(runs.loc[1, "finished"])
    assert runs.loc[1, "config"] == {"a": 1}
    with pytest.raises(StoreError, match="no run with id"):
        store.finish_run(9999)


def test_empty_store_frames(store: Store) -> None:
    assert store.cells().empty
    assert store.metrics().empty
    assert store.runs().empty
    assert list(store.tidy().columns) == ["cell_id", "key", "step", "metric", "value", "status"]
    assert store.completed_keys() == set()


def test_large_cell_is_fast(store: Store, run_id: int) -> None:
    metrics = [(step, f"m{j}", step * 0.5 + j) for step in range(2500) for j in range(4)]
    start = time.perf_counter()
    store.write_cell(run_id, make_cell({"big": True}, metrics=metrics))
    elapsed = time.perf_counter() - start
    assert metric_count(store, cell_key({"big": True})) == 10_000
    assert elapsed < 2.0  # generous; typically a few tens of milliseconds


# -- database settings -------------------------------------------------------------------------


def test_journal_mode_and_pragmas(store: Store, journal: str) -> None:
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == journal  # WAL: in the file
        meta = dict(raw.execute("SELECT key, value FROM meta").fetchall())
        assert meta == {"schema_version": "1", "journal_mode": journal}
    finally:
        raw.close()
    conn = store._db
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # WAL: NORMAL (1) cannot corrupt the file; the rollback journal needs FULL (2) for that.
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == (1 if journal == "wal" else 2)
    assert conn.execute("PRAGMA locking_mode").fetchone()[0] == "normal"
    assert conn.isolation_level is None


def test_other_schema_version_is_rejected(run_dir: Path) -> None:
    with Store.open(run_dir) as s:
        s._db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema_version '2'"):
        Store.open(run_dir)


def test_foreign_database_is_rejected(run_dir: Path) -> None:
    path = run_dir / STORE_FILENAME
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE something(x)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not an estibench results store"):
        Store(path)


def test_open_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"no {STORE_FILENAME} in"):
        Store.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_closed_store_raises(run_dir: Path) -> None:
    s = Store.open(run_dir)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.cells()


def test_integrity_ok(store: Store, run_id: int) -> None:
    store.write_cell(run_id, make_cell({"x": 1}))
    assert store.integrity_ok()


# -- write semantics ---------------------------------------------------------------------------


def test_write_cell_is_atomic(store: Store, run_id: int) -> None:
    # The duplicate (step, metric) pair violates the primary key after 3 rows are inserted.
    bad = [(0, "loss", 1.0), (1, "loss", 2.0), (2, "loss", 3.0), (1, "loss", 9.0)]
    cell = make_cell({"x": "bad"}, metrics=bad)
    with pytest.raises(StoreError, match="rolled back"):
        store.write_cell(run_id, cell)
    assert store.cells().empty
    assert store.metrics().empty
    assert not store._db.in_transaction

    # The store is still fully usable, including for the same key.
    fixed = make_cell({"x": "bad"}, metrics=bad[:3])
    store.write_cell(run_id, fixed)
    assert store.completed_keys() == {fixed.key}
    assert metric_count(store, fixed.key) == 3
    assert store.integrity_ok()


def test_unknown_run_id_is_rejected(store: Store) -> None:
    with pytest.raises(StoreError):
        store.write_cell(12345, make_cell({"x": 1}))
    assert store.cells().empty and store.metrics().empty


@pytest.mark.parametrize("status", ["ok", "not_applicable"])
def test_completed_cell_written_twice_raises(store: Store, run_id: int, status: str) -> None:
    cell = make_cell({"x": 1}, status=status)
    store.write_cell(run_id, cell)
    with pytest.raises(StoreError, match="never written twice"):
        store.write_cell(run_id, make_cell({"x": 1}, metrics=[(0, "other", 1.0)]))
    # The original is untouched.
    assert len(store.cells()) == 1
    assert metric_count(store, cell.key) == len(cell.metrics)


def test_failed_cell_is_replaced_without_leftovers(store: Store, run_id: int) -> None:
    failed = make_cell(
        {"x": 1},
        status="failed",
        reason="CUDA OOM",
        metrics=[(s, "stale", 1.0) for s in range(7)],
    )
    store.write_cell(run_id, failed)
    assert store.completed_keys() == set()

    ok = make_cell({"x": 1}, metrics=[(0, "loss", 0.5)])
    store.write_cell(run_id, ok)
    cells = store.cells()
    assert len(cells) == 1
    assert cells.loc[0, "status"] == "ok" and cells.loc[0, "reason"] is None
    df = store.metrics()
    assert list(df["metric"]) == ["loss"]
    raw = sqlite3.connect(store.path)
    try:  # no orphan metric rows under the old cell id
        assert raw.execute("SELECT count(*) FROM metrics").fetchone()[0] == 1
    finally:
        raw.close()


def test_failed_cell_may_be_replaced_by_failed(store: Store, run_id: int) -> None:
    store.write_cell(run_id, make_cell({"x": 1}, status="failed", reason="first"))
    store.write_cell(run_id, make_cell({"x": 1}, status="failed", reason="second"))
    assert list(store.cells()["reason"]) == ["second"]


def test_completed_keys(store: Store, run_id: int) -> None:
    ok = make_cell({"i": 0})
    na = make_cell({"i": 1}, "not_applicable", metrics=[])
    failed = make_cell({"i": 2}, "failed", reason="boom")
    for cell in (ok, na, failed):
        store.write_cell(run_id, cell)
    assert store.completed_keys() == {ok.key, na.key}


def test_cell_result_validates_status() -> None:
    with pytest.raises(StoreError, match="invalid cell status"):
        make_cell({"x": 1}, status="done")
    with pytest.raises(StoreError, match="non-empty"):
        CellResult("", {}, "ok", None, 0.0, 0.0, {}, [])


# -- cell keys ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False)  # NaN != NaN would break the "different configs" premise
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
configs = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


def _reversed_nested(value: Any) -> Any:
    """The same value with the insertion order of every nested mapping reversed."""
    if isinstance(value, dict):
        return {k: _reversed_nested(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [_reversed_nested(v) for v in value]
    return value


@given(config=configs, data=st.data())
@settings(max_examples=100, deadline=None, database=None)
def test_cell_key_ignores_key_order(config: dict[str, Any], data: st.DataObject) -> None:
    top = data.draw(st.permutations(list(config.items())))
    shuffled = {k: _reversed_nested(v) for k, v in top}  # top level: any permutation
    key = cell_key(config)
    assert cell_key(shuffled) == key
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)


@given(a=configs, b=configs)
@settings(max_examples=100, deadline=None, database=None)
def test_cell_key_differs_for_different_configs(a: dict[str, Any], b: dict[str, Any]) -> None:
    # -0.0 == 0.0 and 1 == 1.0 == True compare equal in Python but are distinct configs here,
    # so only the direction "different -> different key" is asserted.
    assume(a != b)
    assert cell_key(a) != cell_key(b)


def test_cell_key_examples() -> None:
    assert cell_key({"a": 1, "b": {"c": 2, "d": 3}}) == cell_key({"b": {"d": 3, "c": 2}, "a": 1})
    assert cell_key({"lr": 0.1}) != cell_key({"lr": 0.1 + 1e-17 * 10})
    assert cell_key({"seed": 1}) != cell_key({"seed": True})
    assert cell_key({"path": Path("/a")}) == cell_key({"path": "/a"})
    with pytest.raises(TypeError, match="keys must be str"):
        cell_key({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        cell_key({"x": object()})


# -- export ------------------------------------------------------------------------------------


def _populate_for_export(store: Store) -> None:
    run = store.start_run("smoke", {}, {})
    for i, estimator in enumerate(["reinforce", "pathwise"]):
        config = {
            "estimator": estimator,
            "objective": {"name": "vae", "latent": 8 + i},
            "lr": 1e-3 * (i + 1),
            "seed": i,
            "step": "shadowed",  # collides with a fixed column name
            "layers": [64, 64],
        }
        metrics = [(s, m, s * 0.1 + i) for s in range(3) for m in ("loss", "grad_var")]
        metrics.append((3, "loss", float("nan")))
        metrics.append((3, "grad_var", float("inf")))
        store.write_cell(run, make_cell(config, metrics=metrics))
    # A cell without metrics does not show up in the tidy table.
    store.write_cell(run, make_cell({"estimator": "gumbel"}, "not_applicable", metrics=[]))


def test_tidy_table_layout(store: Store) -> None:
    _populate_for_export(store)
    tidy = store.tidy()
    assert list(tidy.columns) == [
        "cell_id", "key", "step", "metric", "value", "status",
        "config.step", "estimator", "layers", "lr", "objective.latent", "objective.name", "seed",
    ]  # fmt: skip
    assert len(tidy) == 2 * 8
    assert set(tidy["status"]) == {"ok"}
    assert set(tidy["layers"]) == {"[64,64]"}
    assert tidy["value"].isna().sum() == 2


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(run_dir: Path, fmt: str) -> None:
    with Store.open(run_dir) as s:
        _populate_for_export(s)
        expected = s.tidy()
    path = export(run_dir, fmt)
    assert path == run_dir / f"results.{fmt}"
    if fmt == "csv":
        got = pd.read_csv(path, dtype={"key": str})
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    else:
        got = pd.read_parquet(path)
        pd.testing.assert_frame_equal(got, expected)


def test_export_custom_out(run_dir: Path) -> None:
    with Store.open(run_dir) as s:
        _populate_for_export(s)
    out = run_dir / "elsewhere" / "table.parquet"
    assert export(run_dir, "parquet", out=out) == out
    assert len(pd.read_parquet(out)) == 16


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"'xlsx'.*csv, parquet"):
        export(tmp_path, "xlsx")
    with pytest.raises(StoreError, match=f"no {STORE_FILENAME} in {tmp_path}"):
        export(tmp_path, "csv")


# -- concurrency and crash safety --------------------------------------------------------------


def test_concurrent_reader_sees_committed_cells(run_dir: Path) -> None:
    with Store.open(run_dir) as writer:
        run = writer.start_run("smoke", {}, {})
        first = make_cell({"i": 0})
        writer.write_cell(run, first)
        with Store.open(run_dir, create=False) as reader:
            assert reader.completed_keys() == {first.key}

            # While the writer holds an open write transaction, the reader neither blocks nor
            # sees the uncommitted row (WAL snapshot isolation).
            writer._db.execute("BEGIN IMMEDIATE")
            writer._db.execute(
                "INSERT INTO cells(run_id, key, config, status, environment) "
                "VALUES (?, 'pending', '{}', 'ok', '{}')",
                (run,),
            )
            start = time.perf_counter()
            assert reader.completed_keys() == {first.key}
            assert time.perf_counter() - start < 1.0
            writer._db.execute("ROLLBACK")

            second = make_cell({"i": 1})
            writer.write_cell(run, second)
            assert reader.completed_keys() == {first.key, second.key}
            assert metric_count(reader, second.key) == len(second.metrics)


_CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from estibench.benchmarks.results.store import CellResult, Store, cell_key

    with Store.open(sys.argv[1]) as store:
        run = store.start_run("crash", {}, {})
        i = 0
        while True:
            config = {"i": i}
            metrics = [(step, "loss", step * 0.5) for step in range(50)]
            store.write_cell(run, CellResult(cell_key(config), config, "ok", None, 0.0, 1.0,
                                             {}, metrics))
            i += 1
            if i == 20:
                print("ready", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_sigkilled_writer_leaves_consistent_store(run_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, str(run_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(15.0, proc.kill)  # never let a hung child hang the test suite
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until 20 cells are committed (or it died)
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)  # keep writing, so the kill lands at an arbitrary point
        proc.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    with Store.open(run_dir, create=False) as s:
        assert s.integrity_ok()
        cells = s.cells()
        assert len(cells) >= 20
        counts = s.metrics().groupby("cell_id").size()
        assert set(counts.index) == set(cells["id"])
        assert (counts == 50).all(), counts[counts != 50]
        # Cells are written in order, so the surviving keys are a gap-free prefix.
        assert sorted(c["i"] for c in cells["config"]) == list(range(len(cells)))
        # The store is writable again after the crash.
        s.write_cell(s.start_run("crash", {}, {}), make_cell({"after": "crash"}))
        assert s.integrity_ok()
