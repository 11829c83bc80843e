"""The uniform-strength sweep: the mean steering vector at a grid of α, both directions, test split.

Every test record is asked without instruction in both option orders, unsteered (α = 0) and with
``±α`` times the unit mean vector scaled to the layer's mean hidden-state norm added at the
steering layer (the first of the model's ``steering_layers``): ``to_vision`` adds the mean
"image minus text instruction" direction, ``to_text`` subtracts it.

Outputs per model: the answers, a per-record table (each order's choice and letter, whether the
orders agree, the record-level choice) and per-sample sensitivity (the smallest α that makes the
record follow the target modality in both orders, and the smallest α at which any of its answers
stops naming an option). Across models: scores per α, direction, task and view, with the rate of
answering "A" and the share of records whose orders agree or give the same letter beside them, so
that a model pushed to one letter (vision ratio near 50% with no modality shift) is visible.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from amps import prompts
from amps.activations import ALPHA_UNIT, Activations
from amps.data import Benchmark
from amps.evaluation import ask, make_question, score
from amps.io import read_table, write_table
from amps.models import MultimodalModel
from amps.steering import POSITIONS, scaled_direction, steer

log = logging.getLogger(__name__)

#: Direction name -> sign applied to the mean "toward vision" vector, and the modality it targets.
DIRECTIONS: dict[str, tuple[float, str]] = {"to_vision": (1.0, "vision"), "to_text": (-1.0, "text")}
SWEEP_KEYS = ["model", "direction", "alpha"]


def check_alphas(alphas: list[float]) -> list[float]:
    """The α grid, sorted; it must be non-empty, positive and finite (α = 0 is always added)."""
    if not alphas:
        raise ValueError("steering.alphas is empty: the sweep needs at least one strength")
    bad = [alpha for alpha in alphas if not (np.isfinite(alpha) and alpha > 0)]
    if bad:
        raise ValueError(f"steering.alphas must be positive and finite, got {bad}")
    return sorted(set(float(alpha) for alpha in alphas))


def sweep_answers(
    model: MultimodalModel,
    benchmark: Benchmark,
    records: pd.DataFrame,
    mean_diff: torch.Tensor,
    reference_norm: float,
    layer: int,
    alphas: list[float],
    positions: str,
    batch_size: int,
    max_new_tokens: int,
    desc: str = "sweep",
) -> pd.DataFrame:
    """Answers of every record in both orders, unsteered and at each (direction, α).

    The unsteered answers are asked once and listed under both directions at α = 0.
    """
    questions = [make_question(record, index, "none", order) for index, record in records.iterrows() for order in prompts.ORDERS]
    unsteered = ask(model, benchmark, records, questions, batch_size, max_new_tokens, desc=f"{desc} α=0")
    frames = []
    for direction, (sign, _target) in DIRECTIONS.items():
        frames.append(unsteered.assign(direction=direction, alpha=0.0, steer_norm=0.0))
        for alpha in alphas:
            vector = sign * scaled_direction(mean_diff, alpha, reference_norm)

            def steering(_chunk, _batch, vector=vector):
                return steer(model, layer, vector, positions)

            answers = ask(
                model, benchmark, records, questions, batch_size, max_new_tokens,
                batch_context=steering, desc=f"{desc} {direction} α={alpha:g}",
            )
            frames.append(answers.assign(direction=direction, alpha=alpha, steer_norm=float(vector.norm())))
    return pd.concat(frames, ignore_index=True)


def record_table(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, direction, α, record): each order's choice and letter, agreement, record choice.

    A record follows a modality only where both orders picked that modality's answer; ``same_letter``
    marks records that answered the same letter in both orders (position bias: that letter names a
    different modality in each order).
    """
    keys = ["model", "direction", "alpha", "record_id", "task"]
    wide = answers.pivot_table(index=keys, columns="order", values=["choice", "letter"], aggfunc="first")
    table = pd.DataFrame(index=wide.index)
    for order in prompts.ORDERS:
        table[f"choice_{order}"] = wide[("choice", order)]
        table[f"letter_{order}"] = wide[("letter", order)]
    first, second = (table[f"choice_{order}"] for order in prompts.ORDERS)
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


def run_sweep(
    settings: dict, benchmark_dir: str, model: str, activations: str, answers: str, records: str, sensitivity_table: str
) -> None:
    """CLI step: the mean-steering sweep of one model on the test split.

    ``settings``: ``model_name``, ``model`` (config entry), ``evaluation``, ``steering`` (``alphas``,
    ``positions``), ``threads``.
    """
    torch.set_num_threads(settings["threads"])
    spec = settings["model"]
    alphas = check_alphas(settings["steering"]["alphas"])
    positions = settings["steering"]["positions"]
    if positions not in POSITIONS:
        raise ValueError(f"unknown steering.positions {positions!r}; expected one of {POSITIONS}")
    stored = Activations.load(activations)
    layer = spec["steering_layers"][0]
    mean_diff = stored.get("mean_diff", layer)
    reference_norm = float(stored.get("mean_norm", layer))
    benchmark = Benchmark(benchmark_dir)
    test_records = benchmark.split("test")
    loaded = MultimodalModel.load(model, spec["device"], spec["dtype"], spec["device_map"], spec["trust_remote_code"])
    table = sweep_answers(
        loaded, benchmark, test_records, mean_diff, reference_norm, layer, alphas, positions,
        spec["batch_size"], settings["evaluation"]["max_new_tokens"], desc=f"sweep {settings['model_name']}",
    )
    table.insert(0, "model", settings["model_name"])
    table["layer"] = layer
    table["positions"] = positions
    table["reference_norm"] = reference_norm
    write_table(answers, table)
    per_record = record_table(table)
    write_table(records, per_record)
    write_table(sensitivity_table, sensitivity(per_record))
    log.info(
        "sweep %s at layer %d (reference norm %.4g):\n%s",
        settings["model_name"], layer, reference_norm, sweep_overview(table).to_string(index=False),
    )


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

