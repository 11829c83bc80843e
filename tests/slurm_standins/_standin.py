"""Stand-ins for SLURM's commands, so the real snakemake-executor-plugin-slurm runs a DAG here.

Each command is a small script in this folder that calls :func:`main` with its own
name. ``sbatch`` records its arguments (one JSON line per call in ``$STANDIN_STATE_DIR/sbatch.jsonl``),
runs the job's ``--wrap`` command at once in the foreground with ``SLURM_JOB_ID`` set, records the
job's final state and prints the job id; ``sacct`` and ``squeue`` report the recorded states; ``srun``
runs its command; ``scontrol`` and ``sinfo`` answer the plugin's configuration questions.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

# Not SLURM_-prefixed: the plugin's job step drops SLURM_* variables before it calls srun.
STATE_DIR = Path(os.environ["STANDIN_STATE_DIR"])


def option_value(args: list[str], *names: str) -> str | None:
    """Value of an option given as ``--name value``, ``--name=value`` or ``-x value``."""
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


def next_job_id() -> str:
    """A fresh job id (a counter file; sbatch calls may run in parallel, so it is locked)."""
    with open(STATE_DIR / "counter", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        current = int(handle.read() or 1000) + 1
        handle.seek(0)
        handle.truncate()
        handle.write(str(current))
    return str(current)


def sbatch(args: list[str]) -> int:
    """Record the submission, run the job to its end, record its state, print its id."""
    job_id = next_job_id()
    with open(STATE_DIR / "sbatch.jsonl", "a") as handle:
        handle.write(json.dumps({"job_id": job_id, "args": args}) + "\n")
    command = option_value(args, "--wrap")
    log_path = option_value(args, "--output").replace("%j", job_id)
    workdir = option_value(args, "-D") or os.getcwd()
    environment = dict(os.environ, SLURM_JOB_ID=job_id, SLURM_JOB_NAME=option_value(args, "--job-name"))
    gpus = option_value(args, "--gpus")
    if gpus:
        environment["SLURM_GPUS"] = gpus
    (STATE_DIR / f"{job_id}.name").write_text(option_value(args, "--job-name"))
    with open(log_path, "w") as log:
        finished = subprocess.run(["sh", "-c", command], cwd=workdir, env=environment, stdout=log, stderr=log)
    (STATE_DIR / f"{job_id}.state").write_text("COMPLETED" if finished.returncode == 0 else "FAILED")
    print(job_id)
    return 0


def job_states(name: str | None) -> list[tuple[str, str]]:
    """(job id, state) of every recorded job, of the named run only when a name is given."""
    states = []
    for state_file in sorted(STATE_DIR.glob("*.state")):
        job_id = state_file.stem
        if name is None or (STATE_DIR / f"{job_id}.name").read_text() == name:
            states.append((job_id, state_file.read_text()))
    return states


def sacct(args: list[str]) -> int:
    """Job states as ``id|STATE`` lines, for the plugin's status query."""
    # The plugin also asks sacct for an account to guess and for failure reasons: answer nothing.
    if "--format=JobIdRaw,State" in args:
        for job_id, state in job_states(option_value(args, "--name")):
            print(f"{job_id}|{state}")
    return 0


def squeue(args: list[str]) -> int:
    """Job states as ``id|STATE`` lines (the plugin's other status query)."""
    for job_id, state in job_states(option_value(args, "--name")):
        print(f"{job_id}|{state}")
    return 0


def srun(args: list[str]) -> int:
    """Record the job step's options and run its command."""
    with open(STATE_DIR / "srun.jsonl", "a") as handle:
        handle.write(json.dumps({"job_id": os.environ.get("SLURM_JOB_ID"), "args": args}) + "\n")
    # The plugin's srun options are single tokens (-n1, --gpus=1, ...); the command follows them.
    start = next(index for index, arg in enumerate(args) if not arg.startswith("-"))
    return subprocess.run(args[start:]).returncode


def scontrol(args: list[str]) -> int:
    """The two configuration values the plugin reads."""
    if args[:2] == ["show", "config"]:
        print("MinJobAge               = 300 sec")
        print("MaxArraySize            = 1001")
    return 0


def sinfo(args: list[str]) -> int:
    """A partition list with a default partition (the plugin checks that sinfo exists)."""
    print("PARTITION")
    print("cpu*")
    print("gpu")
    return 0


COMMANDS = {"sbatch": sbatch, "sacct": sacct, "squeue": squeue, "srun": srun, "scontrol": scontrol, "sinfo": sinfo}


def main(command: str) -> int:
    """Run the stand-in ``command`` with this process's arguments."""
    return COMMANDS[command](sys.argv[1:])
