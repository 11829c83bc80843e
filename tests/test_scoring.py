"""The toy models' checks catch the shortcut and the blank-image control; the MCR is validated against the ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amps.metrics import score
from amps.report.baseline import BaselineChecks, toy_checks
from amps.report.mcr_validation import balance, correlations, vision_by_bin
from amps.vocabulary import BASELINE_CONDITIONS

CHECKS = BaselineChecks(
    agreeing_accuracy=0.95,
    instruction_following=0.9,
    blank_image=(0.35, 0.65),
    vision_ratio=(0.25, 0.75),
    task_lean=(0.4, 0.6),
    max_other=0.05,
)
TASKS = ["color", "counting"]


def _answers(model: str, policy) -> pd.DataFrame:
    """Answers of 20 records per task under every baseline condition; ``policy(condition, task, index)`` gives the choice."""
    rows = []
    for condition in BASELINE_CONDITIONS:
        for task in TASKS:
            for index in range(20):
                choice = policy(condition, task, index)
                for order in ("vision_first", "text_first"):
                    letter = (
                        {"vision": "A", "text": "B", "other": ""}[choice]
                        if order == "vision_first"
                        else {"vision": "B", "text": "A", "other": ""}[choice]
                    )
                    rows.append(
                        {
                            "model": model,
                            "condition": condition,
                            "task": task,
                            "record_id": f"{task}-{index}",
                            "order": order,
                            "answer": letter,
                            "letter": letter,
                            "choice": choice,
                        }
                    )
    return pd.DataFrame(rows)


def honest(condition: str, task: str, index: int) -> str:
    """Reads the image and the text: agreeing right, instructions followed, chance on a blank image; color leans to the image."""
    if condition.startswith("agreeing") or condition == "image":
        return "vision"
    if condition == "text":
        return "text"
    if condition == "blank_image":
        return "vision" if index % 2 else "text"
    return "vision" if (index < 14 if task == "color" else index < 4) else "text"


def shortcut(condition: str, task: str, index: int) -> str:
    """Under the image instruction picks the option the text does not mention, image or no image."""
    if condition in ("image", "blank_image"):
        return "vision"
    if condition == "agreeing_image":
        return "text"
    return honest(condition, task, index)


def test_checks_pass_an_honest_model_and_catch_the_shortcut():
    answers = pd.concat([_answers("honest", honest), _answers("shortcut", shortcut)], ignore_index=True)
    checks = toy_checks(score(answers, ["model", "condition"]), CHECKS).set_index("model")
    good = checks.loc["honest"]
    assert good["passes"] and good["leans_both_ways"]
    assert good["blank_image_accuracy"] == 0.5 and good["agreeing_accuracy_image"] == 1.0
    assert good["lowest_task_vision_ratio"] == pytest.approx(0.2) and good["highest_task_vision_ratio"] == pytest.approx(0.7)
    assert good["uninstructed_vision_ratio"] == pytest.approx(18 / 40)
    bad = checks.loc["shortcut"]
    # It "follows the image instruction" perfectly, yet fails agreeing records under it and the blank image.
    assert bad["follows_image_instruction"] == 1.0 and not bad["passes"]
    assert bad["agreeing_accuracy_image"] == 0.0 and bad["blank_image_accuracy"] == 1.0


def test_the_task_read_worst_under_the_image_instruction_is_named():
    def shortcut_on_counting(condition: str, task: str, index: int) -> str:
        return shortcut(condition, task, index) if task == "counting" and index < 5 else honest(condition, task, index)

    answers = pd.concat([_answers("honest", honest), _answers("partial", shortcut_on_counting)], ignore_index=True)
    checks = toy_checks(score(answers, ["model", "condition"]), CHECKS).set_index("model")
    assert checks.loc["partial", "weakest_image_task"] == "counting"
    assert checks.loc["partial", "weakest_image_task_accuracy"] == pytest.approx(0.75)
    assert checks.loc["partial", "agreeing_accuracy_image"] == pytest.approx(35 / 40)
    assert checks.loc["honest", "weakest_image_task_accuracy"] == 1.0


def test_a_model_leaning_one_way_on_every_task_is_marked():
    one_way = _answers("text", lambda condition, task, index: "text" if condition == "none" else honest(condition, task, index))
    checks = toy_checks(score(one_way, ["model", "condition"]), CHECKS).iloc[0]
    assert not checks["leans_both_ways"] and not checks["passes"]  # pooled ratio 0, outside [0.25, 0.75]


def _world(records: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "record_id": [f"r{index}" for index in range(records)],
            "image_strength": rng.uniform(0.3, 1.0, records),
            "text_strength": rng.choice([0.25, 0.5, 0.75, 1.0], records),
        }
    )


def _mcr_table(records: pd.DataFrame, mcr: np.ndarray, ablation: np.ndarray | None = None) -> pd.DataFrame:
    """An MCR table whose answer-position ablation follows the MCR (both see only what reaches the answer directly)."""
    ablation = mcr if ablation is None else ablation
    return pd.DataFrame(
        {
            "record_id": records["record_id"],
            "mcr": mcr,
            "mcr_fisher": mcr[::-1].copy(),
            "ablation_ratio": ablation,
            "answer_ablation_ratio": mcr + 0.01,
            "problem": "",
        }
    )


def test_the_mcr_is_correlated_with_the_ground_truth_balance():
    records = _world()
    truth = balance(records).to_numpy()
    noise = np.random.default_rng(1).normal(0, 0.05, len(truth))
    tracking = 1 / (1 + np.exp(-3 * truth)) + noise
    table = _mcr_table(records, tracking)
    table.loc[0, "problem"] = "vision_first text: 1 of 3 samples of f non-finite"
    # The model's own choices: text on the records whose MCR is above its median, asked on the first 40 records.
    asked = records["record_id"].iloc[:40]
    chosen = np.where(tracking > np.median(tracking), "text", "vision")
    rows = [
        {"model": "good", "condition": "none", "record_id": record_id, "order": order, "choice": choice}
        for record_id, choice in zip(asked, chosen[:40])
        for order in ("vision_first", "text_first")
    ]
    # A model that follows the balance (its input ablation does) whose MCR misses it.
    ablation = tracking + np.random.default_rng(3).normal(0, 0.05, len(truth))
    ablation[5] = np.nan  # neither modality pulls
    missing = _mcr_table(records, np.random.default_rng(2).random(len(truth)), ablation)
    linked = correlations(
        {"good": table, "random": missing},
        records,
        200,
        7,
        pd.DataFrame(rows),
    ).set_index(["model", "estimator", "against"])
    good = linked.loc[("good", "entropy", "balance")]
    assert good["spearman"] > 0.8 and good["low"] > 0.6 and good["records"] == 59 and good["left_out"] == 1
    # Each strength alone: the MCR rises with the text's and falls with the image's.
    assert linked.loc[("good", "entropy", "text_strength"), "spearman"] > 0.2
    assert linked.loc[("good", "entropy", "image_strength"), "spearman"] < -0.2
    choice = linked.loc[("good", "entropy", "text_choice")]
    assert choice["spearman"] > 0.7 and choice["records"] == 39
    assert ("random", "entropy", "text_choice") not in linked.index  # no answers of that model
    assert linked.loc[("random", "entropy", "balance"), "low"] < 0 < linked.loc[("random", "entropy", "balance"), "high"]
    # The input ablation tells the two misses apart: the model follows the balance, the MCR does not follow the model.
    reference = linked.loc[("random", "input_ablation", "balance")]
    assert reference["spearman"] > 0.8 and reference["records"] == 59 and reference["left_out"] == 1
    against_model = linked.loc[("random", "entropy", "ablation_ratio")]
    assert against_model["low"] < 0 < against_model["high"] and against_model["records"] == 59
    assert linked.loc[("good", "entropy", "ablation_ratio"), "spearman"] > 0.8
    assert ("good", "input_ablation", "ablation_ratio") not in linked.index
    # The answer-position ablation misses what the input ablation finds: the modalities reach the answer elsewhere.
    direct = linked.loc[("random", "answer_ablation", "ablation_ratio")]
    assert direct["low"] < 0 < direct["high"] and direct["records"] == 59 and direct["column"] == "answer_ablation_ratio"
    assert linked.loc[("good", "answer_ablation", "balance"), "spearman"] == pytest.approx(good["spearman"])
    with pytest.raises(ValueError, match="only the offline world"):
        balance(records.drop(columns="text_strength"))


def test_vision_share_falls_across_mcr_bins_when_the_mcr_measures_reliance_on_text():
    records = _world(50)
    mcr = np.linspace(0.05, 0.95, 50)
    # Records with a low MCR follow the image, high ones the text.
    rows = [
        {"model": "m", "condition": "none", "record_id": record_id, "order": order, "choice": "vision" if value < 0.5 else "text"}
        for record_id, value in zip(records["record_id"], mcr)
        for order in ("vision_first", "text_first")
    ]
    binned = vision_by_bin({"m": _mcr_table(records, mcr)}, pd.DataFrame(rows), 5)
    assert binned["vision_share"].tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert binned["records"].tolist() == [10] * 5 and binned["mcr_low"].is_monotonic_increasing


def test_the_checks_say_whether_the_uninstructed_choice_follows_the_evidence_and_each_modality_s_own():
    from amps.report.baseline import EVIDENCE_COLUMNS, choice_follows_evidence
    from amps.report.mcr_validation import choice_share

    records = _world(40)
    truth = balance(records)
    text_strength = records.set_index("record_id")["text_strength"]
    # "follows": text in both orders where the text outweighs the image, vision in both where not;
    # "reads the wording": text where the context is firm (0.75 or more), whatever the image;
    # "stubborn": text everywhere in the first order, vision in the second, whatever the evidence.
    rows = [
        {"model": model, "condition": "none", "record_id": record_id, "order": order, "choice": choice}
        for record_id, value in truth.items()
        for order in ("vision_first", "text_first")
        for model, choice in (
            ("follows", "text" if value > 0 else "vision"),
            ("reads the wording", "text" if text_strength[record_id] >= 0.75 else "vision"),
            ("stubborn", "text" if order == "vision_first" else "vision"),
        )
    ]
    answers = pd.DataFrame(rows)
    follows = choice_follows_evidence(answers, records)
    assert follows["follows"]["choice_follows_balance"] > 0.8
    assert follows["follows"]["choice_follows_text_strength"] > 0.3 and follows["follows"]["choice_follows_image_strength"] > 0.3
    wording = follows["reads the wording"]
    assert wording["choice_follows_text_strength"] > 0.8 and abs(wording["choice_follows_image_strength"]) < 0.3
    # A constant share has no rank correlation.
    assert all(np.isnan(follows["stubborn"][column]) for column in EVIDENCE_COLUMNS)
    assert choice_follows_evidence(answers, records.drop(columns="image_strength")) == {}  # MC²: no strengths
    with pytest.raises(ValueError, match="unknown modality 'image'"):
        choice_share(answers, "follows", "image")
    scores = score(pd.concat([_answers("honest", honest)], ignore_index=True), ["model", "condition"])
    assert toy_checks(scores, CHECKS).iloc[0][list(EVIDENCE_COLUMNS)].isna().all()
    given = {"honest": dict(zip(EVIDENCE_COLUMNS, (0.42, 0.5, 0.1)))}
    row = toy_checks(scores, CHECKS, given).iloc[0]
    assert row[list(EVIDENCE_COLUMNS)].tolist() == [0.42, 0.5, 0.1]
