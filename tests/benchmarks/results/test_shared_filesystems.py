"""A run directory on a filesystem that cannot do what SQLite's WAL or the run's lock need.

The store's own tests run in both journal modes (tests/benchmarks/results/test_store.py); these
check how the fallback is chosen, said and kept, and what a run is told when the filesystem
has no file locks.
"""

from __future__ import annotations

import errno
import sqlite3
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from estibench.benchmarks.results import rundir
from estibench.benchmarks.results.store import STORE_FILENAME, Store, StoreWarning
from estibench.cli.app import app
from tests.benchmarks.results.test_store import make_cell, without_wal
from tests.runs import TOY


def recorded_journal(run_dir: Path) -> str:
    raw = sqlite3.connect(run_dir / STORE_FILENAME)
    try:
        return raw.execute("SELECT value FROM meta WHERE key = 'journal_mode'").fetchone()[0]
    finally:
        raw.close()


def opened_quietly(run_dir: Path, create: bool = False) -> Store:
    """Store.open, failing the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return Store.open(run_dir, create=create)


def test_wal_failing_at_the_first_write_falls_back_warns_once_and_keeps_the_journal(tmp_path):
    without_wal(tmp_path)
    with pytest.warns(StoreWarning, match="cannot use WAL in .*rollback journal") as caught:
        store = Store.open(tmp_path)
    assert len(caught) == 1 and repr(str(tmp_path)) in str(caught[0].message)
    with store:
        assert store.journal_mode == "delete"
        store.write_cell(store.start_run("toy", {}, {}), make_cell({"i": 0}))
    assert recorded_journal(tmp_path) == "delete"
    with opened_quietly(tmp_path) as again:  # said once: at the store's creation
        assert again.journal_mode == "delete" and len(again.cells()) == 1
    # Where WAL would work now, the store keeps its recorded journal: a writer may hold it.
    (tmp_path / f"{STORE_FILENAME}-shm").rmdir()
    with opened_quietly(tmp_path) as later:
        assert later.journal_mode == "delete"
        assert later._db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert later.integrity_ok()


def test_a_wal_store_brought_where_wal_fails_is_switched_by_its_writer(tmp_path):
    with opened_quietly(tmp_path, create=True) as store:  # made on a local disk
        store.write_cell(store.start_run("toy", {}, {}), make_cell({"i": 0}))
    without_wal(tmp_path)  # then copied to a filesystem without WAL's shared memory
    with pytest.warns(StoreWarning, match="rollback journal"), Store.open(tmp_path) as store:
        assert store.journal_mode == "delete" and len(store.cells()) == 1
        store.write_cell(store.start_run("toy", {}, {}), make_cell({"i": 1}))
    assert recorded_journal(tmp_path) == "delete"
    with opened_quietly(tmp_path) as again:
        assert again.journal_mode == "delete" and len(again.cells()) == 2
        assert again.integrity_ok()


def test_a_store_where_wal_works_records_wal_and_says_nothing(tmp_path):
    with opened_quietly(tmp_path, create=True) as store:
        assert store.journal_mode == "wal"
    assert recorded_journal(tmp_path) == "wal"


def without_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open SQLite files through the unix-dotfile VFS, which has no shared memory: there
    `PRAGMA journal_mode=WAL` answers "delete" (SQLite's own answer, as on filesystems that
    cannot share memory)."""
    connect = sqlite3.connect

    def dotfile(path, **kwargs):
        return connect(f"file:{path}?vfs=unix-dotfile", uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", dotfile)


def test_a_vfs_without_shared_memory_answers_another_mode_and_falls_back(tmp_path, monkeypatch):
    without_shared_memory(monkeypatch)
    with pytest.warns(StoreWarning, match="rollback journal"), Store.open(tmp_path) as store:
        assert store.journal_mode == "delete"
        store.write_cell(store.start_run("toy", {}, {}), make_cell({"i": 0}))
        assert store.completed_keys() == {make_cell({"i": 0}).key}
    assert recorded_journal(tmp_path) == "delete"


class RefusesWal(sqlite3.Connection):
    """A connection whose switch to WAL fails as it does on some network filesystems."""

    def execute(self, sql, *args):  # type: ignore[override]
        if sql.replace(" ", "").upper() == "PRAGMAJOURNAL_MODE=WAL":
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)


def test_a_wal_pragma_that_raises_falls_back(tmp_path, monkeypatch):
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect",
                        lambda path, **kwargs: connect(path, factory=RefusesWal, **kwargs))
    with pytest.warns(StoreWarning), Store.open(tmp_path) as store:
        assert store.journal_mode == "delete"
        store.write_cell(store.start_run("toy", {}, {}), make_cell({"i": 0}))
    assert recorded_journal(tmp_path) == "delete"


def test_the_cli_says_it_once_as_a_warning_line_and_the_run_completes(tmp_path, monkeypatch):
    without_shared_memory(monkeypatch)
    suite = tmp_path / "toy.toml"
    suite.write_text('name = "toy"\n' + TOY)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--device", "cpu",
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("warning: SQLite cannot use WAL in") == 1, result.output
    assert "Traceback" not in result.output and "StoreWarning" not in result.output
    assert recorded_journal(out) == "delete"
    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "--device", "cpu",
                                       "--no-report"])
    assert resumed.exit_code == 0, resumed.output
    assert "warning" not in resumed.output


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_filesystem_without_file_locks_is_a_clear_error(tmp_path, monkeypatch, code):
    def no_locks(fd, operation):
        raise OSError(code, "locks are not supported here")

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    suite = tmp_path / "toy.toml"
    suite.write_text('name = "toy"\n' + TOY)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--device", "cpu",
                                      "--no-report"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert f"cannot lock the run directory '{out}'" in text
    assert "does not support file locks (locks are not supported here)" in text
    assert "on a local disk (estibench run --out DIR" in text
    assert not (out / STORE_FILENAME).exists()
