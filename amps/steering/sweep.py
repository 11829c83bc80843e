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

from amps.steering.activations import Activations
from amps.data.benchmark import Benchmark
from amps.models.evaluation import ask, make_question
from amps.core.io import write_table
from amps.models.interface import MultimodalModel
from amps.report.scoring import record_table, sensitivity, sweep_overview
from amps.steering.hook import scaled_direction, steer
from amps.vocabulary import DIRECTIONS, ORDERS, POSITIONS

log = logging.getLogger(__name__)

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
    questions = [make_question(record, index, "none", order) for index, record in records.iterrows() for order in ORDERS]
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
