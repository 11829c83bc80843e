"""The real Snakemake DAG on config/test.yaml, killed twice and resumed: its tables equal those of a clean run.

The clean run is the SLURM-profile run of tests/test_cluster.py (one run per session, shared by the
workers), so the suite runs the DAG twice in all, side by side on two workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from amps.vocabulary import BASELINE_CONDITIONS

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.dag]


def snakemake_command(workdir: Path, cores: int = 2, *extra: str) -> list[str]:
    """The command that runs the whole DAG of the test config in ``workdir``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config" / "test.yaml"),
        "--cores",
        str(cores),
        *extra,
    ]


def pipeline_env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", AMPS_PROGRESS="0")


def run_pipeline(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the whole DAG of the test config in ``workdir`` (outputs land under workdir/results)."""
    return subprocess.run(snakemake_command(workdir, 2, *extra), capture_output=True, text=True, env=pipeline_env())


def kill_when_started(workdir: Path, log_glob: str, timeout: float = 300) -> None:
    """Run the DAG on one core and kill it (SIGKILL, whole process group) once a job of ``log_glob`` starts.

    A job's log file is created when the job starts, so the kill lands while it is running.
    """
    process = subprocess.Popen(
        snakemake_command(workdir, 1, "--rerun-incomplete"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=pipeline_env(),
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not list((workdir / "results" / "test" / "logs").glob(log_glob)):
            assert process.poll() is None, f"the run ended before any job of {log_glob} started"
            assert time.monotonic() < deadline, f"no job of {log_glob} started within {timeout} s"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # A killed Snakemake leaves its lock behind; the README's recovery step removes it.
    unlock = subprocess.run(snakemake_command(workdir, 1, "--unlock"), capture_output=True, text=True, env=pipeline_env())
    assert unlock.returncode == 0, unlock.stderr[-2000:]


@dataclass(frozen=True)
class ResumedRun:
    """A run of the test config killed twice (during an MCR shard, then during an evaluation) and resumed."""

    out: Path
    leftovers_after_mcr_kill: list[Path]
    leftovers_after_eval_kill: list[Path]
    model_mtime_before_resume: int
    resume: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory) -> ResumedRun:
    workdir = tmp_path_factory.mktemp("resumed")
    out = workdir / "results" / "test"
    kill_when_started(workdir, "mcr_shard/*/*.log")
    after_mcr_kill = list(out.glob("mcr/**/*.parquet"))
    model_mtime = (out / "models" / "toy-xs" / "config.json").stat().st_mtime_ns
    kill_when_started(workdir, "steered_eval/*.log")
    after_eval_kill = list(out.glob("amps/*/answers/*.parquet"))
    resume = run_pipeline(workdir, "--rerun-incomplete")
    assert resume.returncode == 0, resume.stderr[-4000:]
    return ResumedRun(out, after_mcr_kill, after_eval_kill, model_mtime, resume)


def test_dag_produces_tables_models_and_figures(resumed_run):
    out = resumed_run.out
    model = out / "models" / "toy-xs"
    assert (model / "config.json").is_file() and any(model.glob("*.safetensors"))
    assert not list(out.glob("models/.*partial"))
    for figure in ("preference.pdf", "preference.png"):
        assert (out / "figures" / figure).stat().st_size > 1000
    scores = pd.read_csv(out / "tables" / "baseline_scores.csv")
    pooled = scores[(scores["task"] == "all") & (scores["view"] == "pooled")]
    assert set(pooled["condition"]) == set(BASELINE_CONDITIONS)
    shares = pooled[["s_vision", "s_text", "s_other"]].sum(axis=1)
    assert shares.round(9).eq(1.0).all()
    assert (pooled["n"] == 2 * 8).all()  # 8 test records (2 tasks x 10 x 0.4), both orders
    assert set(scores["run"]) == {"test"}
    checks = pd.read_csv(out / "tables" / "toy_model_checks.csv")
    assert list(checks["model"]) == ["toy-xs"]
    assert (out / "logs" / "prepare_benchmark.log").is_file()


def test_killed_jobs_leave_nothing_that_looks_done_and_rerun_only_what_was_incomplete(resumed_run):
    assert resumed_run.leftovers_after_mcr_kill == [], "a killed MCR shard left an output that looks done"
    assert resumed_run.leftovers_after_eval_kill == [], "a killed evaluation left an output that looks done"
    # The trained model was complete before the kills: it is reused, not retrained.
    out = resumed_run.out
    assert (out / "models" / "toy-xs" / "config.json").stat().st_mtime_ns == resumed_run.model_mtime_before_resume
    planned = resumed_run.resume.stderr.split("Job stats")[1].split("Select jobs")[0]
    assert "train_toy_model" not in planned and "steered_eval" in planned


def test_same_config_same_tables_byte_for_byte_even_after_kills(resumed_run, slurm_run):
    """Two executions of every job of one config (a clean one through SLURM, a local one interrupted twice): identical tables."""
    clean = slurm_run.workdir / "results" / "test"
    tables = sorted(path.name for path in clean.glob("tables/*.csv"))
    assert len(tables) > 10
    for table in tables:
        assert (clean / "tables" / table).read_bytes() == (resumed_run.out / "tables" / table).read_bytes(), table
