"""Adversarial input through the real CLI app (in-process) and the runner: every bad suite, file
or run directory is exit 2 with the field or file named, never a traceback, a hang or a merge."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.results import rundir
from estibench.benchmarks.results.store import Store, legacy_cell_key
from estibench.benchmarks.suites.schema import parse_suite
from estibench.cli.app import app
from tests.runs import TOY

VAE = """
[training]
steps = 2
batch_size = {batch}
[data]
test_fraction = {fraction}
[metrics]
replicas = 4
throughput = false
bounds = false
[[objectives]]
name = "categorical_vae"
options = {{ input_dim = {dim}, variables = 2, categories = 2, hidden = 4 }}
[[estimators]]
name = "reinforce"
"""


def _toy(**replace: str) -> str:
    text = TOY
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


_SELF_CLAIM = """
[[claims]]
statement = "a cell beats itself"
source = "nowhere"
metric = "grad/distribution/log10_total_variance"
objectives = ["bernoulli_toy"]
left = {{ estimator = "reinforce-loo" }}
relation = ">"
right = {right}
"""

# (suite text, what the message must name)
MALFORMED = {
    "batch larger than digits": (VAE.format(batch=2000, fraction=0.2, dim=64),
                                 ["training.batch_size = 2000", "1438 examples"]),
    "test fraction leaves no batch": (VAE.format(batch=32, fraction=0.999, dim=64),
                                      ["training.batch_size = 32", "2 examples"]),
    "input_dim is not the data's": (VAE.format(batch=32, fraction=0.2, dim=100),
                                    ["objectives.0", "input_dim = 100", "64 features"]),
    "repeated seeds": (_toy(**{"seeds = [0]": "seeds = [0, 0]"}), ["seeds", "repeated: 0"]),
    "repeated num_samples": (_toy(**{"num_samples = [2]": "num_samples = [2, 2]"}),
                             ["num_samples", "repeated: 2"]),
    "two identical objectives": (TOY + '[[objectives]]\nname = "bernoulli_toy"\n',
                                 ["objectives[0] and objectives[1]", "same label"]),
    "checkpoint beyond the steps": (_toy(**{"[-1]": "[0, 500]"}),
                                    ["metrics.checkpoints", "training.steps = 2", "[500]"]),
    "negative checkpoint": (_toy(**{"[-1]": "[-2]"}), ["metrics.checkpoints", "[-2]"]),
    "learning rate inf": (_toy(**{"steps = 2": "steps = 2\nlearning_rate = inf"}),
                          ["training.learning_rate", "finite"]),
    "schedule starting at inf": (_toy(**{"steps = 2": "steps = 2\ntemperature.initial = inf"}),
                                 ["training.temperature.initial"]),
    "tiny schedule minimum": (_toy(**{"steps = 2": "steps = 2\ntemperature.minimum = 1e-39"}),
                              ["training.temperature.minimum"]),
    "tiny estimator temperature": (TOY + '[[estimators]]\nname = "gumbel_softmax"\n'
                                   'options = { temperature = 1e-38 }\n',
                                   ["estimators.1", "temperature", "1e-38"]),
    "seed at 2^63 - 1": (_toy(**{"seeds = [0]": "seeds = [9223372036854775807]"}),
                         ["seeds", "[0, 2^32)"]),
    "seed at 2^32 (torch would repeat seed 0)": (
        _toy(**{"seeds = [0]": "seeds = [0, 4294967296]"}), ["seeds", "[0, 2^32)"]),
    "huge num_samples": (_toy(**{"num_samples = [2]": "num_samples = [1000000000]"}),
                         ["num_samples", "2^20"]),
    "negative hidden": (TOY + '[[objectives]]\nname = "bernoulli_vae"\n'
                        'options = { hidden = -1 }\n', ["objectives.1", "options.hidden", "-1"]),
    "zero variables": (TOY + '[[objectives]]\nname = "categorical_vae"\n'
                       'options = { variables = 0 }\n', ["objectives.1", "options.variables"]),
    "toy of 1e12 dimensions": (_toy(**{'name = "bernoulli_toy"':
                                       'name = "bernoulli_toy"\noptions = { dims = 1e12 }'}),
                               ["objectives.0", "options.dims", "1000000000000.0"]),
    # one cell written two ways (the claim's step spelt out, the suite's only S): itself
    "claim of a cell against itself, step spelt out": (TOY + _SELF_CLAIM.format(
        right='{ estimator = "reinforce-loo", step = "final" }'),
        ["claims.0.right", "`left` and `right` name the same cell"]),
    "claim of a cell against itself, S spelt out": (TOY + _SELF_CLAIM.format(
        right='{ estimator = "reinforce-loo", num_samples = 2 }'),
        ["claims.0.right", "name the same cell"]),
}


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _assert_bad_input(result, *named: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and "error:" in result.output
    text = " ".join(result.output.split())  # rich may wrap a long line
    for name in named:
        assert name in text, (name, result.output)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_suite_is_exit_2_naming_the_field(tmp_path, case):
    text, named = MALFORMED[case]
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    out = tmp_path / "run"
    _assert_bad_input(_invoke("run", str(suite), "--out", str(out), "--device", "cpu"), *named)
    assert not out.exists()  # refused before anything was written


def test_command_line_values_are_validated_like_the_suite(tmp_path):
    suite = tmp_path / "toy.toml"
    suite.write_text(TOY)
    out = str(tmp_path / "r")
    _assert_bad_input(_invoke("run", str(suite), "--out", out, "--seeds", "0,0"), "seeds")
    for empty in ("", " , "):  # as --estimator "" is: nothing named is not "the suite's"
        _assert_bad_input(_invoke("run", str(suite), "--out", out, "--seeds", empty),
                          "--seeds must name at least one integer")
    for workers in ("0", "-3"):
        _assert_bad_input(_invoke("run", str(suite), "--out", out, "--workers", workers),
                          "--workers", workers)


def test_suite_files_a_directory_a_bom_and_a_truncated_suite_json(tmp_path):
    _assert_bad_input(_invoke("run", str(tmp_path)), "is a directory")
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + TOY.encode())
    assert _invoke("run", str(bom), "--out", str(tmp_path / "b"), "--device", "cpu",
                   "--no-report").exit_code == 0
    (tmp_path / "b" / "suite.json").write_text('{"name": "bom", "se')
    _assert_bad_input(_invoke("run", "--resume", str(tmp_path / "b")), "suite.json",
                      "not valid JSON")


def _mnist_npz(path: Path, train: int, test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez_compressed(path, x_train=rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
                        x_test=rng.integers(0, 256, (test, 28, 28), dtype=np.uint8))
    return path


MNIST = """
seeds = [0]
[data]
name = "mnist"
[training]
steps = 2
batch_size = 4
[metrics]
checkpoints = [-1]
replicas = 4
eval_batch_size = 4
bounds = false
throughput = false
[[objectives]]
name = "bernoulli_vae"
options = { input_dim = 784, latent_dim = 2, hidden = 4 }
[[estimators]]
name = "reinforce"
"""


def test_bad_data_files_are_exit_2_naming_the_file(tmp_path):
    suite = tmp_path / "mnist.toml"
    suite.write_text(MNIST)
    few = _mnist_npz(tmp_path / "five.npz", train=3, test=2)
    _assert_bad_input(_invoke("run", str(suite), "--out", str(tmp_path / "a"),
                              "--data-path", str(few)), "training.batch_size = 4", "3 examples")
    # A compressed member whose bytes are flipped: zlib fails inside numpy.
    good = _mnist_npz(tmp_path / "good.npz", train=40, test=10)
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("x_train.npy")
    raw = bytearray(good.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 40:start + 60] = bytes(20)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(bytes(raw))
    _assert_bad_input(_invoke("run", str(suite), "--out", str(tmp_path / "b"),
                              "--data-path", str(corrupt)), "corrupt.npz")


# Run directories --------------------------------------------------------------------------

def _cells(run_dir: Path):
    with Store.open(run_dir, create=False) as store:
        return store.cells()


def test_a_run_directory_belongs_to_one_suite(tmp_path):
    suite = tmp_path / "toy.toml"
    suite.write_text(TOY)
    out = tmp_path / "run"
    assert _invoke("run", str(suite), "--out", str(out), "--device", "cpu",
                   "--no-report").exit_code == 0
    before = _cells(out)
    more_seeds = tmp_path / "more.toml"
    more_seeds.write_text(_toy(**{"seeds = [0]": "seeds = [0, 1]"}))
    _assert_bad_input(_invoke("run", str(more_seeds), "--out", str(out)),
                      "different suite", "seeds: [0] in the run directory, [0, 1] here")
    _assert_bad_input(_invoke("run", str(more_seeds), "--resume", str(out)),
                      "resume needs the same suite", "seeds")
    _assert_bad_input(_invoke("run", "--resume", str(out), "--seeds", "0,1"), "seeds")
    assert _cells(out)["key"].tolist() == before["key"].tolist()  # nothing merged
    assert json.loads((out / "suite.json").read_text())["seeds"] == [0]
    # The same suite again is a resume: nothing to do, nothing duplicated.
    assert _invoke("run", str(suite), "--out", str(out), "--device", "cpu",
                   "--no-report").exit_code == 0
    assert len(_cells(out)) == len(before)
    # A directory that is not a run directory is not written into.
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    _assert_bad_input(_invoke("run", str(suite), "--out", str(tmp_path / "home")),
                      "not a run directory", "notes.txt")
    assert sorted(os.listdir(tmp_path / "home")) == [".lock", "notes.txt"]


def test_the_data_is_identified_by_its_content_not_its_path(tmp_path):
    suite = tmp_path / "mnist.toml"
    suite.write_text(MNIST)
    first = _mnist_npz(tmp_path / "first.npz", train=40, test=10)
    out = tmp_path / "run"
    assert _invoke("run", str(suite), "--out", str(out), "--data-path", str(first),
                   "--device", "cpu", "--no-report").exit_code == 0
    keys = _cells(out)["key"].tolist()
    moved = tmp_path / "moved.npz"
    first.rename(moved)
    ran = []
    run(None, resume=out, data_path=str(moved), device="cpu",
        on_cell=lambda r, i, n: ran.append(r.key))
    assert ran == [] and _cells(out)["key"].tolist() == keys  # same data: no cell again
    assert json.loads((out / "suite.json").read_text())["data"]["path"] == str(moved)
    other = _mnist_npz(tmp_path / "other.npz", train=40, test=10, seed=1)
    _assert_bad_input(_invoke("run", "--resume", str(out), "--data-path", str(other)),
                      "resume needs the same suite", "data.sha256")


def test_a_run_directory_from_before_content_hashes_resumes_without_rerunning(tmp_path):
    out = run(parse_suite({"name": "toy", **_raw_toy()}), out=tmp_path / "old", device="cpu")
    with Store.open(out) as store:  # rewrite it as the previous rules left it
        for key, config in zip(store.cells()["key"], store.cells()["config"], strict=True):
            store._db.execute("UPDATE cells SET key = ? WHERE key = ?",
                              (legacy_cell_key(config), key))
    (out / rundir.IDENTITY_FILENAME).unlink()
    ran = []
    run(None, resume=out, device="cpu", on_cell=lambda r, i, n: ran.append(r.key))
    assert ran == [] and len(_cells(out)) == 1


def _raw_toy() -> dict:
    import tomllib

    return tomllib.loads(TOY)


def test_a_locked_run_directory_is_refused_and_new_ones_never_collide(tmp_path):
    suite = parse_suite({"name": "toy", **_raw_toy()})
    out = run(suite, out=tmp_path / "run", device="cpu")
    lock = rundir._lock(out)  # another run holding it (a second open file: flock conflicts)
    try:
        with pytest.raises(rundir.RunDirError, match=f"in use by another estibench run "
                                                     f"\\(pid {os.getpid()}\\)"):
            run(None, resume=out, device="cpu")
    finally:
        lock.close()
    run(None, resume=out, device="cpu")  # released: usable again
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(rundir._make_new(tmp_path, "same")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8  # started in the same second, eight directories


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a" * 300, "...", "x[/]y z"])
def test_run_directory_names_stay_inside_runs(tmp_path, name):
    made = rundir._make_new(tmp_path / "runs", name)
    assert made.parent == tmp_path / "runs" and len(made.name) < 100
    assert made.resolve().is_relative_to((tmp_path / "runs").resolve())


# Stores and exports -----------------------------------------------------------------------

def test_damaged_stores_and_unwritable_exports_are_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.sqlite").write_bytes(b"")
    _assert_bad_input(_invoke("show", str(empty)), "empty")
    assert (empty / "results.sqlite").stat().st_size == 0  # no schema written into it
    out = run(parse_suite({"name": "toy", **_raw_toy()}), out=tmp_path / "run", device="cpu")
    _assert_bad_input(_invoke("export", str(out), "--out", str(tmp_path)), "is a directory")
    store = out / "results.sqlite"
    raw = bytearray(store.read_bytes())
    for i in range(4096 + 200, len(raw), 97):  # flip bytes in every page after the first
        raw[i] ^= 0xFF
    store.write_bytes(bytes(raw))
    for command in ("show", "export"):
        _assert_bad_input(_invoke(command, str(out)), "results.sqlite")


# Markup, HTML and mathtext in user text ---------------------------------------------------

def test_user_text_is_printed_and_drawn_as_text(tmp_path):
    label = "x[/]y [nan, nan] <img src=q> $\\alpha$"
    suite = tmp_path / "labels.toml"
    suite.write_text(TOY.replace('options = { baseline = "loo" }',
                                 f'options = {{ baseline = "loo" }}\nlabel = {json.dumps(label)}')
                     + '[[estimators]]\nname = "pathwise"\n')
    out = tmp_path / "run"
    result = _invoke("run", str(suite), "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "[nan, nan]" in result.output and "x[/]y" in result.output
    shown = _invoke("show", str(out))
    assert shown.exit_code == 0 and "does not apply" in shown.output
    markdown = (out / "report" / "report.md").read_text()
    assert "<img src=q>" not in markdown and "&lt;img src=q&gt;" in markdown
    assert "error while drawing" not in markdown  # `$` is not mathtext


def test_a_cuda_device_on_a_local_cluster_without_gpu_is_exit_2(tmp_path):
    pytest.importorskip("distributed")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    suite = tmp_path / "toy.toml"
    suite.write_text(TOY)
    _assert_bad_input(_invoke("run", str(suite), "--out", str(tmp_path / "r"), "--device",
                              "cuda", "--local-workers", "1"), "cuda", "no CUDA GPU")


def test_an_unknown_estimator_on_the_command_line_is_one_plain_line(tmp_path):
    result = _invoke("run", "smoke", "--estimator", "nope", "--dry-run")
    assert result.exit_code == 2
    message = result.output
    assert "--estimator 'nope'" in message and "unknown estimator 'nope'" in message
    assert "pydantic" not in message and "[type=" not in message


def test_markup_in_labels_is_printed_as_text_by_the_dry_run(tmp_path):
    """A label is user text: rich markup in it ([/], [bold]) is shown, never interpreted
    (an unbalanced closing tag used to crash the not-applicable table)."""
    suite = tmp_path / "markup.toml"
    suite.write_text(_toy() + '[[estimators]]\nname = "pathwise"\nlabel = "path[/]wise[bold]"\n')
    result = _invoke("run", str(suite), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "path[/]wise[bold]" in result.output


def test_resuming_an_empty_store_is_refused_and_the_file_kept(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.sqlite").write_bytes(b"")
    result = _invoke("run", "--resume", str(run_dir), "--no-report")
    assert result.exit_code == 2
    assert "results.sqlite is empty (0 bytes)" in result.output
    assert (run_dir / "results.sqlite").stat().st_size == 0  # nothing was written over it


def test_run_and_show_give_the_counts_and_every_seed_of_a_pair_that_does_not_apply(tmp_path):
    suite = tmp_path / "counts.toml"
    suite.write_text(_toy(**{"seeds = [0]": "seeds = [0, 1]"})
                     + '[[estimators]]\nname = "pathwise"\n')  # no pathwise on a Bernoulli
    out = tmp_path / "run"
    result = _invoke("run", str(suite), "--out", str(out), "--no-report")
    assert result.exit_code == 0, result.output
    counts = "cells: 2 ok, 0 failed, 2 not applicable, 0 never run"
    assert counts in result.output
    shown = _invoke("show", str(out))
    assert shown.exit_code == 0, shown.output
    assert counts in shown.output
    row = next(line for line in shown.output.splitlines() if "pathwise" in line)
    assert "0, 1" in row  # both seeds of the pair, not the first one only


def test_terminal_escape_sequences_in_user_text_never_reach_the_terminal(tmp_path):
    """Labels and names are user text: a colour or clear-screen sequence in them is printed
    without its control characters, in tables, errors and the dry run alike."""
    suite = tmp_path / "escapes.toml"
    suite.write_text(_toy() + '[[estimators]]\nname = "pathwise"\n'
                     'label = "path\\u001b[2J\\u001b[31mwise"\n')
    result = _invoke("run", str(suite), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "path[2J[31mwise" in result.output
    bad = _invoke("run", "smoke", "--estimator", "no\x1b[31mpe", "--dry-run")
    assert bad.exit_code == 2 and "\x1b" not in bad.output and "unknown estimator" in bad.output


def test_html_in_labels_is_text_in_the_markdown_and_html_reports(tmp_path):
    """Markdown renders inline HTML: a label with a tag is escaped in every part of report.md
    (tables, titles, the ranking's sentence), as it is in report.html."""
    suite = tmp_path / "html.toml"
    tag = "<img src=x onerror=alert(1)>"
    suite.write_text(_toy().replace('name = "bernoulli_toy"',
                                    f'name = "bernoulli_toy"\nlabel = "toy{tag}"'))
    out = tmp_path / "run"
    result = _invoke("run", str(suite), "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in ("report.md", "report.html"):
        text = (out / "report" / name).read_text(encoding="utf-8")
        assert "toy&lt;img" in text, name
        assert tag not in text, name


@pytest.mark.parametrize("damage", ["metric as text", "config not JSON", "config a list",
                                    "config empty"])
def test_a_hand_edited_store_is_exit_2_naming_the_row(tmp_path, damage):
    import sqlite3

    suite = tmp_path / "toy.toml"
    suite.write_text(TOY)
    out = tmp_path / "run"
    assert _invoke("run", str(suite), "--out", str(out), "--no-report").exit_code == 0
    with sqlite3.connect(out / "results.sqlite") as db:
        if damage == "metric as text":
            row = db.execute("SELECT cell_id, step, metric FROM metrics LIMIT 1").fetchone()
            db.execute("UPDATE metrics SET value = 'abc' WHERE cell_id = ? AND step = ? "
                       "AND metric = ?", row)
            named = [f"metric {row[2]!r} of cell {row[0]}", "'abc', not a number"]
        elif damage == "config not JSON":
            db.execute("UPDATE cells SET config = '{not json' WHERE id = 1")
            named = ["cells row 1 has a config that is not JSON"]
        elif damage == "config a list":
            db.execute("UPDATE cells SET config = '[]' WHERE id = 1")
            named = ["cells row 1 has a config that is a JSON list, not an object"]
        else:
            db.execute("UPDATE cells SET config = '{}' WHERE id = 1")
            named = ["cells row 1 has a config without objective, estimator"]
    for command in (["report", str(out)], ["show", str(out)], ["compare", str(out), str(out)],
                    ["run", "--resume", str(out), "--no-report"]):
        _assert_bad_input(_invoke(*command), *named)


def _forget_last_cell(run_dir: Path) -> None:
    """The run's last cell removed from the store, as if it had not finished yet."""
    import sqlite3

    with sqlite3.connect(run_dir / "results.sqlite") as db:
        last = db.execute("SELECT max(id) FROM cells").fetchone()[0]
        db.execute("DELETE FROM metrics WHERE cell_id = ?", (last,))
        db.execute("DELETE FROM cells WHERE id = ?", (last,))


def test_show_says_pending_while_a_run_holds_the_directory(tmp_path):
    from estibench.benchmarks.results import rundir

    suite = tmp_path / "toy.toml"
    suite.write_text(_toy(**{"seeds = [0]": "seeds = [0, 1]"}))
    out = tmp_path / "run"
    assert _invoke("run", str(suite), "--out", str(out), "--no-report").exit_code == 0
    _forget_last_cell(out)
    lock = rundir._lock(out)  # as a run in progress holds it
    try:
        shown = _invoke("show", str(out))
    finally:
        lock.close()
    assert "1 pending (a run is in progress, pid" in shown.output, shown.output
    after = _invoke("show", str(out))
    assert "1 never run (the run is incomplete" in after.output, after.output


def test_a_suite_of_more_cells_than_the_limit_runs_only_with_yes(tmp_path, monkeypatch):
    from estibench.cli import app as cli_app

    monkeypatch.setattr(cli_app, "LARGE_SUITE", 3)
    suite = tmp_path / "big.toml"
    suite.write_text(_toy(**{"seeds = [0]": "seeds = [0, 1, 2, 3]"}))
    out = tmp_path / "run"
    _assert_bad_input(_invoke("run", str(suite), "--out", str(out)),
                      "has 4 cells", "more than 3", "--yes")
    assert not out.exists()
    assert _invoke("run", str(suite), "--dry-run").exit_code == 0  # looking needs no --yes
    ran = _invoke("run", str(suite), "--out", str(out), "--yes", "--no-report")
    assert ran.exit_code == 0, ran.output


def test_markup_and_escapes_in_an_objective_label_are_text_in_the_run_summary(tmp_path):
    """The summary's title carries the objective's label: markup is shown as written, a
    terminal escape never reaches the output."""
    suite = tmp_path / "markup.toml"
    suite.write_text(_toy(**{'name = "bernoulli_toy"':
                             'name = "bernoulli_toy"\nlabel = "toy[/x][bold]\\u001b[31m"'}))
    out = tmp_path / "run"
    result = _invoke("run", str(suite), "--out", str(out), "--no-report")
    assert result.exit_code == 0, result.output
    assert "toy[/x][bold]" in result.output and "\x1b" not in result.output
    shown = _invoke("show", str(out))
    assert shown.exit_code == 0 and "toy[/x][bold]" in shown.output, shown.output


@pytest.mark.parametrize("option", [["--dpi", "0"], ["--image-format", "bmp"],
                                    ["--cell-timeout", "inf"]])
def test_run_options_are_checked_before_any_cell_runs(tmp_path, option):
    suite = tmp_path / "toy.toml"
    suite.write_text(TOY)
    out = tmp_path / "run"
    result = _invoke("run", str(suite), "--out", str(out), *option)
    assert result.exit_code == 2, result.output
    assert option[0].lstrip("-").replace("-", " ").split()[0] in result.output.lower()
    assert not (out / "results.sqlite").exists()  # nothing ran


def test_a_damaged_store_is_refused_before_resuming_and_an_empty_one_with_out(tmp_path):
    """--resume reads the store first (a metric stored as a blob is exit 2 naming it, before
    any cell); --out on a run directory whose store is 0 bytes does not start over."""
    import sqlite3

    suite = tmp_path / "toy.toml"
    suite.write_text(TOY)
    out = tmp_path / "run"
    assert _invoke("run", str(suite), "--out", str(out), "--no-report").exit_code == 0
    with sqlite3.connect(out / "results.sqlite") as db:
        db.execute("UPDATE metrics SET value = X'0001' WHERE metric = (SELECT min(metric) "
                   "FROM metrics)")
    result = _invoke("run", "--resume", str(out), "--no-report")
    assert result.exit_code == 2 and "not a number" in result.output, result.output
    (out / "results.sqlite").write_bytes(b"")
    again = _invoke("run", str(suite), "--out", str(out), "--no-report")
    assert again.exit_code == 2 and "is empty (0 bytes)" in again.output, again.output
    assert (out / "results.sqlite").stat().st_size == 0


def test_escape_sequences_in_labels_never_reach_the_report_or_its_figures(tmp_path):
    """`cat report.md` must not run a label's escape sequences, and figures must not draw
    them (matplotlib warns of a missing glyph for ESC)."""
    import warnings

    suite = tmp_path / "escapes.toml"
    suite.write_text(_toy().replace('name = "bernoulli_toy"',
                                    'name = "bernoulli_toy"\nlabel = "toy\\u001b[31m\\u0007"'))
    out = tmp_path / "run"
    assert _invoke("run", str(suite), "--out", str(out), "--no-report").exit_code == 0
    from estibench import reports

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing-glyph warning fails the test
        reports.write_report(out)
    text = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "toy[31m" in text and "\x1b" not in text and "\x07" not in text
