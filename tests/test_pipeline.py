"""The real Snakemake DAG on config/test.yaml, run twice: every output appears, tables are identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def snakemake_command(workdir: Path, cores: int = 2) -> list[str]:
    """The command that runs the whole DAG of the test config in ``workdir``."""
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(REPO / "config" / "test.yaml"),
        "--cores", str(cores),
    ]


def pipeline_env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", AMPS_PROGRESS="0")


def run_pipeline(workdir: Path) -> subprocess.CompletedProcess:
    """Run the whole DAG of the test config in ``workdir`` (outputs land under workdir/results)."""
    return subprocess.run(snakemake_command(workdir), capture_output=True, text=True, env=pipeline_env())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    outputs = []
    for name in ("first", "second"):
        workdir = tmp_path_factory.mktemp(name)
        result = run_pipeline(workdir)
        assert result.returncode == 0, result.stderr[-4000:]
        outputs.append(workdir / "results" / "test")
    return outputs[0], outputs[1]


def test_dag_produces_tables_models_and_figures(two_runs):
    out, _ = two_runs
    model = out / "models" / "toy-xs"
    assert (model / "config.json").is_file() and any(model.glob("*.safetensors"))
    assert not list(out.glob("models/.*partial"))
    for figure in ("preference.pdf", "preference.png"):
        assert (out / "figures" / figure).stat().st_size > 1000
    scores = pd.read_csv(out / "tables" / "baseline_scores.csv")
    pooled = scores[(scores["task"] == "all") & (scores["view"] == "pooled")]
    assert set(pooled["condition"]) == {"none", "text", "image", "agreeing"}
    shares = pooled[["s_vision", "s_text", "s_other"]].sum(axis=1)
    assert shares.round(9).eq(1.0).all()
    assert (pooled["n"] == 2 * 8).all()  # 8 test records (2 tasks x 10 x 0.4), both orders
    assert set(scores["run"]) == {"test"}
    checks = pd.read_csv(out / "tables" / "toy_model_checks.csv")
    assert list(checks["model"]) == ["toy-xs"]
    assert (out / "logs" / "prepare_benchmark.log").is_file()


def test_same_config_same_tables_byte_for_byte(two_runs):
    first, second = two_runs
    tables = sorted(path.relative_to(first) for path in first.glob("tables/*.csv"))
    assert tables
    for table in tables:
        assert (first / table).read_bytes() == (second / table).read_bytes(), table

