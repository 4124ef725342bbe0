"""Results store: one embedded SQLite database (``results.sqlite``) per run directory.

Layout
------
``runs``     one row per invocation of a suite (a resumed run adds another row, so the table is
             the history of invocations, not of suites).
``cells``    one row per benchmark cell, identified by :func:`cell_key` of its config.
``metrics``  tidy ``(cell_id, step, metric, value)`` rows; deleted with their cell.
``meta``     ``schema_version`` (currently ``1``) and ``journal_mode`` (``wal`` or ``delete``;
             absent in stores made before it was recorded, which are all ``wal``).

Concurrency model
-----------------
Exactly one process (the benchmark client) writes. Any number of readers (report builders,
notebooks, a ``tail``-style monitor) may open the same file concurrently: the database runs in
WAL mode, so readers see the last committed state and never block the writer or each other.

Shared filesystems
------------------
WAL needs memory shared between the processes that open the file (the ``-shm`` file, mapped by
each of them), which network filesystems (NFS, Lustre, GPFS) do not provide: there SQLite
refuses WAL, or accepts it and then fails at the first write. A new store checks that WAL works
(a write transaction, opened and rolled back) and otherwise uses SQLite's rollback journal
(``journal_mode=DELETE``, ``synchronous=FULL``), warns once (:class:`StoreWarning`) and records
the mode in ``meta``; every later open of that file keeps the recorded mode. The writer of a WAL
store brought to such a filesystem (a run directory copied there) switches it the same way. In
the rollback journal a reader and the writer's commit wait for each other (the busy timeout
covers it), but a cell is still written all or nothing.

Crash safety
------------
A cell and all of its metric rows are written in a single ``BEGIN IMMEDIATE`` transaction, so a
killed process leaves either the whole cell or nothing. ``synchronous=NORMAL`` in WAL mode can
lose the last few commits on *power* loss but never corrupts the file; a lost cell is simply
re-run by ``--resume``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pandas as pd

from estibench.benchmarks.results.labels import display_objective

__all__ = [
    "COMPLETED_STATUSES",
    "EXPORT_FORMATS",
    "JOURNAL_MODES",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_FILENAME",
    "CellResult",
    "Store",
    "StoreError",
    "StoreWarning",
    "cell_key",
    "export",
    "legacy_cell_key",
]

T = TypeVar("T")
STORE_FILENAME = "results.sqlite"
SCHEMA_VERSION = 1
STATUSES: tuple[str, ...] = ("ok", "failed", "not_applicable")
# Cells with these statuses are final: ``--resume`` skips them and they are never rewritten.
COMPLETED_STATUSES: frozenset[str] = frozenset({"ok", "not_applicable"})
EXPORT_FORMATS: tuple[str, ...] = ("csv", "parquet")
# SQLite journal modes a store runs in: WAL, or the rollback journal where WAL cannot be used.
JOURNAL_MODES: tuple[str, ...] = ("wal", "delete")

_CONNECT_TIMEOUT_S = 30.0
_KEY_HEX_CHARS = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    suite       TEXT NOT NULL,
    config      TEXT NOT NULL,
    environment TEXT NOT NULL,
    started     REAL NOT NULL,
    finished    REAL NULL
);
CREATE TABLE IF NOT EXISTS cells (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    key         TEXT UNIQUE NOT NULL,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'not_applicable')),
    reason      TEXT NULL,
    started     REAL,
    finished    REAL,
    environment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_run_id ON cells(run_id);
CREATE TABLE IF NOT EXISTS metrics (
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    metric  TEXT NOT NULL,
    value   REAL,
    PRIMARY KEY (cell_id, step, metric)
) WITHOUT ROWID;
"""

_CELL_COLUMNS = [
    "id",
    "run_id",
    "key",
    "status",
    "reason",
    "started",
    "finished",
    "config",
    "environment",
]
_RUN_COLUMNS = ["id", "suite", "config", "environment", "started", "finished"]
_METRIC_COLUMNS = ["cell_id", "key", "step", "metric", "value"]
_TIDY_BASE_COLUMNS = [*_METRIC_COLUMNS, "status"]


class StoreError(RuntimeError):
    """Any failure of the results store that a caller is expected to handle or report."""


class StoreWarning(UserWarning):
    """The store works, in a way its user should know about (the rollback journal)."""


# --------------------------------------------------------------------------------------------
# Canonical JSON and cell keys
# --------------------------------------------------------------------------------------------


def _canonical(value: Any, where: str = "config") -> Any:
    """Convert ``value`` to plain JSON types (dict/list/str/int/float/bool/None).

    Done by hand rather than via ``json.dumps(default=...)`` because ``json`` cannot serialise
    non-dict Mappings and silently turns non-str keys into strings (``{1: x}`` and ``{"1": x}``
    would then collide).
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be str, got {k!r} ({type(k).__name__})")
            out[k] = _canonical(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    # numpy / torch scalars: unwrap to the equivalent Python number.
    item = getattr(value, "item", None)
    if callable(item):
        return _canonical(item(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where}: {type(value).__name__} value {value!r} is not JSON-serialisable")


def _dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace; ``json`` renders floats with ``float.__repr__``
    so the text round-trips exactly and equal configs always give equal text."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cell_key(config: Mapping[str, Any]) -> str:
    """Stable identifier of a cell: first 16 hex chars of sha256 over the canonical JSON config.

    Independent of key order at every nesting level. Note that ``1``, ``1.0`` and ``True`` are
    *different* configs here (they render differently), which is deliberate: a float learning
    rate and an integer one are not the same experiment.

    Where the config records the data's content hash (``data.sha256``), the data's location
    (``data.path``) is left out: the same data read from a new path is the same cell.
    """
    data = config.get("data")
    if isinstance(data, Mapping) and data.get("sha256"):
        config = {**config, "data": {k: v for k, v in data.items() if k != "path"}}
    digest = hashlib.sha256(_dumps(config).encode("utf-8")).hexdigest()
    return digest[:_KEY_HEX_CHARS]


def describe_cell(config: Mapping[str, Any]) -> str:
    """objective / estimator / S / seed: how a cell is named on screen (the objective with its
    options named, `display_objective`)."""
    return (f"{display_objective(config)} / {config['estimator']} / S={config['num_samples']} / "
            f"seed {config['seed']}")


def legacy_cell_key(config: Mapping[str, Any]) -> str:
    """The key this config had before data content hashes were recorded (path included): what
    cells of older run directories are stored under, so that resuming them skips those."""
    data = config.get("data")
    if isinstance(data, Mapping):
        config = {**config, "data": {k: v for k, v in data.items() if k != "sha256"}}
    return cell_key(config)


def _to_real(value: Any) -> float | None:
    """SQLite has no NaN, so NaN is stored as NULL; +/-inf are valid REALs and stored as-is.

    (SQLite also drops the sign of -0.0: it reads back as 0.0.)
    """
    f = float(value)
    return None if math.isnan(f) else f


# --------------------------------------------------------------------------------------------
# Cell result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellResult:
    """Everything recorded for one benchmark cell.

    ``metrics`` holds ``(step, metric, value)`` triples; each ``(step, metric)`` pair must be
    unique within a cell (the store's primary key enforces it).
    """

    key: str
    config: dict[str, Any]
    status: str
    reason: str | None
    started: float
    finished: float
    environment: dict[str, Any]
    metrics: list[tuple[int, str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise StoreError(f"invalid cell status {self.status!r}; expected one of {STATUSES}")
        if not isinstance(self.key, str) or not self.key:
            raise StoreError(f"cell key must be a non-empty string, got {self.key!r}")


# --------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------


def _damaged_as_store_error(method: Callable[..., T]) -> Callable[..., T]:
    """A read that finds a damaged file (flipped bytes, truncation) raises StoreError naming it."""

    @functools.wraps(method)
    def read(self: Store, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is damaged and cannot be read ({exc}); restore it "
                             "from a copy or re-run the suite into a new directory") from exc

    return read


# what every cell's config holds (`CellSpec.to_json`): without them no view can name the cell
CELL_CONFIG_KEYS = ("objective", "estimator", "seed", "num_samples")


def _decoded(path: Path, table: str, ids: pd.Series, column: str, texts: pd.Series,
             required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The JSON objects of a column; StoreError naming the row where one is not JSON, not an
    object, or lacks a `required` key."""
    out = []
    fix = "fix or delete the row, or re-run the suite into a new directory"
    for row_id, text in zip(ids, texts, strict=True):
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{path}: {table} row {row_id} has a {column} that is not JSON ({exc}); "
                f"{fix}") from None
        if not isinstance(value, dict):
            raise StoreError(f"{path}: {table} row {row_id} has a {column} that is a JSON "
                             f"{type(value).__name__}, not an object; {fix}")
        missing = [key for key in required if key not in value]
        if missing:
            raise StoreError(f"{path}: {table} row {row_id} has a {column} without "
                             f"{', '.join(missing)}; {fix}")
        out.append(value)
    return out


class Store:
    """Handle on one ``results.sqlite`` file. Use as a context manager.

    Only one process may write (the benchmark client); other processes may open the same file
    for reading at any time. A ``Store`` object must be used from the thread that created it.
    ``journal_mode`` is the SQLite journal it runs in: "wal", or "delete" where WAL cannot be
    used (see the module's docstring). A store opened with ``create`` is the writer's: it may
    switch the journal; one opened without it only reads.
    """

    journal_mode: str

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"no {self.path.name} in {self.path.parent}")
        if not create and self.path.is_file() and self.path.stat().st_size == 0:
            # Opening it would write a schema into what may be a file being copied or lost.
            raise StoreError(f"{self.path} is empty (0 bytes): not a results store")
        self._conn: sqlite3.Connection | None = None
        self._connect()
        try:
            self._configure(writer=create)
            self._ensure_schema()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        """(Re)open the connection; the pragmas are `_configure`'s."""
        if self._conn is not None:
            self._conn.close()
        try:
            # isolation_level=None: the sqlite3 module must not open implicit transactions;
            # every write below is bracketed by an explicit BEGIN IMMEDIATE / COMMIT.
            self._conn = sqlite3.connect(self.path, timeout=_CONNECT_TIMEOUT_S,
                                         isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], create: bool = True) -> Store:
        """Open ``run_dir/results.sqlite``; with ``create`` the directory and file are made."""
        run_dir = Path(run_dir)
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_dir / STORE_FILENAME, create=create)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    def _configure(self, writer: bool) -> None:
        """Foreign keys on, and the journal: WAL where it works, else the rollback journal.

        A reader (`writer` False) takes the file as it is. The writer checks WAL on a file
        that does not record the rollback journal: a new store, or a WAL store brought to a
        filesystem where WAL fails (a run directory copied to NFS), which it switches.
        """
        try:
            # Foreign keys are per-connection and off by default; without them ON DELETE CASCADE
            # would silently leave orphan metric rows behind.
            self._db.execute("PRAGMA foreign_keys=ON")
            current = str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            recorded = None if current == "wal" else self._recorded_journal_mode()
            if recorded == "delete":
                # Made where WAL failed: never switch it, the writer may have it open right now.
                self._use_rollback_journal()
                return
            if (current == "wal" and not writer) or self._try_wal():
                self.journal_mode = "wal"
                self._pragma("synchronous=NORMAL")
                return
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        self._leave_wal()
        self._use_rollback_journal()
        if current == "wal":  # a store from elsewhere; a new one records it with its schema
            self._record_journal_mode()
        warnings.warn(StoreWarning(
            f"SQLite cannot use WAL in {str(self.path.parent)!r} (a network filesystem?): the "
            "results store uses the rollback journal instead, as safe but with readers and "
            "the writer waiting for each other briefly"), stacklevel=3)

    def _pragma(self, statement: str) -> str:
        try:
            row = self._db.execute(f"PRAGMA {statement}").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: PRAGMA {statement} failed ({exc}); SQLite cannot "
                             f"write a database in {self.path.parent}: put the run directory "
                             "on a local disk (estibench run --out DIR)") from exc
        return "" if row is None else str(row[0]).lower()

    def _recorded_journal_mode(self) -> str | None:
        """``meta.journal_mode`` of a store that records it, else None (a new file too)."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if has_meta is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'journal_mode'").fetchone()
        return None if row is None else str(row[0])

    def _try_wal(self) -> bool:
        """Switch to WAL and check that a write transaction can start in it.

        WAL fails in three ways: the pragma raises, it answers another mode (a VFS without
        shared memory), or it answers "wal" and the first write fails because the shared
        memory cannot be mapped or written. Only a file without a recorded mode comes here (a
        new store), so the brief write lock of the check keeps no reader waiting.
        """
        db = self._db
        try:
            if str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() != "wal":
                return False
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                raise StoreError(f"{self.path} is being written by another process ({exc}); "
                                 "only one estibench run writes a store") from exc
            return False
        return True

    def _leave_wal(self) -> None:
        """Bring the file back to a rollback journal after a failed WAL check.

        The check may have left the header saying WAL, which cannot be undone through shared
        memory that does not work. A fresh connection that holds the file exclusively keeps
        the WAL index in its own memory instead, and can switch the file back; the exclusive
        lock goes at the end of its next access (the schema check that follows).
        """
        self._connect()
        self._db.execute("PRAGMA foreign_keys=ON")
        self._pragma("locking_mode=EXCLUSIVE")
        self._pragma("journal_mode=DELETE")
        self._pragma("locking_mode=NORMAL")

    def _record_journal_mode(self) -> None:
        """Write the journal mode into an existing store's ``meta`` (if it has one)."""
        if self._schema_version() is None:
            return  # not a store yet: it records the mode with its schema
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('journal_mode', ?)",
                       (self.journal_mode,))

    def _use_rollback_journal(self) -> None:
        """The rollback journal, made safe for one writer and readers on a shared filesystem:

        - journal_mode=DELETE: the journal is deleted at each commit, so one left by a killed
          writer is recognised by its mere existence (a "hot" journal) and rolled back by the
          next opener. TRUNCATE and PERSIST save a file operation but rely on the journal's
          header being zeroed and read back, which network filesystems' caches make less
          certain.
        - synchronous=FULL: the journal is synced before the database is written and the
          database before the commit returns, so a crash (of the process, the machine or its
          link to the file server) leaves the old cell or the new one, never a torn page.
          NORMAL is only safe in WAL mode.
        - locking_mode NORMAL (SQLite's default; locks go at the end of each transaction), so
          readers can open the file while the client runs; the busy timeout makes a reader
          and the writer's commit wait for each other rather than fail.
        """
        mode = self._pragma("journal_mode=DELETE")
        if mode != "delete":
            raise StoreError(f"{self.path}: SQLite can use neither WAL nor the rollback journal "
                             f"(journal mode {mode!r}); put the run directory on a local disk "
                             "(estibench run --out DIR)")
        self._pragma("synchronous=FULL")
        self.journal_mode = "delete"

    @_damaged_as_store_error
    def _schema_version(self) -> str | None:
        """The stored schema version, or None if the file holds no ``meta`` table yet."""
        tables = {
            row[0]
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "meta" not in tables:
            if tables - {"sqlite_sequence"}:
                raise StoreError(
                    f"{self.path} is an SQLite database but not an estibench results store "
                    f"(tables: {sorted(tables)})"
                )
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _check_version(self, version: str) -> None:
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"{self.path} has schema_version {version!r}, but this estibench supports "
                f"schema_version {SCHEMA_VERSION}; use a matching estibench version or a new "
                "run directory"
            )

    def _ensure_schema(self) -> None:
        # Fast path needs no write lock, so readers can open while the writer is busy.
        version = self._schema_version()
        if version is not None:
            self._check_version(version)
            return
        with self._transaction():
            # Re-check under the write lock: another process may have initialised it meanwhile.
            version = self._schema_version()
            if version is None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)),
                     ("journal_mode", self.journal_mode)],
                )
            else:
                self._check_version(version)
        # executescript() is avoided above because it COMMITs any open transaction first.

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; roll back on *any* exception (incl. Ctrl-C).

        IMMEDIATE takes the write lock up front, so a second writer waits (``timeout``) at BEGIN
        instead of failing with SQLITE_BUSY halfway through a cell.
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write transaction: {exc}") from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            # SQLite may already have rolled back on its own (e.g. after SQLITE_FULL).
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: write failed and was rolled back: {exc}") from exc
            raise

    # -- writing ---------------------------------------------------------------------------------

    def start_run(
        self, suite: str, config: Mapping[str, Any], environment: Mapping[str, Any]
    ) -> int:
        """Record a new invocation and return its id (a resumed run gets a new row too)."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO runs(suite, config, environment, started) VALUES (?, ?, ?, ?)",
                (suite, _dumps(config), _dumps(environment), time.time()),
            )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        """Stamp the finish time of run ``run_id``."""
        with self._transaction() as db:
            cur = db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run_id))
            if cur.rowcount != 1:
                raise StoreError(f"no run with id {run_id} in {self.path}")

    def write_cell(self, run_id: int, result: CellResult) -> None:
        """Write a cell and all of its metrics atomically.

        A previous *failed* cell with the same key is replaced (its metrics go with it) in the
        same transaction; a previous completed cell (ok / not_applicable) raises StoreError,
        since completed cells are final. On any error nothing of this cell is left behind.
        """
        with self._transaction() as db:
            existing = db.execute(
                "SELECT id, status FROM cells WHERE key = ?", (result.key,)
            ).fetchone()
            if existing is not None:
                old_id, old_status = existing
                if old_status in COMPLETED_STATUSES:
                    raise StoreError(
                        f"cell {result.key} is already stored with status {old_status!r}; "
                        "completed cells are never written twice"
                    )
                db.execute("DELETE FROM cells WHERE id = ?", (old_id,))  # cascades to metrics
            cur = db.execute(
                "INSERT INTO cells(run_id, key, config, status, reason, started, finished, "
                "environment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    result.key,
                    _dumps(result.config),
                    result.status,
                    result.reason,
                    result.started,
                    result.finished,
                    _dumps(result.environment),
                ),
            )
            cell_id = cur.lastrowid
            # A generator keeps memory flat for large metric lists; executemany reuses one
            # prepared statement, which is what makes ~10k rows per cell cheap.
            db.executemany(
                "INSERT INTO metrics(cell_id, step, metric, value) VALUES (?, ?, ?, ?)",
                (
                    (cell_id, int(step), str(name), _to_real(value))
                    for step, name, value in result.metrics
                ),
            )

    # -- reading ---------------------------------------------------------------------------------

    @_damaged_as_store_error
    def completed_keys(self) -> set[str]:
        """Keys of cells that are final (ok / not_applicable); what ``--resume`` skips."""
        rows = self._db.execute(
            "SELECT key FROM cells WHERE status IN ('ok', 'not_applicable')"
        ).fetchall()
        return {row[0] for row in rows}

    @_damaged_as_store_error
    def cells(self, required: tuple[str, ...] = ()) -> pd.DataFrame:
        """One row per cell; ``config`` and ``environment`` are decoded to dicts. `required`:
        keys every config must have (`CELL_CONFIG_KEYS` for the views of a benchmark run),
        else StoreError naming the row."""
        rows = self._db.execute(
            "SELECT id, run_id, key, status, reason, started, finished, config, environment "
            "FROM cells ORDER BY id"
        ).fetchall()
        df = pd.DataFrame.from_records(rows, columns=_CELL_COLUMNS)
        df = df.astype(
            {"id": "int64", "run_id": "int64", "started": "float64", "finished": "float64"}
        )
        df["config"] = _decoded(self.path, "cells", df["id"], "config", df["config"],
                                required)
        df["environment"] = _decoded(self.path, "cells", df["id"], "environment",
                                     df["environment"])
        return df

    @_damaged_as_store_error
    def metrics(self) -> pd.DataFrame:
        """Tidy metrics: ``cell_id, key, step, metric, value`` (NULL read back as NaN)."""
        rows = self._db.execute(
            "SELECT m.cell_id, c.key, m.step, m.metric, m.value "
            "FROM metrics AS m JOIN cells AS c ON c.id = m.cell_id "
            "ORDER BY m.cell_id, m.step, m.metric"
        ).fetchall()
        df = pd.DataFrame.from_records(rows, columns=_METRIC_COLUMNS)
        values = pd.to_numeric(df["value"], errors="coerce")
        bad = values.isna() & df["value"].notna()
        if bad.any():  # a value stored as text (a hand-edited file)
            row = df[bad].iloc[0]
            raise StoreError(
                f"{self.path}: metric {row['metric']!r} of cell {row['cell_id']} at step "
                f"{row['step']} is {row['value']!r}, not a number ({int(bad.sum())} such "
                "value(s)); fix or delete the row(s), or re-run the suite into a new directory")
        return df.assign(value=values).astype({"cell_id": "int64", "step": "int64",
                                               "value": "float64"})

    @_damaged_as_store_error
    def runs(self) -> pd.DataFrame:
        """The invocation history; ``finished`` is NaN for runs that never finished."""
        rows = self._db.execute(
            "SELECT id, suite, config, environment, started, finished FROM runs ORDER BY id"
        ).fetchall()
        df = pd.DataFrame.from_records(rows, columns=_RUN_COLUMNS)
        df = df.astype({"id": "int64", "started": "float64", "finished": "float64"})
        df["config"] = _decoded(self.path, "runs", df["id"], "config", df["config"])
        df["environment"] = _decoded(self.path, "runs", df["id"], "environment",
                                     df["environment"])
        return df

    def tidy(self) -> pd.DataFrame:
        """Metrics joined with each cell's status and flattened config (what :func:`export` writes).

        Columns: ``cell_id, key, step, metric, value, status`` and then one column per config
        leaf, nested keys joined with dots (``objective.name``), sorted. A config key that would
        shadow one of the fixed columns is prefixed with ``config.``. Lists become JSON text.
        Cells without metric rows (typically not_applicable) do not appear; see :meth:`cells`.
        """
        metrics = self.metrics()
        cells = self.cells()
        records = []
        for cell_id, status, config in zip(
            cells["id"], cells["status"], cells["config"], strict=True
        ):
            flat = {
                (f"config.{name}" if name in _TIDY_BASE_COLUMNS else name): value
                for name, value in _flatten(config).items()
            }
            records.append({**flat, "cell_id": cell_id, "status": status})
        if not records:  # no cells implies no metrics: an empty frame with the fixed columns
            return metrics.assign(status=pd.Series(dtype=object))[_TIDY_BASE_COLUMNS]
        info = pd.DataFrame.from_records(records)
        config_columns = sorted(c for c in info.columns if c not in ("cell_id", "status"))
        for column in config_columns:
            info[column] = _uniform_column(info[column])
        tidy = metrics.merge(info, on="cell_id", how="left", validate="many_to_one")
        return tidy[[*_TIDY_BASE_COLUMNS, *config_columns]].reset_index(drop=True)

    def integrity_ok(self) -> bool:
        """True iff ``PRAGMA integrity_check`` reports exactly ``ok``."""
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return [tuple(row) for row in rows] == [("ok",)]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": "[1,2]"}``."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        column = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{column}."))
        elif isinstance(value, (Mapping, list, tuple)):
            # Parquet needs one scalar type per column; JSON text keeps the information.
            out[column] = _dumps(value)
        else:
            out[column] = value
    return out


def _uniform_column(column: pd.Series) -> pd.Series:
    """Render a config column whose cells hold different Python types as text.

    e.g. ``seed`` = 0 in one cell and "auto" in another: pyarrow cannot store such a column.
    """
    if column.dtype != object:
        return column
    types = {type(v) for v in column if v is not None and not pd.isna(v)}
    if len(types) <= 1:
        return column
    return column.map(lambda v: v if v is None or pd.isna(v) else str(v))


def export(
    run_dir: str | os.PathLike[str], format: str, out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the tidy table of ``run_dir/results.sqlite`` as CSV or Parquet; return the path.

    The default output is ``run_dir/results.csv`` or ``run_dir/results.parquet``. CSV is lossy
    about types (e.g. an all-digit key may read back as a number); prefer Parquet for analysis.
    """
    if format not in EXPORT_FORMATS:
        raise StoreError(f"unknown export format {format!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    run_dir = Path(run_dir)
    if not (run_dir / STORE_FILENAME).is_file():
        raise StoreError(f"no {STORE_FILENAME} in {run_dir}")
    target = Path(out) if out is not None else run_dir / f"results.{format}"
    if target.is_dir():
        raise StoreError(f"export --out {str(target)!r} is a directory; give a file name "
                         f"such as {str(target / f'results.{format}')!r}")
    with Store.open(run_dir, create=False) as store:
        table = store.tidy()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if format == "csv":
            table.to_csv(target, index=False)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise StoreError("export --format parquet needs pyarrow: pip install "
                                 "'estibench[parquet]' (or --format csv)") from None
            table.to_parquet(target, engine="pyarrow", index=False)
    except OSError as exc:
        raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
