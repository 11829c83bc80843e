"""The sweep's scores across models: per direction, strength, task and view, with order agreement and
same-letter shares and the sweep's settings beside them."""

from __future__ import annotations

import pandas as pd

from amps.metrics import SWEEP_KEYS, score


def sweep_scores(answers: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Scores per model, direction, α, task and view, with order agreement and same-letter shares."""
    table = score(answers, SWEEP_KEYS)
    agreement = []
    for task_level in ("all", "task"):
        keys = SWEEP_KEYS + (["task"] if task_level == "task" else [])
        shares = records.groupby(keys)[["orders_agree", "same_letter"]].mean().reset_index()
        if task_level == "all":
            shares["task"] = "all"
        agreement.append(shares)
    table = table.merge(pd.concat(agreement, ignore_index=True), on=SWEEP_KEYS + ["task"], how="left")
    settings_columns = answers.groupby(["model", "direction", "alpha"])[
        ["layer", "positions", "steer_norm", "reference_norm"]
    ].first()
    return table.merge(settings_columns.reset_index(), on=SWEEP_KEYS, how="left")
