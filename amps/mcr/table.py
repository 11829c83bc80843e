"""The MCR tables: which records each shard job estimates, the gathered per-model table (checked for
missing, duplicated and misplaced records) and the summary across models.

Nothing here imports torch or transformers: the gathering and summary jobs start in about a second.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from amps.core.io import read_table, write_table
from amps.vocabulary import MODALITIES, ORDERS

log = logging.getLogger(__name__)

#: Columns of the MCR table (shards and the gathered table), in order.
COLUMNS = [
    "record_index",
    "record_id",
    "task",
    "split",
    "mcs_text",
    "mcs_image",
    "mcr",
    "mcs_text_se",
    "mcs_image_se",
    "mcr_se",
    "fisher_text",
    "fisher_image",
    "mcr_fisher",
    "fisher_text_se",
    "fisher_image_se",
    "mcr_fisher_se",
    *[f"mcs_{modality}_{order}" for order in ORDERS for modality in MODALITIES],
    *[f"clean_choice_{order}" for order in ORDERS],
    *[f"clean_p_{order}" for order in ORDERS],
    "problem",
]


def shard_range(count: int, shard: int, shards: int) -> range:
    """The record indices of shard ``shard`` of ``shards``: disjoint contiguous ranges covering ``count``."""
    if shards < 1:
        raise ValueError(f"the number of shards must be at least 1, got {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is out of range for {shards} shards (0 to {shards - 1})")
    return range(shard * count // shards, (shard + 1) * count // shards)


def gather_shards(shard_tables: Sequence[pd.DataFrame], shard_names: Sequence[str], record_ids: Sequence[str]) -> pd.DataFrame:
    """Merge shard tables into one, in record order; raise on any missing, duplicated or overlapping record.

    Shard ``k`` of ``len(shard_tables)`` must hold exactly the records of :func:`shard_range`, each
    with the record id the benchmark has at that index.
    """
    count, shards = len(record_ids), len(shard_tables)
    problems = []
    for shard, (table, name) in enumerate(zip(shard_tables, shard_names)):
        expected = shard_range(count, shard, shards)
        indices = table["record_index"].tolist()
        duplicated = sorted({index for index in indices if indices.count(index) > 1})
        outside = sorted(set(indices) - set(expected))
        missing = sorted(set(expected) - set(indices))
        if duplicated:
            problems.append(f"{name}: duplicated records at indices {duplicated[:10]}")
        if outside:
            problems.append(f"{name}: records at indices {outside[:10]} belong to other shards (overlap or wrong shard count)")
        if missing:
            problems.append(f"{name}: missing records at indices {missing[:10]} ({len(missing)} in all)")
        for index, record_id in zip(indices, table["record_id"]):
            if 0 <= index < count and record_ids[index] != record_id:
                problems.append(f"{name}: record {record_id!r} at index {index}, but the benchmark has {record_ids[index]!r}")
                break
    if problems:
        raise ValueError("cannot gather the MCR shards:\n  " + "\n  ".join(problems))
    filled = [table for table in shard_tables if not table.empty]
    if not filled:
        return pd.DataFrame(columns=COLUMNS)
    gathered = pd.concat(filled, ignore_index=True).sort_values("record_index", kind="stable")
    return gathered.reset_index(drop=True)[COLUMNS]


def summarize(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model, split and task (``all`` for the whole): counts, mean scores, MCR mean/median/spread.

    Records with non-finite values are counted in ``n_problem`` and left out of the means.
    """
    rows = []
    for model, table in tables.items():
        for split in ["all", *sorted(table["split"].unique())]:
            for task in ["all", *sorted(table["task"].unique())]:
                part = table[((table["split"] == split) | (split == "all")) & ((table["task"] == task) | (task == "all"))]
                if part.empty:
                    continue
                good = part[part["problem"] == ""]
                rows.append(
                    {
                        "model": model,
                        "split": split,
                        "task": task,
                        "n": len(part),
                        "n_problem": len(part) - len(good),
                        "mcs_text_mean": good["mcs_text"].mean(),
                        "mcs_image_mean": good["mcs_image"].mean(),
                        "mcr_mean": good["mcr"].mean(),
                        "mcr_median": good["mcr"].median(),
                        "mcr_sd": good["mcr"].std(),
                        "mcr_se_median": good["mcr_se"].median(),
                        "mcr_fisher_mean": good["mcr_fisher"].mean(),
                        "mcr_fisher_median": good["mcr_fisher"].median(),
                        "clean_vision_share": float(
                            np.mean([(good[f"clean_choice_{order}"] == "vision").mean() for order in ORDERS])
                        ),
                    }
                )
    return pd.DataFrame(rows)


def summarize_mcr(settings: dict, tables: str, output: str) -> None:
    """CLI step: the MCR summary table over all models (``settings["models"]`` names the tables in order)."""
    paths = tables.split(",")
    if len(paths) != len(settings["models"]):
        raise ValueError(f"{len(paths)} MCR tables for {len(settings['models'])} models {settings['models']}")
    summary = summarize({model: read_table(path) for model, path in zip(settings["models"], paths)})
    summary.insert(0, "run", settings["run_name"])
    write_table(output, summary)
