"""The MCR summary across models: per model, split and task, the MCR's mean, median and spread, the
records with problems, and the MCR beside the input ablation (:mod:`amps.mcr.ablation`): the answer's
reliance on each modality measured by taking it away, which needs no ground truth, so MC² runs get it too."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amps.statistics import spearman
from amps.vocabulary import ORDERS


def mcr_against(table: pd.DataFrame, column: str) -> float:
    """Spearman's rho of the MCR with an ablation ratio column over the records where both are finite."""
    both = table[np.isfinite(table["mcr"]) & np.isfinite(table[column])]
    return spearman(both["mcr"].to_numpy(), both[column].to_numpy())


def summarize(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model, split and task (``all`` for the whole): counts, mean scores, MCR mean/median/spread, the
    input-ablation ratio's median and the MCR's Spearman correlation with it and with the answer-position
    ablation ratio (what the MCR's noise can reach).

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
                        "ablation_ratio_median": good["ablation_ratio"].median(),
                        "mcr_ablation_spearman": mcr_against(good, "ablation_ratio"),
                        "mcr_answer_ablation_spearman": mcr_against(good, "answer_ablation_ratio"),
                    }
                )
    return pd.DataFrame(rows)
