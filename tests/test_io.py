"""Atomic writers: nothing half-written survives a failure, and outputs get the mode the umask gives."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from amps.core.io import atomic_path, read_table, write_table


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_of_the_umask_not_a_private_one(tmp_path, umask, mode):
    """A shared results folder (a cluster group) must be readable by the others the umask allows."""
    previous = os.umask(umask)
    try:
        write_table(tmp_path / "table.csv", pd.DataFrame({"x": [1.5]}))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "table.csv").stat().st_mode) == mode
    assert read_table(tmp_path / "table.csv")["x"].tolist() == [1.5]
