"""The MCR against the offline world's ground truth: does it point where the evidence is?

Every world record carries how clear its image is (``image_strength``) and how firmly its context
asserts (``text_strength``). Their balance ``text_strength − image_strength`` is what the MCR should
track: the more the text outweighs the image, the more the answer rests on the text. Per model and
MCR estimator (functional entropy ``mcr``, Fisher term ``mcr_fisher``) the table gives Spearman's
correlation of the MCR with the balance over every record with a finite MCR, with a percentile
bootstrap interval over records; the second table gives the uninstructed vision share of the test
records (pooled over both option orders) by MCR bin (quantile bins of the model's test MCR). No
public benchmark has this ground truth; MC² runs skip this step.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from amps.mcr.table import mcr_values
from amps.statistics import bootstrap_interval, group_seed, spearman
from amps.vocabulary import ESTIMATORS

#: Quantile bins of a model's test MCR in the vision-share table.
VISION_BINS = 5
#: The ground-truth columns a world benchmark carries.
STRENGTHS = ("image_strength", "text_strength")


def balance(records: pd.DataFrame) -> pd.Series:
    """``text_strength − image_strength`` per record id (positive: the text's evidence outweighs the image's)."""
    missing = [column for column in STRENGTHS if column not in records.columns]
    if missing:
        raise ValueError(f"the benchmark records lack {missing}: only the offline world has evidence strengths")
    return (records["text_strength"] - records["image_strength"]).set_axis(records["record_id"])


def correlations(mcr: dict[str, pd.DataFrame], records: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """Per model and estimator: Spearman(MCR, balance), its bootstrap interval, records used and left out."""
    truth = balance(records)
    rows = []
    for model, table in mcr.items():
        for estimator, column in ESTIMATORS.items():
            values = mcr_values(table, estimator)
            finite = values[np.isfinite(values.to_numpy())]
            x, y = finite.to_numpy(), truth.reindex(finite.index).to_numpy(dtype=float)
            low, high, _defined = bootstrap_interval(x, y, resamples, group_seed(seed, model, estimator))
            rows.append(
                {
                    "model": model,
                    "estimator": estimator,
                    "column": column,
                    "spearman": spearman(x, y),
                    "low": low,
                    "high": high,
                    "records": len(finite),
                    "left_out": int(len(values) - len(finite)),
                }
            )
    return pd.DataFrame(rows)


def vision_by_bin(mcr: dict[str, pd.DataFrame], baselines: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Per model and bin of its test records' MCR: the records, their MCR range, the uninstructed vision share and ratio."""
    uninstructed = baselines[baselines["condition"] == "none"]
    rows = []
    for model, table in mcr.items():
        answers = uninstructed[uninstructed["model"] == model]
        values = mcr_values(table, "entropy")
        values = values.reindex(answers["record_id"].unique()).dropna()
        if values.empty:
            continue
        labels = pd.qcut(values.rank(method="first"), min(bins, len(values)), labels=False)
        for index, ids in values.groupby(labels).groups.items():
            chosen = answers[answers["record_id"].isin(ids)]["choice"]
            decided = (chosen != "other").sum()
            rows.append(
                {
                    "model": model,
                    "bin": int(index) + 1,
                    "records": len(ids),
                    "mcr_low": float(values[ids].min()),
                    "mcr_high": float(values[ids].max()),
                    "vision_share": float((chosen == "vision").mean()),
                    "vision_ratio": float((chosen == "vision").sum() / decided) if decided else np.nan,
                }
            )
    return pd.DataFrame(rows)
