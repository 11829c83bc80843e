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

from typing import Sequence

import pandas as pd
import torch

from amps.data.benchmark import Benchmark
from amps.models.answer_check import check_option_tokens
from amps.models.asking import QuestionBatches, answer, make_question
from amps.models.interface import MultimodalModel
from amps.steering.hook import SteeringVector, scaled_direction
from amps.vocabulary import DIRECTIONS, ORDERS


def sorted_alphas(alphas: Sequence[float]) -> list[float]:
    """The α grid as floats, sorted, each once (α = 0 is added by the sweep; the schema keeps the grid positive)."""
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

    The prompts are encoded once; the unsteered answers are asked once and listed under both
    directions at α = 0.
    """
    questions = [make_question(record, index, "none", order) for index, record in records.iterrows() for order in ORDERS]
    batches = QuestionBatches(model, benchmark, records, questions, batch_size, keep=True)
    check_option_tokens(model, batches, max_new_tokens, desc)
    unsteered = answer(model, batches, max_new_tokens, desc=f"{desc} α=0")
    frames = []
    for direction, (sign, _target) in DIRECTIONS.items():
        frames.append(unsteered.assign(direction=direction, alpha=0.0, steer_norm=0.0))
        for alpha in alphas:
            vector = sign * scaled_direction(mean_diff, alpha, reference_norm)

            def steering(_chunk, _batch, vector=vector):
                return SteeringVector(vector, layer, positions).apply(model)

            answers = answer(model, batches, max_new_tokens, batch_context=steering, desc=f"{desc} {direction} α={alpha:g}")
            frames.append(answers.assign(direction=direction, alpha=alpha, steer_norm=float(vector.norm())))
    return pd.concat(frames, ignore_index=True)
