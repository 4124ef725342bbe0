"""The Dask recipe for SLURM: the sbatch script of docs/cluster.md, run as written (the suite
swapped for the tests' tiny one) under a stand-in `srun` that starts its tasks as processes
here with the environment SLURM gives each task. dask-jobqueue's own SLURMRunner then gives
them their roles (scheduler, client, workers) as it would in an allocation, and the run must
store the in-process numbers.
"""

from __future__ import annotations

import os
import random
import re
import stat
import subprocess
import sys

import pandas as pd
import pytest

from tests.docs import blocks
from tests.e2e.test_submitit import toml
from tests.runs import TINY_RUN, numbers, statuses

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

TASKS = 3  # the fewest SLURMRunner takes: the scheduler, the client, one worker

# srun within an allocation: SLURM_NTASKS copies of the command, each told its SLURM_PROCID;
# --output's %j and %t are the job id and the task's number. Exits with the worst status.
SRUN = r'''
import os, subprocess, sys
args = sys.argv[1:]
output = None
while args and args[0].startswith("-"):
    flag = args.pop(0)
    if flag.startswith("--output="):
        output = flag.split("=", 1)[1]
    elif flag in ("--output", "-o"):
        output = args.pop(0)
job = os.environ["SLURM_JOB_ID"]
tasks = []
for task in range(int(os.environ["SLURM_NTASKS"])):
    env = dict(os.environ, SLURM_PROCID=str(task), SLURM_LOCALID=str(task), SLURM_NODEID="0",
               SLURM_STEP_ID="0")
    out = None
    if output:
        out = open(output.replace("%j", job).replace("%t", str(task)), "w")
    tasks.append(subprocess.Popen(args, env=env, stdout=out,
                                  stderr=subprocess.STDOUT if out else None))
sys.exit(max(t.wait() for t in tasks))
'''


def sbatch_script() -> str:
    """The Dask recipe's sbatch script, as docs/cluster.md shows it."""
    found = [b.code for b in blocks.blocks("docs/cluster.md")
             if b.lang == "bash" and "#SBATCH" in b.code and "slurm-runner" in b.code]
    assert len(found) == 1, "docs/cluster.md should show one sbatch script for the Dask recipe"
    return found[0]


def test_the_documented_sbatch_script_runs_the_suite_in_one_allocation(in_process_numbers,
                                                                       tmp_path):
    script = sbatch_script()
    assert script.startswith("#!/bin/bash\n") and "srun --output=estibench-%j-%t.out" in script
    suite = tmp_path / "tiny.toml"
    suite.write_text(toml(TINY_RUN))
    documented = "estibench run standard --scheduler slurm-runner"
    assert documented in script
    (tmp_path / "job.sh").write_text(script.replace(
        documented, f"estibench run {suite} --device cpu --no-report --scheduler slurm-runner"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", f"#!{sys.executable}\n{SRUN}"),
                       ("estibench", f'#!/bin/sh\nexec "{sys.executable}" -m estibench.cli.app '
                                     '"$@"\n')):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    job = str(random.randrange(10_000, 10_000_000))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SLURM_JOB_ID": job, "SLURM_NTASKS": str(TASKS), "MPLBACKEND": "Agg"}
    done = subprocess.run(["bash", "job.sh"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    logs = [tmp_path / f"estibench-{job}-{task}.out" for task in range(TASKS)]
    shown = "\n".join(f"== {p.name}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    assert done.returncode == 0, shown + done.stderr  # every task ended, and ended well
    scheduler, client, worker = (p.read_text() for p in logs)
    assert "Scheduler at:" in scheduler and "Register worker" in scheduler
    assert "Start worker at:" in worker and re.search(r"Worker name:\s+2\n", worker)
    assert f"cells: {len(in_process_numbers.index.unique('key'))} ok, 0 failed" in client
    run_dir = tmp_path / "runs" / f"standard-{job}"  # the script's --out, relative to the job
    assert (statuses(run_dir) == "ok").all()
    pd.testing.assert_series_equal(numbers(run_dir), in_process_numbers, check_exact=True)
