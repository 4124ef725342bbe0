"""A stand-in SLURM on this machine, for tests of the submitit executor's SLURM path: `sbatch`,
`srun` and `sacct` on PATH, running each array task as a local process with SLURM's environment.

- `sbatch FILE` reads the `#SBATCH` lines, gives the job the next id, starts one process per
  array index (all at once) running FILE with SLURM_JOB_ID, SLURM_ARRAY_JOB_ID,
  SLURM_ARRAY_TASK_ID and the rest set, and answers "Submitted batch job ID" as SLURM does;
- `srun --output OUT --error ERR CMD...` runs CMD with its output in those files (`%A`, `%a`,
  `%j` and `%t` filled in);
- `sacct` answers RUNNING while a task's process lives, then COMPLETED or FAILED by its exit
  status, in the two forms asked: submitit's (`-o JobID,State,NodeList --parsable2`) and
  estibench status's (`-X -n -P -o State`).

State (job counter, pids, exit statuses) lives in a directory of its own; each install starts
its job ids at a random number, since submitit's watcher caches the states of ended jobs for the
whole process.
"""

from __future__ import annotations

import os
import random
import stat
import sys
from pathlib import Path

SBATCH = r'''
import os, re, subprocess, sys
from pathlib import Path
state = Path(os.environ["FAKE_SLURM_STATE"])
script = Path(sys.argv[-1])
options = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script.read_text(), re.M))
counter = state / "counter"
job = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(job))
array = options.get("array")
indices = [None]
if array:
    first, last = array.split("%")[0].split("-")
    indices = list(range(int(first), int(last) + 1))
for index in indices:
    name = str(job) if index is None else f"{job}_{index}"
    env = dict(os.environ, SLURM_JOB_ID=str(job), SLURM_NTASKS="1", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1",
               SLURM_JOB_NODELIST="localhost")
    if index is not None:
        env.update(SLURM_ARRAY_JOB_ID=str(job), SLURM_ARRAY_TASK_ID=str(index))
    rc = state / f"{name}.rc"
    process = subprocess.Popen(["/bin/sh", "-c", f'/bin/sh "$0"; echo $? > "{rc}"', str(script)],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    (state / f"{name}.pid").write_text(str(process.pid))
print(f"Submitted batch job {job}")
'''

SRUN = r'''
import os, sys
args = sys.argv[1:]
out = err = None
while args and args[0].startswith("--"):
    flag = args.pop(0)
    if flag == "--output":
        out = args.pop(0)
    elif flag == "--error":
        err = args.pop(0)
def fill(path):
    job = os.environ["SLURM_JOB_ID"]
    return (path.replace("%A", os.environ.get("SLURM_ARRAY_JOB_ID", job))
            .replace("%a", os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
            .replace("%j", job).replace("%t", "0"))
if out:
    fd = os.open(fill(out), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
if err:
    fd = os.open(fill(err), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
os.execvp(args[0], args)
'''

SACCT = r'''
import os, sys
from pathlib import Path
state = Path(os.environ["FAKE_SLURM_STATE"])
args = sys.argv[1:]
asked = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
def state_of(name):
    rc = state / f"{name}.rc"
    if rc.exists() and rc.read_text().strip():
        return "COMPLETED" if rc.read_text().strip() == "0" else "FAILED"
    return "RUNNING"
names = sorted(p.stem for p in state.glob("*.pid"))
if "-X" in args:  # estibench status: one job, its state alone
    for name in names:
        if name in asked:
            print(state_of(name))
else:  # submitit: every task of the main ids asked
    print("JobID|State|NodeList")
    for name in names:
        if name.split("_")[0] in asked:
            print(f"{name}|{state_of(name)}|localhost")
'''


def install(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """Write the commands into `bin_dir`; returns the environment to run them with."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "counter").write_text(str(random.randrange(10_000, 10_000_000)))
    for name, body in (("sbatch", SBATCH), ("srun", SRUN), ("sacct", SACCT)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_SLURM_STATE": str(state_dir)}
