"""Scores of answer tables: S_vision, S_text, S_other and the vision ratio, per option order, pooled
and per record, with the rate of answering "A"; the toy models' checks; the sweep's per-record
tables, per-sample sensitivity and scores.

Scores follow MC²: S_vision, S_text and S_other sum to 1 and vision ratio = S_vision / (S_vision +
S_text). They are reported for each option order, for both orders pooled (MC²'s protocol), and for
the record-level view, where a record follows a modality only if both orders pick that modality's
answer; ``rate_a`` (the share of answers that chose letter A) sits beside them so that a model
pushed to one letter is not mistaken for a modality shift.

Nothing here imports torch or transformers: the table jobs that use it start in about a second.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from amps.core.io import read_table, write_table
from amps.vocabulary import ALPHA_UNIT, DIRECTIONS, ORDERS

log = logging.getLogger(__name__)

SWEEP_KEYS = ["model", "direction", "alpha"]
SCORE_COLUMNS = ["n", "s_vision", "s_text", "s_other", "vision_ratio", "rate_a"]
CHECK_COLUMNS = [
    "model",
    "agreeing_accuracy",
    "agreeing_accuracy_image",
    "agreeing_accuracy_text",
    "follows_image_instruction",
    "follows_text_instruction",
    "blank_image_accuracy",
    "uninstructed_vision_ratio",
    "uninstructed_s_other",
    "lowest_task_vision_ratio",
    "highest_task_vision_ratio",
    "leans_both_ways",
    "passes",
]


def _shares(choices: pd.Series, letters: pd.Series) -> dict[str, float]:
    n = len(choices)
    s_vision = float((choices == "vision").mean()) if n else np.nan
    s_text = float((choices == "text").mean()) if n else np.nan
    decided = s_vision + s_text
    return {
        "n": n,
        "s_vision": s_vision,
        "s_text": s_text,
        "s_other": 1.0 - decided if n else np.nan,
        "vision_ratio": s_vision / decided if n and decided > 0 else np.nan,
        "rate_a": float((letters == "A").mean()) if n else np.nan,
    }


def record_choices(answers: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Record-level choices: a modality only where both option orders chose it, else ``other``."""
    wide = answers.pivot_table(index=keys + ["record_id"], columns="order", values="choice", aggfunc="first")
    agree = wide["vision_first"] == wide["text_first"]
    choice = wide["vision_first"].where(agree, "other")
    return choice.rename("choice").reset_index()


def target_metrics(answers: pd.DataFrame, keys: list[str], target: str) -> pd.DataFrame:
    """Per group: the record-level share following ``target`` in both orders, and pooled S_other."""
    records = record_choices(answers, keys)
    follows = records.assign(follows=records["choice"] == target).groupby(keys)["follows"].mean()
    other = answers.assign(other=answers["choice"] == "other").groupby(keys)["other"].mean()
    return pd.DataFrame({"record_target": follows, "s_other": other}).reset_index()


def shift_and_collapse(answers: pd.DataFrame, unsteered: pd.DataFrame, target: str) -> tuple[float, float]:
    """Record-level shift toward ``target`` and collapse (increase of S_other) of ``answers`` over ``unsteered``."""
    steered, base = (target_metrics(frame.assign(point=0), ["point"], target).iloc[0] for frame in (answers, unsteered))
    return float(steered["record_target"] - base["record_target"]), float(steered["s_other"] - base["s_other"])


def reaction_table(answers: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per record: the smallest strength at which it follows ``target`` in both orders, at which an answer
    names no option, and the smaller of the two (its reaction strength).

    ``answers`` holds every scanned strength (0 = unsteered) in a ``strength`` column; NaN where never.
    """
    records = record_choices(answers, ["strength"])
    any_other = answers.assign(other=answers["choice"] == "other").groupby(["strength", "record_id"])["other"].any()
    records = records.set_index(["strength", "record_id"]).join(any_other).reset_index()
    table = pd.DataFrame(index=sorted(records["record_id"].unique()))
    table.index.name = "record_id"
    table["flip_strength"] = records[records["choice"] == target].groupby("record_id")["strength"].min()
    table["collapse_strength"] = records[records["other"]].groupby("record_id")["strength"].min()
    table["reaction_strength"] = table[["flip_strength", "collapse_strength"]].min(axis=1, skipna=True)
    return table.reset_index()


def score(answers: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Scores per group of ``keys`` (plus ``task``, with ``all`` for the whole) and per view."""
    rows = []
    records = record_choices(answers, keys + ["task"])
    letters_by_record = answers.groupby(keys + ["task", "record_id"])["letter"].apply(lambda s: (s == "A").mean())
    for task_level in ("all", "task"):
        group_keys = keys + (["task"] if task_level == "task" else [])
        for group, frame in answers.groupby(group_keys, sort=True):
            group = group if isinstance(group, tuple) else (group,)
            base = dict(zip(group_keys, group))
            base.setdefault("task", "all")
            rows.append({**base, "view": "pooled", **_shares(frame["choice"], frame["letter"])})
            for order in ORDERS:
                part = frame[frame["order"] == order]
                rows.append({**base, "view": order, **_shares(part["choice"], part["letter"])})
            mask = np.ones(len(records), dtype=bool)
            for key, value in zip(group_keys, group):
                mask &= (records[key] == value).to_numpy()
            chosen = records[mask]
            shares = _shares(chosen["choice"], pd.Series(dtype=object))
            rate = letters_by_record.loc[tuple(group)] if group_keys else letters_by_record
            shares["rate_a"] = float(np.mean(rate))
            rows.append({**base, "view": "record", **shares})
    table = pd.DataFrame(rows)
    return table[keys + ["task", "view"] + SCORE_COLUMNS]


def toy_checks(scores: pd.DataFrame, checks: dict) -> pd.DataFrame:
    """The behaviour the toy models must show, per model, with pass/fail against the config (``evaluation.checks``).

    A model passes when it answers agreeing records right with no instruction and under each (so it
    does not "pick the option the text does not mention"), follows each instruction on conflicts,
    answers the blank-image control under the image instruction at chance (it reads the image), gives
    few answers naming no option, and has a pooled uninstructed vision ratio within the range.
    ``leans_both_ways`` (one task's ratio at most the first bound of ``task_lean``, one's at least the
    second) is reported beside it: the run needs it on some scales, not every model.
    """
    pooled = scores[scores["view"] == "pooled"].set_index(["model", "condition", "task"])
    rows = []
    for model in sorted(scores["model"].unique()):
        whole = pooled.xs("all", level="task").loc[model]
        tasks = pooled.loc[model].xs("none", level="condition").drop(index="all", errors="ignore")["vision_ratio"]
        row = {
            "model": model,
            "agreeing_accuracy": whole.loc["agreeing", "s_vision"],
            "agreeing_accuracy_image": whole.loc["agreeing_image", "s_vision"],
            "agreeing_accuracy_text": whole.loc["agreeing_text", "s_vision"],
            "follows_image_instruction": whole.loc["image", "s_vision"],
            "follows_text_instruction": whole.loc["text", "s_text"],
            "blank_image_accuracy": whole.loc["blank_image", "s_vision"],
            "uninstructed_vision_ratio": whole.loc["none", "vision_ratio"],
            "uninstructed_s_other": whole.loc["none", "s_other"],
            "lowest_task_vision_ratio": tasks.min(),
            "highest_task_vision_ratio": tasks.max(),
        }
        row["leans_both_ways"] = bool(row["lowest_task_vision_ratio"] <= checks["task_lean"][0]
                                      and row["highest_task_vision_ratio"] >= checks["task_lean"][1])
        agreeing = min(row["agreeing_accuracy"], row["agreeing_accuracy_image"], row["agreeing_accuracy_text"])
        following = min(row["follows_image_instruction"], row["follows_text_instruction"])
        row["passes"] = bool(
            agreeing >= checks["agreeing_accuracy"]
            and following >= checks["instruction_following"]
            and checks["blank_image"][0] <= row["blank_image_accuracy"] <= checks["blank_image"][1]
            and checks["vision_ratio"][0] <= row["uninstructed_vision_ratio"] <= checks["vision_ratio"][1]
            and row["uninstructed_s_other"] <= checks["max_other"]
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def summarize_baseline(settings: dict, answers: str, scores: str, checks: str) -> None:
    """CLI step: score all models' baseline answers and write the toy-model checks."""
    frames = [read_table(path) for path in answers.split(",")]
    table = score(pd.concat(frames, ignore_index=True), ["model", "condition"])
    table.insert(0, "run", settings["run_name"])
    write_table(scores, table)
    # The behaviour checks are the toy models' design targets; pretrained models are only measured.
    check_table = toy_checks(table[table["model"].isin(settings["toy_models"])], settings["evaluation"]["checks"])
    check_table.insert(0, "run", settings["run_name"])
    write_table(checks, check_table)
    log.info("toy model checks:\n%s", check_table.to_string(index=False))


# ----------------------------------------------------------------------------- the sweep's tables


def record_table(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, direction, α, record): each order's choice and letter, agreement, record choice.

    A record follows a modality only where both orders picked that modality's answer; ``same_letter``
    marks records that answered the same letter in both orders (position bias: that letter names a
    different modality in each order).
    """
    keys = ["model", "direction", "alpha", "record_id", "task"]
    wide = answers.pivot_table(index=keys, columns="order", values=["choice", "letter"], aggfunc="first")
    table = pd.DataFrame(index=wide.index)
    for order in ORDERS:
        table[f"choice_{order}"] = wide[("choice", order)]
        table[f"letter_{order}"] = wide[("letter", order)]
    first, second = (table[f"choice_{order}"] for order in ORDERS)
    table["orders_agree"] = (first == second) & first.isin(["vision", "text"])
    table["same_letter"] = (table["letter_vision_first"] == table["letter_text_first"]) & (table["letter_vision_first"] != "")
    table["record_choice"] = first.where(table["orders_agree"], "other")
    table["any_other"] = (first == "other") | (second == "other")
    return table.reset_index()


def _smallest_alpha(frame: pd.DataFrame, hits: pd.Series) -> float:
    alphas = frame.loc[hits, "alpha"]
    return float(alphas.min()) if len(alphas) else np.nan


def sensitivity(records: pd.DataFrame) -> pd.DataFrame:
    """Per-sample sensitivity: per model, record and direction, two strengths of the grid.

    ``flip_alpha``: the smallest α at which the record follows the target modality in both orders
    (0 when it already does unsteered). ``collapse_alpha``: the smallest α at which its answer in
    either order names no option. NaN where no α of the grid does it.
    """
    rows = []
    for (model, direction, record_id, task), frame in records.groupby(["model", "direction", "record_id", "task"], sort=True):
        target = DIRECTIONS[direction][1]
        unsteered = frame[frame["alpha"] == 0.0]["record_choice"]
        rows.append(
            {
                "model": model,
                "record_id": record_id,
                "task": task,
                "direction": direction,
                "baseline_choice": unsteered.iloc[0] if len(unsteered) else "",
                "flip_alpha": _smallest_alpha(frame, frame["record_choice"] == target),
                "collapse_alpha": _smallest_alpha(frame, frame["any_other"]),
            }
        )
    return pd.DataFrame(rows)


def sweep_overview(answers: pd.DataFrame) -> pd.DataFrame:
    """Pooled vision ratio, S_other and rate of "A" per direction and α, with the record-level ratio."""
    scores = score(answers, SWEEP_KEYS)
    whole = scores[scores["task"] == "all"]
    pooled = whole[whole["view"] == "pooled"].set_index(SWEEP_KEYS)
    record = whole[whole["view"] == "record"].set_index(SWEEP_KEYS)
    overview = pooled[["vision_ratio", "s_other", "rate_a"]].copy()
    overview["record_vision_ratio"] = record["vision_ratio"]
    overview["record_s_vision"] = record["s_vision"]
    return overview.reset_index()


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
    settings_columns = answers.groupby(["model", "direction", "alpha"])[["layer", "positions", "steer_norm", "reference_norm"]].first()
    return table.merge(settings_columns.reset_index(), on=SWEEP_KEYS, how="left")


def summarize_sweep(settings: dict, answers: str, records: str, scores: str) -> None:
    """CLI step: the sweep scores of all models (``answers`` and ``records``: comma-separated tables)."""
    answer_table = pd.concat([read_table(path) for path in answers.split(",")], ignore_index=True)
    record_rows = pd.concat([read_table(path) for path in records.split(",")], ignore_index=True)
    table = sweep_scores(answer_table, record_rows)
    table.insert(0, "run", settings["run_name"])
    table["alpha_unit"] = ALPHA_UNIT
    write_table(scores, table)
    log.info("sweep scores:\n%s", sweep_overview(answer_table).to_string(index=False))
