"""The SLURM-profile run of the test config, done once per test session and shared by every test that reads a
completed run: the test config run through snakemake-executor-plugin-slurm against stand-in ``sbatch``,
``sacct``, ``squeue``, ``srun``, ``scontrol`` and ``sinfo`` (tests/slurm_standins, first on PATH), and its report.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STANDINS = REPO / "tests" / "slurm_standins"
SLURM_PROFILE = REPO / "profiles" / "slurm"


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: tuple[tuple[str, str], ...]
    resources: dict
    runs_model: bool  # its amps step loads a model (is given --model)


def parse_pairs(text: str, separator: str) -> tuple[tuple[str, str], ...]:
    """``a=1, b=2`` (dry run) or ``a=1,b=2`` (--target-jobs) as sorted pairs."""
    return tuple(sorted(tuple(item.strip().split("=", 1)) for item in text.split(separator) if item.strip()))


def planned_jobs(dry_run_output: str) -> list[PlannedJob]:
    """The jobs of a ``snakemake -n -p`` listing, with their wildcards, resources and commands."""
    jobs, rule, wildcards, resources = [], None, (), {}
    for line in dry_run_output.splitlines():
        if match := re.match(r"^\s*(?:local)?rule (\S+):$", line):
            rule, wildcards, resources = match.group(1), (), {}
        elif rule and (match := re.match(r"^\s*wildcards: (.*)$", line)):
            wildcards = parse_pairs(match.group(1), ", ")
        elif rule and (match := re.match(r"^\s*resources: (.*)$", line)):
            resources = dict(item.split("=", 1) for item in match.group(1).split(", "))
        elif rule and (match := re.match(r"^Shell command: (.*)$", line)):
            jobs.append(PlannedJob(rule, wildcards, resources, " --model " in match.group(1)))
            rule = None
    return jobs


def snakemake(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's Snakefile with the venv's tools first on PATH."""
    environment = dict(os.environ, AMPS_PROGRESS="0", **(env or {}))
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
        capture_output=True,
        text=True,
        env=environment,
    )


@dataclass(frozen=True)
class SlurmRun:
    workdir: Path
    configfiles: list[str]
    plan: list[PlannedJob]
    submissions: list[dict]
    steps: list[dict]
    report: Path


def read_records(path: Path) -> list[dict]:
    """The JSON lines a stand-in recorded (one per call)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_through_slurm(root: Path) -> None:
    """Plan, run and report the test config (its toy model given one GPU) with the SLURM profile."""
    state, workdir = root / "state", root / "work"
    state.mkdir(parents=True)
    overlay = root / "one_gpu.yaml"
    overlay.write_text(yaml.safe_dump({"models": {"toy-xs": {"gpus": 1}}}))
    configfiles = [str(REPO / "config" / "test.yaml"), str(overlay)]
    common = ["--directory", str(workdir), "--configfile", *configfiles]
    env = {"PATH": f"{STANDINS}{os.pathsep}{os.environ['PATH']}", "STANDIN_STATE_DIR": str(state)}
    plan = snakemake(["--profile", str(SLURM_PROFILE), *common, "-n", "--printshellcmds"], env)
    assert plan.returncode == 0, (plan.stdout + plan.stderr)[-3000:]
    (root / "plan.txt").write_text(plan.stdout)
    # Status checks every second instead of the profile's cluster-friendly 40 s.
    run = snakemake(
        [
            "--profile",
            str(SLURM_PROFILE),
            *common,
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--seconds-between-status-checks",
            "1",
        ],
        env,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    report = snakemake([*common, "--report", str(root / "report.html")])
    assert report.returncode == 0, (report.stdout + report.stderr)[-3000:]
    (root / "configfiles.json").write_text(json.dumps(configfiles))


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> SlurmRun:
    """The SLURM-profile run of the test config, done once per test session.

    Under pytest-xdist each worker has its own module fixtures, so the run lives in the session's
    shared temporary folder and a lock lets the first worker do it while the others wait.
    """
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "slurm-run"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "configfiles.json").exists():
            shutil.rmtree(root, ignore_errors=True)
            run_through_slurm(root)
    return SlurmRun(
        workdir=root / "work",
        configfiles=json.loads((root / "configfiles.json").read_text()),
        plan=planned_jobs((root / "plan.txt").read_text()),
        submissions=read_records(root / "state" / "sbatch.jsonl"),
        steps=read_records(root / "state" / "srun.jsonl"),
        report=root / "report.html",
    )
