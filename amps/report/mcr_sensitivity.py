"""How a record's MCR relates to its per-sample steering sensitivity from the strength sweep.

The sweep (:mod:`amps.steering.sweep`) gives, for every test record and steering direction (``to_vision``,
``to_text``), two strengths of its grid:

* ``flip_alpha``: the smallest α at which the record follows the direction's modality in both
  option orders (0 when it already does unsteered);
* ``collapse_alpha``: the smallest α at which an answer names no option.

Either is the record's sensitivity score: the smaller, the more sensitive. NaN means that no α of the
grid did it; such a record is "beyond the grid", less sensitive than any record with a finite score,
and ranked above them all (ties among themselves). Spearman's correlation is rank-based, so this
needs no made-up value.

The expectation: a record whose answer rests on the text (high MCR) needs a larger push to follow
the image (positive correlation with ``to_vision`` scores) and a smaller one to follow the text
(negative correlation with ``to_text`` scores).

Per model, task (``all`` for the whole), direction, score and MCR estimator (functional entropy:
``mcr``; Fisher term: ``mcr_fisher``) the table gives Spearman's correlation and a percentile
bootstrap interval over records (95 %). Records whose MCR is NaN (a non-finite Monte Carlo value)
are left out and counted.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from amps.core.io import read_table, write_table
from amps.vocabulary import DIRECTIONS, ESTIMATORS, SENSITIVITY_SCORES

log = logging.getLogger(__name__)

SENSITIVITY_COLUMNS = ("record_id", "task", "direction", "flip_alpha", "collapse_alpha")
INTERVAL = 0.95
#: Fewer records than this give no correlation (NaN).
MIN_RECORDS = 3


def _ranks(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks along ``axis``, ties averaged (scipy's ``rankdata``)."""
    # Imported here: scipy.stats costs over a second at start-up, paid by every model job that imports amps.
    from scipy.stats import rankdata

    return rankdata(values, axis=axis)


def beyond_grid_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks along the last axis with NaN ("beyond the grid") above every finite score; ties share a mean rank."""
    return _ranks(np.where(np.isnan(scores), np.inf, scores), axis=-1)


def rank_correlation(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation of ranks along the last axis (Spearman's rho); NaN where either side is constant."""
    x = x_ranks - x_ranks.mean(axis=-1, keepdims=True)
    y = y_ranks - y_ranks.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y).sum(axis=-1) / np.where(denominator > 0, denominator, 1.0), np.nan)


def spearman(mcr: np.ndarray, scores: np.ndarray) -> float:
    """Spearman's rho between MCR values (finite) and sensitivity scores (NaN = beyond the grid)."""
    if len(mcr) < MIN_RECORDS:
        return float("nan")
    return float(rank_correlation(_ranks(mcr), beyond_grid_ranks(scores)))


def bootstrap_interval(
    mcr: np.ndarray, scores: np.ndarray, resamples: int, seed: int, confidence: float = INTERVAL
) -> tuple[float, float, int]:
    """Percentile bootstrap interval (``confidence``) of Spearman's rho over records, and how many resamples defined it.

    A resample whose MCR or scores are all tied has no correlation and is left out (counted).
    """
    if len(mcr) < MIN_RECORDS:
        return float("nan"), float("nan"), 0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(mcr), size=(resamples, len(mcr)))
    rhos = rank_correlation(_ranks(mcr[picks], axis=-1), beyond_grid_ranks(scores[picks]))
    defined = rhos[np.isfinite(rhos)]
    if len(defined) == 0:
        return float("nan"), float("nan"), 0
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high), int(len(defined))


def group_seed(seed: int, *keys: str) -> int:
    """A stable seed for one group's bootstrap (independent of the order groups are computed in)."""
    digest = hashlib.blake2b("|".join([str(seed), *keys]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def joined(mcr: pd.DataFrame, sensitivity: pd.DataFrame, model: str) -> pd.DataFrame:
    """The sensitivity rows of one model with each record's MCR values; every record must have an MCR row."""
    missing_columns = [column for column in SENSITIVITY_COLUMNS if column not in sensitivity.columns]
    if missing_columns:
        raise ValueError(f"the sensitivity table of {model} lacks columns {missing_columns}")
    unknown = sorted(set(sensitivity["direction"]) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"the sensitivity table of {model} has unknown directions {unknown}; expected {list(DIRECTIONS)}")
    merged = sensitivity.merge(
        mcr[["record_id", "task", *ESTIMATORS.values()]], on="record_id", how="left", suffixes=("", "_mcr"), indicator=True
    )
    absent = merged.loc[merged["_merge"] != "both", "record_id"].tolist()
    if absent:
        raise ValueError(f"{len(absent)} records of the sensitivity table of {model} have no MCR row: {absent[:5]}")
    mismatched = merged.loc[merged["task"] != merged["task_mcr"], "record_id"].tolist()
    if mismatched:
        raise ValueError(f"records of {model} have different tasks in the MCR and sensitivity tables: {mismatched[:5]}")
    return merged.drop(columns=["_merge", "task_mcr"])


def correlations(mcr: pd.DataFrame, sensitivity: pd.DataFrame, model: str, resamples: int, seed: int) -> pd.DataFrame:
    """Spearman's rho (with bootstrap interval) of MCR against each sensitivity score, per task and direction."""
    data = joined(mcr, sensitivity, model)
    rows = []
    for task in ["all", *sorted(data["task"].unique())]:
        for direction in DIRECTIONS:
            part = data[(data["direction"] == direction) & ((data["task"] == task) | (task == "all"))]
            for estimator, column in ESTIMATORS.items():
                usable = part[np.isfinite(part[column].to_numpy(dtype=float))]
                for score in SENSITIVITY_SCORES:
                    values = usable[column].to_numpy(dtype=float)
                    scores = usable[score].to_numpy(dtype=float)
                    low, high, defined = bootstrap_interval(
                        values, scores, resamples, group_seed(seed, model, task, direction, estimator, score)
                    )
                    rows.append(
                        {
                            "model": model,
                            "task": task,
                            "direction": direction,
                            "score": score,
                            "estimator": estimator,
                            "n": len(usable),
                            "n_beyond_grid": int(np.isnan(scores).sum()),
                            "n_mcr_nan": len(part) - len(usable),
                            "spearman": spearman(values, scores),
                            "ci_low": low,
                            "ci_high": high,
                            "bootstrap_defined": defined,
                        }
                    )
    return pd.DataFrame(rows)


def analyze_sensitivity(settings: dict, mcr: str, sensitivity: str, output: str) -> None:
    """CLI step: the MCR-sensitivity correlations of every model (comma-separated tables in ``settings["models"]`` order)."""
    models = settings["models"]
    mcr_paths, sensitivity_paths = mcr.split(","), sensitivity.split(",")
    if not len(mcr_paths) == len(sensitivity_paths) == len(models):
        raise ValueError(f"{len(mcr_paths)} MCR and {len(sensitivity_paths)} sensitivity tables for models {models}")
    frames = [
        correlations(read_table(mcr_path), read_table(sensitivity_path), model, settings["bootstrap"], settings["seed"])
        for model, mcr_path, sensitivity_path in zip(models, mcr_paths, sensitivity_paths)
    ]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "run", settings["run_name"])
    write_table(output, table)
    overview = table[(table["task"] == "all") & (table["estimator"] == "entropy")]
    log.info("MCR against sensitivity (all tasks, entropy MCR):\n%s", overview.to_string(index=False))
