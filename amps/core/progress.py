"""Progress bars that help on a terminal and stay quiet in rule logs."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(**kwargs) -> tqdm:
    """A tqdm bar: live on a terminal; elsewhere (Snakemake logs) one line per minute at most.

    ``AMPS_PROGRESS=0`` disables bars entirely.
    """
    if os.environ.get("AMPS_PROGRESS") == "0":
        return tqdm(disable=True, **kwargs)
    interactive = sys.stderr.isatty()
    return tqdm(mininterval=0.2 if interactive else 60.0, ascii=not interactive, dynamic_ncols=interactive, **kwargs)
