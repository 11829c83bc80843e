"""GPU pinning on a workstation: each job claims its own devices (device list faked, no GPU needed); batched work
halves its passes on CUDA out of memory (simulated)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from amps import cli
from amps.core import devices

from conftest import REPO


@pytest.fixture()
def two_fake_gpus(tmp_path, monkeypatch) -> Path:
    """A machine with GPUs 0 and 1 (AMPS_GPUS) and a private lock folder; returns the folder."""
    monkeypatch.setenv(devices.POOL_VARIABLE, "0,1")
    monkeypatch.setenv(devices.LOCK_DIR_VARIABLE, str(tmp_path / "locks"))
    monkeypatch.delenv(devices.VISIBLE_VARIABLE, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return devices.lock_dir()


def test_claims_take_free_devices_and_give_them_back(two_fake_gpus):
    with devices.claimed_devices(1) as first:
        assert first == ["0"] and os.environ[devices.VISIBLE_VARIABLE] == "0"
        held = devices.try_claim(["0", "1"], 1, two_fake_gpus)
        assert list(held) == ["1"]
        assert devices.try_claim(["0", "1"], 1, two_fake_gpus) is None  # both busy
        devices.release(held)
    assert devices.VISIBLE_VARIABLE not in os.environ
    both = devices.try_claim(["0", "1"], 2, two_fake_gpus)
    assert sorted(both) == ["0", "1"]
    devices.release(both)


def test_a_partial_claim_is_never_held(two_fake_gpus):
    held = devices.try_claim(["0", "1"], 1, two_fake_gpus)
    assert devices.try_claim(["0", "1"], 2, two_fake_gpus) is None
    # GPU 1 was not kept by the failed two-device claim.
    other = devices.try_claim(["0", "1"], 1, two_fake_gpus)
    assert list(other) == ["1"]
    devices.release(held)
    devices.release(other)


def test_more_gpus_than_the_machine_has_is_an_error(two_fake_gpus):
    with pytest.raises(RuntimeError, match="asks for 3 GPUs but only 2"):
        with devices.claimed_devices(3):
            pass


def run_step(settings: dict, monkeypatch) -> str | None:
    """Run an ``amps`` step through the CLI with the step itself replaced; return its CUDA_VISIBLE_DEVICES."""
    seen = {}

    def fake_step(settings, scores, output):
        seen["visible"] = os.environ.get(devices.VISIBLE_VARIABLE)

    monkeypatch.setattr(cli, "resolve", lambda command: fake_step)
    monkeypatch.setattr(cli, "settings_class", lambda command: SimpleNamespace(from_params=lambda values: values))
    cli.main(["plot-preference", "--settings", json.dumps(settings), "--scores", "s.csv", "--output", "f.pdf"])
    return seen["visible"]


def test_cli_pins_a_model_step_to_its_gpus(two_fake_gpus, monkeypatch):
    assert run_step({"model": {"gpus": 2}}, monkeypatch) == "0,1"
    assert run_step({"model": {"gpus": 0}}, monkeypatch) == ""  # a CPU model's step sees no GPU
    assert run_step({"run_name": "x"}, monkeypatch) is None  # no model: the environment is left alone


def test_cli_leaves_devices_to_slurm(two_fake_gpus, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv(devices.VISIBLE_VARIABLE, "3")
    assert run_step({"model": {"gpus": 1}}, monkeypatch) == "3"


GPU_JOBS_SNAKEFILE = """
rule all:
    input:
        expand("jobs/{{index}}.json", index=range(4)),

rule gpu_job:
    output:
        "jobs/{{index}}.json",
    resources:
        gpu=1,
    shell:
        "{python} gpu_job.py {{output}}"
"""

# Each job claims one GPU the way an `amps` step does, then records its device, when it was
# launched and when it held the device.
GPU_JOB_SCRIPT = """
import json, os, sys, time
launched = time.time()
from amps.core.devices import claimed_devices
with claimed_devices(1) as claimed:
    start = time.time()
    time.sleep(1.5)
    record = {"devices": claimed, "visible": os.environ["CUDA_VISIBLE_DEVICES"], "launched": launched, "start": start,
              "end": time.time()}
open(sys.argv[1], "w").write(json.dumps(record))
"""


@pytest.mark.dag
def test_two_gpu_workstation_runs_concurrent_gpu_jobs_on_different_devices(two_fake_gpus, tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(GPU_JOBS_SNAKEFILE.format(python=sys.executable))
    (tmp_path / "gpu_job.py").write_text(GPU_JOB_SCRIPT)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(snakefile),
            "--directory",
            str(tmp_path),
            "--profile",
            str(REPO / "profiles" / "workstation"),
            "--cores",
            "4",  # more cores than GPUs: the profile's GPU count is what limits the jobs
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [json.loads(path.read_text()) for path in sorted((tmp_path / "jobs").glob("*.json"))]
    assert len(jobs) == 4
    for job in jobs:
        assert len(job["devices"]) == 1 and job["visible"] == job["devices"][0]
    overlapping = [(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1 :] if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "the two GPUs never ran jobs at the same time"
    for a, b in overlapping:
        assert a["devices"] != b["devices"]
    for job in jobs:
        # Snakemake itself never launches more GPU jobs than the profile's two GPUs (the locks
        # would only make a third one wait).
        at_once = sum(other["launched"] <= job["launched"] < other["end"] for other in jobs)
        assert at_once <= 2


def squares_failing_above(rows: int, calls: list[tuple[int, int]]):
    """A pass function giving the squares of its items, out of CUDA memory in passes of more than ``rows``."""

    def run_pass(start: int, stop: int) -> list[int]:
        calls.append((start, stop))
        if stop - start > rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return [item * item for item in range(start, stop)]

    return run_pass


def test_passes_cut_the_items_in_order():
    calls = []
    passes = devices.run_in_passes(squares_failing_above(4, calls), 10, 4, "squares")
    assert calls == [(0, 4), (4, 8), (8, 10)]
    assert sum(passes, []) == [item * item for item in range(10)]


def test_a_pass_out_of_gpu_memory_is_retried_at_half_its_size_with_a_log_line(caplog):
    calls = []
    with caplog.at_level(logging.WARNING, logger="amps.core.devices"):
        passes = devices.run_in_passes(squares_failing_above(3, calls), 10, 8, "squares")
    assert sum(passes, []) == [item * item for item in range(10)]
    # Halved from the failed start, and the later passes stay at the smaller size.
    assert calls == [(0, 8), (0, 4), (0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert [record.getMessage() for record in caplog.records] == [
        "squares: CUDA out of memory in a pass of 8 rows; retrying with 4 rows per pass",
        "squares: CUDA out of memory in a pass of 4 rows; retrying with 2 rows per pass",
    ]


def test_a_single_row_out_of_memory_and_other_errors_are_raised():
    calls = []
    with pytest.raises(torch.cuda.OutOfMemoryError):
        devices.run_in_passes(squares_failing_above(0, calls), 3, 2, "squares")
    assert calls == [(0, 2), (0, 1)]

    def broken(start: int, stop: int) -> None:
        raise RuntimeError("not a memory problem")

    with pytest.raises(RuntimeError, match="not a memory problem"):
        devices.run_in_passes(broken, 3, 2, "broken")
    with pytest.raises(ValueError, match="rows >= 1"):
        devices.run_in_passes(broken, 3, 0, "broken")
