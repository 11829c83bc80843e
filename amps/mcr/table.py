"""The MCR tables: which records each shard job estimates, the gathered per-model table (checked for
missing, duplicated and misplaced records), and the one loader of a table's MCR per record.

Nothing here imports torch or transformers: the gathering job starts in about a second.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from amps.core.io import read_table
from amps.vocabulary import ESTIMATORS, MODALITIES, ORDERS

#: The input ablation's and the answer-position ablation's columns (:mod:`amps.mcr.ablation`), the references
#: the MCR is set against.
INPUT_ABLATION_COLUMNS = ["p_text_clean", "p_text_no_image", "p_text_no_context", "ablation_ratio"]
ANSWER_ABLATION_COLUMNS = ["p_text_answer_no_image", "p_text_answer_no_context", "answer_ablation_ratio"]
ABLATION_COLUMNS = INPUT_ABLATION_COLUMNS + ANSWER_ABLATION_COLUMNS

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
    *ABLATION_COLUMNS,
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


def mcr_column(estimator: str) -> str:
    """The MCR table's column that γ reads: the functional entropy (``entropy``) or the Fisher term (``fisher``)."""
    try:
        return ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(f"unknown MCR estimator {estimator!r}; expected one of {sorted(ESTIMATORS)}") from None


def mcr_values(table: pd.DataFrame, estimator: str) -> pd.Series:
    """MCR per record id of an MCR table; NaN where the estimate failed (a ``problem`` is named)."""
    return record_values(table, mcr_column(estimator))


def record_values(table: pd.DataFrame, column: str) -> pd.Series:
    """One column of an MCR table per record id (``mcr``, ``ablation_ratio``, ...); NaN where the record's
    estimate failed (a ``problem`` is named)."""
    missing = {"record_id", column, "problem"} - set(table.columns)
    if missing:
        raise ValueError(f"the MCR table lacks columns {sorted(missing)}")
    indexed = table.set_index("record_id")
    return indexed[column].astype(float).where(indexed["problem"].fillna("") == "")


def load_mcr(path: str, estimator: str) -> pd.Series:
    """MCR per record id from an MCR table file (NaN where the estimate failed)."""
    try:
        return mcr_values(read_table(path), estimator)
    except ValueError as error:
        raise ValueError(f"MCR table {path}: {error}") from None


def mcr_of(mcr: pd.Series, record_ids: list[str]) -> pd.Series:
    """The MCR of ``record_ids`` in order; every record must be in the table (NaN where it failed)."""
    missing = [record_id for record_id in record_ids if record_id not in mcr.index]
    if missing:
        raise KeyError(f"{len(missing)} records have no MCR row, e.g. {missing[0]!r}")
    return mcr.loc[record_ids]
