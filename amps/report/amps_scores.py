"""AMPS's point scores: every measured (model, method, direction, seed, strength) against no steering, and the
main table at each method's validation-chosen setting.

Definitions (per model, direction and task; "target" is the direction's modality):

* ``shift``: the share of records that follow the target in both option orders, minus that share
  without steering (the record-level view: a letter pushed to one side never counts as a shift);
* ``ratio_shift``: the pooled vision ratio's change toward the target (sign flipped for ``to_text``);
* ``s_other`` (collapse) and ``collapse``: S_other pooled over both orders, and its increase over
  no steering;
* ``agreeing_accuracy``: the share of agreeing-control answers that name the (true) image answer,
  measured at each method's main (validation-chosen) setting, and ``agreeing_change`` against no
  steering.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from amps.metrics import conflict_metrics
from amps.vocabulary import DIRECTIONS, METHOD_LABELS, TABLE_METHODS

POINT_KEYS = ["model", "method", "direction", "seed", "strength"]


def baseline_as_points(baseline: pd.DataFrame) -> pd.DataFrame:
    """The baseline's uninstructed and agreeing answers as the ``none`` method, listed under both directions."""
    kept = baseline[baseline["condition"].isin(["none", "agreeing"])]
    kept = kept.assign(condition=kept["condition"].replace({"none": "conflict"}), method="none", seed=0, strength=0.0, main=True)
    return pd.concat([kept.assign(direction=direction) for direction in DIRECTIONS], ignore_index=True)


def point_scores(answers: pd.DataFrame) -> pd.DataFrame:
    """Scores of every (model, method, direction, seed, strength) per task and overall.

    ``answers`` must include the ``none`` method (:func:`baseline_as_points`); shifts and changes
    are taken against it.
    """
    if "none" not in set(answers["method"]):
        raise ValueError("the answers lack the unsteered reference (method 'none')")
    whole = answers.assign(task="all")
    both = pd.concat([whole, answers], ignore_index=True)
    keys = POINT_KEYS + ["task"]
    conflict = conflict_metrics(both[both["condition"] == "conflict"], keys)
    agreeing = (
        both[both["condition"] == "agreeing"]
        .groupby(keys)["choice"]
        .apply(lambda c: (c == "vision").mean())
        .rename("agreeing_accuracy")
        .reset_index()
    )
    scores = conflict.merge(agreeing, on=keys, how="left")
    main = answers.groupby(POINT_KEYS)["main"].first().reset_index()
    scores = scores.merge(main, on=POINT_KEYS, how="left")
    scores["record_target"] = np.where(scores["direction"] == "to_vision", scores["record_vision"], scores["record_text"])
    reference = scores[scores["method"] == "none"].set_index(["model", "direction", "task"])
    ref = reference.reindex(pd.MultiIndex.from_frame(scores[["model", "direction", "task"]]))
    toward = np.where(scores["direction"] == "to_vision", 1.0, -1.0)
    scores["shift"] = scores["record_target"].to_numpy() - ref["record_target"].to_numpy()
    scores["ratio_shift"] = toward * (scores["vision_ratio"].to_numpy() - ref["vision_ratio"].to_numpy())
    scores["collapse"] = scores["s_other"].to_numpy() - ref["s_other"].to_numpy()
    scores["agreeing_change"] = scores["agreeing_accuracy"].to_numpy() - ref["agreeing_accuracy"].to_numpy()
    order = {method: rank for rank, method in enumerate(TABLE_METHODS)}
    scores = scores.sort_values(
        ["model", "direction", "task", "method", "seed", "strength"],
        key=lambda column: column.map(order) if column.name == "method" else column,
    )
    return scores.reset_index(drop=True)


def mean_sd(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and sample sd (0 for a single value) of ``columns`` per group, as ``{column}`` and ``{column}_sd``."""
    grouped = frame.groupby(keys, sort=False)[columns]
    means = grouped.mean()
    spreads = grouped.std(ddof=1).fillna(0.0).add_suffix("_sd")
    counts = grouped.size().rename("seeds")
    return pd.concat([means, spreads, counts], axis=1).reset_index()


def main_points(scores: pd.DataFrame) -> pd.DataFrame:
    """Each method's main setting over all tasks, averaged over seeds (with sd)."""
    main = scores[scores["main"].astype(bool) & (scores["task"] == "all")]
    columns = ["shift", "collapse", "s_other", "ratio_shift", "vision_ratio", "agreeing_accuracy", "agreeing_change", "strength"]
    return mean_sd(main, ["model", "method", "direction"], columns)


def main_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Methods × models, both directions: shift, collapse and agreeing accuracy at each method's main setting."""
    points = main_points(scores)
    wide = []
    for direction in DIRECTIONS:
        part = points[points["direction"] == direction].drop(columns="direction").set_index(["model", "method"])
        keep = [
            "shift",
            "shift_sd",
            "collapse",
            "collapse_sd",
            "s_other",
            "agreeing_accuracy",
            "agreeing_accuracy_sd",
            "strength",
        ]
        wide.append(part[keep].add_prefix(f"{direction}."))
    table = pd.concat(wide, axis=1).reset_index()
    table.insert(2, "label", table["method"].map(METHOD_LABELS))
    table.insert(
        3,
        "seeds",
        points.groupby(["model", "method"])["seeds"]
        .max()
        .reindex(pd.MultiIndex.from_frame(table[["model", "method"]]))
        .to_numpy(),
    )
    order = {method: rank for rank, method in enumerate(TABLE_METHODS)}
    return table.sort_values(["model", "method"], key=lambda c: c.map(order) if c.name == "method" else c).reset_index(drop=True)
