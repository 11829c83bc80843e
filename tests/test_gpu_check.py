"""benchmarks/gpu_check.py, the script that proves the CUDA path on a lent GPU, runs here on the CPU at small
shapes (bfloat16 for part 1), so it cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_gpu_check_passes_on_the_cpu_at_small_shapes():
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--dtype", "bfloat16"],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [line.split() for line in run.stdout.splitlines()]
    checked = {row[0] for row in rows if row and row[-1] == "yes"}
    assert checked == {"llava", "qwen2_vl", "qwen2_5_vl", "llava-1.5-7b", "llava-1.5-13b", "qwen2.5-vl-7b"}
    assert not any(row and row[-1] == "NO" for row in rows)
    families = [row for row in rows if row and row[0] in ("llava", "qwen2_vl", "qwen2_5_vl")]
    assert len(families) == 3 * 8 and any("(bfloat16)" in " ".join(row) for row in families)
    assert "all checks passed" in run.stdout
