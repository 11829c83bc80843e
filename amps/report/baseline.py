"""The toy models' behaviour checks: what each toy must show on the baseline's test split (``evaluation.checks``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np
import pandas as pd

from amps.report.mcr_validation import STRENGTHS, choice_share, ground_truths
from amps.statistics import spearman


@dataclass(frozen=True)
class BaselineChecks:
    """The thresholds of the toy models' checks (``evaluation.checks``)."""

    agreeing_accuracy: float
    instruction_following: float
    blank_image: tuple[float, float]
    vision_ratio: tuple[float, float]
    task_lean: tuple[float, float]
    max_other: float

    READS: ClassVar[tuple[str, ...]] = tuple(
        f"evaluation.checks.{key}"
        for key in ("agreeing_accuracy", "instruction_following", "blank_image", "vision_ratio", "task_lean", "max_other")
    )

    @classmethod
    def from_config(cls, config: Mapping) -> BaselineChecks:
        checks = config["evaluation"]["checks"]
        return cls(
            checks["agreeing_accuracy"],
            checks["instruction_following"],
            tuple(checks["blank_image"]),
            tuple(checks["vision_ratio"]),
            tuple(checks["task_lean"]),
            checks["max_other"],
        )


#: How the uninstructed choice follows the evidence (:func:`choice_follows_evidence`).
EVIDENCE_COLUMNS = ("choice_follows_balance", "choice_follows_text_strength", "choice_follows_image_strength")
CHECK_COLUMNS = [
    "model",
    "agreeing_accuracy",
    "agreeing_accuracy_image",
    "agreeing_accuracy_text",
    "weakest_image_task",
    "weakest_image_task_accuracy",
    "follows_image_instruction",
    "follows_text_instruction",
    "blank_image_accuracy",
    "uninstructed_vision_ratio",
    "uninstructed_s_other",
    "lowest_task_vision_ratio",
    "highest_task_vision_ratio",
    "leans_both_ways",
    *EVIDENCE_COLUMNS,
    "passes",
]


def choice_follows_evidence(answers: pd.DataFrame, records: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per model: how its uninstructed choice follows the evidence, as Spearman's rho over records (both option orders).

    ``choice_follows_balance``: the share of text answers with the balance (text strength − image strength);
    ``choice_follows_text_strength``: the same share with the text's strength; ``choice_follows_image_strength``:
    the share of vision answers with the image's strength. Each is positive where the model trusts that evidence
    more the stronger it is. Empty when the records carry no strengths (MC²).
    """
    if not set(STRENGTHS) <= set(records.columns):
        return {}
    truths = ground_truths(records)
    # Each column: whose share of answers, against which evidence.
    against = dict(
        zip(
            EVIDENCE_COLUMNS,
            (("text", truths["balance"]), ("text", truths["text_strength"]), ("vision", truths["image_strength"])),
        )
    )
    result = {}
    for model in sorted(answers["model"].unique()):
        shares = {modality: choice_share(answers, model, modality) for modality in ("text", "vision")}
        result[model] = {
            column: spearman(shares[modality].to_numpy(), truth.reindex(shares[modality].index).to_numpy(dtype=float))
            for column, (modality, truth) in against.items()
        }
    return result


def toy_checks(
    scores: pd.DataFrame, checks: BaselineChecks, follows_evidence: Mapping[str, Mapping[str, float]] | None = None
) -> pd.DataFrame:
    """The behaviour the toy models must show, per model, with pass/fail against the config (``evaluation.checks``).

    A model passes when it answers agreeing records right with no instruction and under each (so it
    does not "pick the option the text does not mention"), follows each instruction on conflicts,
    answers the blank-image control under the image instruction at chance (it reads the image), gives
    few answers naming no option, and has a pooled uninstructed vision ratio within the range.
    ``leans_both_ways`` (one task's ratio at most the first bound of ``task_lean``, one's at least the
    second) is reported beside it: the run needs it on some scales, not every model, and so are the
    ``choice_follows_*`` columns (:func:`choice_follows_evidence`, given in ``follows_evidence``; NaN without
    it): whether the uninstructed choice goes with the stronger evidence, and with each modality's own.
    ``weakest_image_task`` names the task whose agreeing records the model answers worst under the image
    instruction (where a toy falls back on "pick the option the text does not mention"), with that accuracy.
    """
    pooled = scores[scores["view"] == "pooled"].set_index(["model", "condition", "task"])
    rows = []
    for model in sorted(scores["model"].unique()):
        whole = pooled.xs("all", level="task").loc[model]
        by_task = pooled.loc[model].drop(index="all", level="task", errors="ignore")
        tasks = by_task.xs("none", level="condition")["vision_ratio"]
        image_reading = by_task.xs("agreeing_image", level="condition")["s_vision"]
        row = {
            "model": model,
            "agreeing_accuracy": whole.loc["agreeing", "s_vision"],
            "agreeing_accuracy_image": whole.loc["agreeing_image", "s_vision"],
            "agreeing_accuracy_text": whole.loc["agreeing_text", "s_vision"],
            "weakest_image_task": image_reading.idxmin(),
            "weakest_image_task_accuracy": image_reading.min(),
            "follows_image_instruction": whole.loc["image", "s_vision"],
            "follows_text_instruction": whole.loc["text", "s_text"],
            "blank_image_accuracy": whole.loc["blank_image", "s_vision"],
            "uninstructed_vision_ratio": whole.loc["none", "vision_ratio"],
            "uninstructed_s_other": whole.loc["none", "s_other"],
            "lowest_task_vision_ratio": tasks.min(),
            "highest_task_vision_ratio": tasks.max(),
        }
        row["leans_both_ways"] = bool(
            row["lowest_task_vision_ratio"] <= checks.task_lean[0] and row["highest_task_vision_ratio"] >= checks.task_lean[1]
        )
        row.update({column: (follows_evidence or {}).get(model, {}).get(column, np.nan) for column in EVIDENCE_COLUMNS})
        agreeing = min(row["agreeing_accuracy"], row["agreeing_accuracy_image"], row["agreeing_accuracy_text"])
        following = min(row["follows_image_instruction"], row["follows_text_instruction"])
        row["passes"] = bool(
            agreeing >= checks.agreeing_accuracy
            and following >= checks.instruction_following
            and checks.blank_image[0] <= row["blank_image_accuracy"] <= checks.blank_image[1]
            and checks.vision_ratio[0] <= row["uninstructed_vision_ratio"] <= checks.vision_ratio[1]
            and row["uninstructed_s_other"] <= checks.max_other
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)
