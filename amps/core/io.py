"""Atomic output writers and small I/O helpers.

Every file a rule produces is written to a temporary sibling and renamed into place, so a job
killed mid-write never leaves a partial file that Snakemake (or a user) would take as done.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would, so that
        # others who share the results folder (a cluster's group) can read it.
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; it replaces ``path`` only if the block succeeds."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (sorted keys keep outputs byte-stable)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)


def write_table(path: str | os.PathLike, frame: pd.DataFrame, float_format: str = "%.6g") -> None:
    """Write a table as CSV or Parquet (by suffix), atomically and with a fixed float format."""
    target = Path(path)
    with atomic_path(target) as tmp:
        if target.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif target.suffix == ".csv":
            frame.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")
        else:
            raise ValueError(f"unsupported table format {target.suffix!r} for {target}")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet table written by :func:`write_table`."""
    target = Path(path)
    if target.suffix == ".parquet":
        return pd.read_parquet(target)
    return pd.read_csv(target, keep_default_na=False, na_values=[""])


def split_paths(value: str, expected: int | None = None) -> list[str]:
    """The paths of a comma-separated list (a rule passes each input list so); ``expected``: how many there must be."""
    paths = [path for path in value.split(",") if path]
    if expected is not None and len(paths) != expected:
        raise ValueError(f"expected {expected} comma-separated paths, got {len(paths)}: {paths}")
    return paths


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically (contiguous CPU copies, as safetensors requires)."""
    # Imported here: table-only steps (summaries, figures, report pages) then start without torch.
    from safetensors.torch import save_file

    payload = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(payload, str(tmp), metadata=metadata)


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file (never pickle)."""
    from safetensors.torch import load_file

    return load_file(str(path))
