"""The MCR of a benchmark's records: both option orders, both modalities, both estimators, one table row each
(the columns of :data:`amps.mcr.table.COLUMNS`), each estimated by :func:`amps.mcr.measure.measure_mcr`."""

from __future__ import annotations

import dataclasses

import pandas as pd

from amps.core.progress import progress
from amps.data.benchmark import Benchmark
from amps.mcr.measure import measure_mcr
from amps.mcr.settings import EstimatorSettings
from amps.mcr.table import COLUMNS
from amps.models.interface import MultimodalModel


def estimate_record(
    model: MultimodalModel, benchmark: Benchmark, record, settings: EstimatorSettings, max_batch: int, ablation: bool = True
) -> dict:
    """The MCR row of one benchmark record (at most ``max_batch`` samples per pass), with its input ablation
    unless ``ablation`` is False (its columns then NaN)."""
    image = benchmark.image(record["record_id"])
    estimate = measure_mcr(
        model, {**record, "image": image}, **dataclasses.asdict(settings), max_batch=max_batch, ablation=ablation
    )
    return {"record_id": record["record_id"], "task": record["task"], "split": record["split"], **estimate.columns}


def estimate_records(
    model: MultimodalModel,
    benchmark: Benchmark,
    indices: range,
    settings: EstimatorSettings,
    max_batch: int,
    desc: str,
    ablation: bool = True,
) -> pd.DataFrame:
    """MCR rows for the benchmark records at ``indices`` (positions in the benchmark's records); ``ablation`` as in
    :func:`estimate_record`."""
    rows = []
    with progress(total=len(indices), desc=desc, unit="record") as bar:
        for index in indices:
            row = estimate_record(model, benchmark, benchmark.records.iloc[index], settings, max_batch, ablation)
            rows.append({"record_index": index, **row})
            bar.update(1)
    return pd.DataFrame(rows, columns=COLUMNS)
