"""GPU pinning for jobs that Snakemake runs on this machine, and batched work that survives running out of GPU memory.

Snakemake's local executor counts GPUs (``--resources gpu=N``) but never tells a job which GPUs are
its own: every job would see every GPU and start on GPU 0. So each ``amps`` step that runs a model
claims the GPUs its config gives the model (``models.<name>.gpus``, see :mod:`amps.core.resources`)
before it imports torch: one lock file per device in a machine-wide folder, held with ``flock`` for
the life of the process (the kernel releases it when the process ends, even on a crash), and sets
``CUDA_VISIBLE_DEVICES`` to the claimed devices. A step whose model runs on the CPU sees no GPU.

The devices to share come from ``AMPS_GPUS`` (comma-separated ids, e.g. ``0,1``), else from
``CUDA_VISIBLE_DEVICES`` as the user set it, else from ``nvidia-smi``. Under SLURM
(``SLURM_JOB_ID`` set) nothing is done: SLURM already gives each job its own GPUs.

:func:`run_in_passes` runs batched work (the MCR's passes, generation) so that a batch that runs out of
GPU memory is retried at half its size instead of failing the job.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

log = logging.getLogger(__name__)

POOL_VARIABLE = "AMPS_GPUS"
LOCK_DIR_VARIABLE = "AMPS_GPU_LOCK_DIR"
VISIBLE_VARIABLE = "CUDA_VISIBLE_DEVICES"
POLL_SECONDS = 2.0

Result = TypeVar("Result")


def device_pool() -> list[str]:
    """The GPU ids this machine's jobs share (empty when there is no GPU)."""
    for variable in (POOL_VARIABLE, VISIBLE_VARIABLE):
        value = os.environ.get(variable)
        if value is not None:
            return [device.strip() for device in value.split(",") if device.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()] if listing.returncode == 0 else []


def lock_dir() -> Path:
    """Machine-wide folder of the per-device lock files (``AMPS_GPU_LOCK_DIR`` overrides it)."""
    folder = Path(os.environ.get(LOCK_DIR_VARIABLE) or Path(tempfile.gettempdir()) / "amps-gpu-locks")
    folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_uid == os.getuid():
        # Like /tmp: every user's jobs share the GPUs, so every user may add lock files here.
        folder.chmod(0o1777)
    return folder


def _lock_file(folder: Path, device: str) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"


def try_claim(pool: list[str], count: int, folder: Path) -> dict[str, int] | None:
    """Lock ``count`` free devices of ``pool`` at once: {device: open lock fd}, or None (none held)."""
    held: dict[str, int] = {}
    for device in pool:
        if len(held) == count:
            break
        # Read-only is enough for flock, so another user's lock file serves as well as one's own.
        fd = os.open(_lock_file(folder, device), os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held[device] = fd
    if len(held) == count:
        return held
    # Never hold part of a claim while waiting: two jobs each holding one GPU of two would deadlock.
    release(held)
    return None


def release(held: dict[str, int]) -> None:
    """Give back claimed devices."""
    for fd in held.values():
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def claimed_devices(count: int, poll_seconds: float = POLL_SECONDS) -> Iterator[list[str]]:
    """Claim ``count`` GPUs of this machine for the block, waiting until they are free.

    ``CUDA_VISIBLE_DEVICES`` names the claimed devices inside the block and is restored after it.
    With ``count`` 0 the block sees no GPU. On a machine without GPUs the block runs unpinned (the
    model then loads on the CPU), with a warning.
    """
    previous = os.environ.get(VISIBLE_VARIABLE)
    pool = device_pool()
    held: dict[str, int] = {}
    if count > 0 and not pool:
        log.warning("the job asks for %d GPU(s) but this machine has none: running on the CPU", count)
    elif count > len(pool):
        raise RuntimeError(f"the job asks for {count} GPUs but only {len(pool)} are shared here ({pool})")
    elif count > 0:
        folder = lock_dir()
        waited = False
        while (claim := try_claim(pool, count, folder)) is None:
            if not waited:
                log.info("waiting for %d free GPU(s) of %s (locks in %s)", count, pool, folder)
                waited = True
            time.sleep(poll_seconds)
        held = claim
    if count == 0 or held:
        os.environ[VISIBLE_VARIABLE] = ",".join(held)
        log.info("%s=%s", VISIBLE_VARIABLE, os.environ[VISIBLE_VARIABLE])
    try:
        yield list(held)
    finally:
        release(held)
        if previous is None:
            os.environ.pop(VISIBLE_VARIABLE, None)
        else:
            os.environ[VISIBLE_VARIABLE] = previous


def job_devices(settings: dict) -> contextlib.AbstractContextManager:
    """The device context of one ``amps`` step: a GPU claim for steps that run a model, off SLURM."""
    model = settings.get("model")
    if not isinstance(model, dict) or "gpus" not in model or "SLURM_JOB_ID" in os.environ:
        return contextlib.nullcontext()
    return claimed_devices(model["gpus"])


def run_in_passes(run_pass: Callable[[int, int], Result], total: int, rows: int, what: str) -> list[Result]:
    """``run_pass(start, stop)`` over items ``0 .. total - 1`` in passes of at most ``rows``; on CUDA out of memory, halve.

    A pass that runs out of GPU memory is run again from the same start with half as many rows, as is
    every pass after it, once the allocator has given back its cached blocks; each halving logs a line
    naming ``what``. A pass of one row that runs out of memory raises. ``run_pass`` must be callable again
    from a start whose pass failed, and its results must not depend on where passes are cut (the MCR
    rewinds its noise stream to the start; the results are then identical). Returns one result per
    successful pass, in order.
    """
    import torch  # here, not at the top: steps claim their GPUs before torch is imported

    if total < 0 or rows < 1:
        raise ValueError(f"run_in_passes needs total >= 0 and rows >= 1, got total {total} and rows {rows}")
    results, start = [], 0
    while start < total:
        stop = min(total, start + rows)
        try:
            results.append(run_pass(start, stop))
        except torch.cuda.OutOfMemoryError:
            if stop - start == 1:
                raise
        else:
            start = stop
            continue
        # Outside the handler: the traceback, and the tensors its frames held, are gone by now.
        torch.cuda.empty_cache()
        rows = (stop - start) // 2
        log.warning("%s: CUDA out of memory in a pass of %d rows; retrying with %d rows per pass", what, stop - start, rows)
    return results
