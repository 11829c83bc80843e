"""The MCR against the offline world's ground truth: does it point where the evidence is?

Every world record carries how clear its image is (``image_strength``) and how firmly its context
asserts (``text_strength``). Their balance ``text_strength − image_strength`` is what the MCR should
track: the more the text outweighs the image, the more the answer rests on the text. Per model and
MCR estimator (functional entropy ``mcr``, Fisher term ``mcr_fisher``) the table gives Spearman's
correlation of the MCR with the balance over every record with a finite MCR, with a percentile
bootstrap interval over records, and beside it (column ``against``) with each strength alone and
with the model's own uninstructed choice (its share of text answers over both option orders, on the
records the baseline asked): where the MCR misses the balance, these say what it follows instead.
The input ablation (``estimator`` ``input_ablation``: how far the answer moves when the image is
emptied or the context left out, :mod:`amps.mcr.ablation`) gets the same rows, and the MCR is also
set against it (``against`` ``ablation_ratio``). Together they separate the two ways the MCR can miss
the balance: the model ignores the balance (the ablation misses it too), or the MCR misses the model
(it misses the ablation). The answer-position ablation (``answer_ablation``: the modality hidden from
the answer position only, all the MCR's noise can reach) is set against the same and the input
ablation: where it misses what the input ablation finds, the models carry the modalities to the answer
through other positions, out of the noise's reach.
The second table gives the uninstructed vision share of the test
records (pooled over both option orders) by MCR bin (quantile bins of the model's test MCR). No
public benchmark has this ground truth; MC² runs skip this step.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from amps.mcr.table import mcr_values, record_values
from amps.statistics import bootstrap_interval, group_seed, spearman
from amps.vocabulary import CHOICES, ESTIMATORS

#: The reference measures' names in the ``estimator`` column (:mod:`amps.mcr.ablation`): the input ablation and
#: the answer-position ablation.
ABLATION = "input_ablation"
ANSWER_ABLATION = "answer_ablation"
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


def ground_truths(records: pd.DataFrame) -> dict[str, pd.Series]:
    """Per record id: the balance, then each strength (text, image), the world's ground truth a measure is set
    against."""
    truths = {"balance": balance(records)}
    truths.update({column: records[column].set_axis(records["record_id"]) for column in STRENGTHS[::-1]})
    return truths


def choice_share(baselines: pd.DataFrame, model: str, modality: str) -> pd.Series:
    """A model's share of answers following ``modality`` (``text`` or ``vision``) to the uninstructed conflicts,
    per record id (both option orders)."""
    if modality not in CHOICES[:2]:
        raise ValueError(f"unknown modality {modality!r}; expected one of {CHOICES[:2]}")
    answers = baselines[(baselines["model"] == model) & (baselines["condition"] == "none")]
    return (answers["choice"] == modality).groupby(answers["record_id"]).mean()


def correlations(
    mcr: dict[str, pd.DataFrame], records: pd.DataFrame, resamples: int, seed: int, baselines: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per model and measure (the MCR's estimators, the input ablation, the answer-position ablation), Spearman's
    rho with what it is set against, its bootstrap interval, records used and left out.

    ``against``: ``balance``, ``text_strength``, ``image_strength``, ``text_choice`` (where ``baselines`` hold the
    model's uninstructed answers) and, for all but the input ablation, ``ablation_ratio`` (the model's own reliance).
    """
    truths = ground_truths(records)
    rows = []
    for model, table in mcr.items():
        against = dict(truths)
        choices = choice_share(baselines, model, "text") if baselines is not None else pd.Series(dtype=float)
        if not choices.empty:
            against["text_choice"] = choices
        ablation = record_values(table, "ablation_ratio")  # NaN also where neither modality pulls
        measures = {estimator: (column, mcr_values(table, estimator)) for estimator, column in ESTIMATORS.items()}
        measures[ABLATION] = ("ablation_ratio", ablation)
        measures[ANSWER_ABLATION] = ("answer_ablation_ratio", record_values(table, "answer_ablation_ratio"))
        for measure, (column, values) in measures.items():
            finite = values[np.isfinite(values.to_numpy())]
            targets = against if measure == ABLATION else {**against, "ablation_ratio": ablation.dropna()}
            for name, truth in targets.items():
                paired = finite[finite.index.isin(truth.index)]
                x, y = paired.to_numpy(), truth.reindex(paired.index).to_numpy(dtype=float)
                low, high, _defined = bootstrap_interval(x, y, resamples, group_seed(seed, model, measure, name))
                rows.append(
                    {
                        "model": model,
                        "estimator": measure,
                        "column": column,
                        "against": name,
                        "spearman": spearman(x, y),
                        "low": low,
                        "high": high,
                        "records": len(paired),
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
