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

import numpy as np
import pandas as pd

from amps.statistics import bootstrap_interval, group_seed, spearman
from amps.vocabulary import DIRECTIONS, ESTIMATORS, SENSITIVITY_SCORES

SENSITIVITY_COLUMNS = ("record_id", "task", "direction", "flip_alpha", "collapse_alpha")


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
