"""The steered evaluation on the test split: every method's measured strength curve, both directions.

Every method is evaluated on the same test records, each asked in both option orders. Each method
with a strength (:data:`amps.method.methods.STRENGTH_METHODS`; Learn-to-Steer and AMPS once per module
seed) gets a curve measured by :func:`amps.method.curves.measure_curve` on the strength grid, refined until
neighbouring points differ by at most ``amps.curve.tolerance`` in shift and in collapse; its
validation-chosen strength (:mod:`amps.method.select`) is always measured and is the method's main
setting, where the agreeing control (a context that supports the image) is also asked, so that the
cost to the model's normal answers shows. The prompt instruction is asked once per direction.

Shift and collapse are taken against the same test prompts answered without steering. The vectors
and MCR of the agreeing control are those of the record's conflict prompt in the same option order
(``p2s``, ``amps_online``); the learned modules read the agreeing prompt itself, as they would at
deployment. Where validation chose β = 0 for AMPS, its modules are Learn-to-Steer's and its answers
are Learn-to-Steer's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from amps.core.io import read_json, write_table
from amps.data.benchmark import Benchmark
from amps.mcr.table import load_mcr, mcr_of
from amps.method.curves import measure_curve
from amps.method.methods import VectorSteering, module_steering
from amps.method.scaling import Scaling
from amps.method.steering_module import module_name
from amps.method.vectors import RecordVectors, record_vectors
from amps.metrics import shift_and_collapse, target_metrics
from amps.models.answer_check import check_option_tokens
from amps.models.asking import QuestionBatches, answer, evaluation_questions
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.steering.activations import Activations
from amps.vocabulary import DIRECTIONS, INSTRUCTION_FOR, METHODS

if TYPE_CHECKING:
    from amps.method.steps import SteeredEval

log = logging.getLogger(__name__)


def answers_path(answers_dir: str | Path, method: str, direction: str) -> Path:
    """Where the steered evaluation writes the answers of ``method`` in ``direction``."""
    return Path(answers_dir) / f"{method}-{direction}.parquet"


def scaling_of(record: dict) -> Scaling:
    """The :class:`~amps.method.scaling.Scaling` stored in a validation choice."""
    return Scaling(
        record["beta"],
        record["r_anchor"],
        record["beta_units"],
        record["anchor_quantile"],
        record["max_factor"],
        record["normaliser"],
    )


class TestRun:
    """What every curve of one model shares: the model, the encoded test prompts and their unsteered answers."""

    def __init__(
        self,
        model: MultimodalModel,
        benchmark: Benchmark,
        records: pd.DataFrame,
        settings: SteeredEval,
        batch_size: int,
        max_new_tokens: int,
    ):
        self.model, self.settings, self.max_new_tokens = model, settings, max_new_tokens
        self.encoded = {
            (condition, instruction): QuestionBatches(
                model, benchmark, records, evaluation_questions(records, condition, instruction), batch_size, keep=True
            )
            for condition, instruction in (("conflict", "none"), ("agreeing", "none"))
        }
        self.benchmark, self.records, self.batch_size = benchmark, records, batch_size
        check_option_tokens(model, self.encoded["conflict", "none"], max_new_tokens, f"steered evaluation {settings.model_name}")
        self.unsteered = answer(model, self.encoded["conflict", "none"], max_new_tokens, desc="test unsteered")

    def ask(self, condition: str, context, desc: str, instruction: str = "none") -> pd.DataFrame:
        key = (condition, instruction)
        if key not in self.encoded:
            questions = evaluation_questions(self.records, condition, instruction)
            self.encoded[key] = QuestionBatches(self.model, self.benchmark, self.records, questions, self.batch_size, keep=True)
        return answer(self.model, self.encoded[key], self.max_new_tokens, context, desc=desc)

    def curve(self, steering, direction: str, main: float, seed: int, desc: str) -> pd.DataFrame:
        """The measured curve of one steering (conflicts at every point) and the agreeing control at ``main``."""
        target = DIRECTIONS[direction][1]
        frames: dict[float, pd.DataFrame] = {}

        def evaluate(strength: float) -> tuple[float, float]:
            frames[strength] = self.ask("conflict", steering.context(strength), f"{desc} s={strength:g}")
            return shift_and_collapse(frames[strength], self.unsteered, target)

        curve = measure_curve(evaluate, list(self.settings.strengths), self.settings.curve, required=(main,))
        log.info("%s: %d points, largest gaps shift %.3f / collapse %.3f", desc, curve.measured, *curve.gaps())
        agreeing = self.ask("agreeing", steering.context(main), f"{desc} agreeing s={main:g}")
        parts = [frame.assign(strength=strength, main=strength == main) for strength, frame in sorted(frames.items())]
        parts.append(agreeing.assign(strength=main, main=True))
        return pd.concat(parts, ignore_index=True).assign(seed=seed)


def method_answers(
    run: TestRun, method: str, direction: str, vectors: RecordVectors, mcr: pd.Series, choice: dict, steerers: str, done: dict
) -> pd.DataFrame:
    """Every answer of ``method`` in ``direction`` (all its seeds' curves, or the instruction)."""
    sign = DIRECTIONS[direction][0]
    model, positions, layer = run.model, run.settings.positions, vectors.layer
    desc = f"{method} {direction}"
    if method == "instruction":
        instruction = INSTRUCTION_FOR[direction]
        return pd.concat(
            [
                run.ask(condition, None, f"{desc} {condition}", instruction).assign(strength=0.0, main=True)
                for condition in ("conflict", "agreeing")
            ],
            ignore_index=True,
        ).assign(seed=0)
    chosen = choice[method]
    if method == "amps" and chosen["scaling"]["beta"] == 0.0:
        return done["l2s"].copy()  # β = 0: AMPS's modules are Learn-to-Steer's
    frames = []
    for entry in chosen["seeds"]:
        seed, main = entry["seed"], entry["strength"]
        if method == "mean":
            steering = VectorSteering(model, layer, sign * vectors.base("mean"), positions)
        elif method == "p2s":
            steering = VectorSteering(model, layer, sign * vectors.base(run.settings.vector), positions)
        elif method == "amps_online":
            factors = scaling_of(chosen["scaling"]).factors(mcr.to_numpy(dtype=np.float64))
            steering = VectorSteering(model, layer, sign * vectors.base("mean"), positions, factors)
        else:
            scaling_name = chosen["scaling"]["name"] if method == "amps" else "b0"
            name = module_name(method, direction, seed, scaling_name)
            steering = module_steering(model, steerers, name, positions, vectors.prompt_scale)
        frames.append(run.curve(steering, direction, main, seed, f"{desc} seed {seed}"))
    return pd.concat(frames, ignore_index=True)


def evaluate_methods(
    settings: SteeredEval,
    benchmark_dir: str,
    model: str,
    activations: str,
    mcr: str,
    selection: str,
    steerers: str,
    answers_dir: str,
) -> None:
    """Every method in both directions on the test split, one answers table each (:func:`answers_path`).

    One job per model: the methods share the loaded model and the encoded prompts. The tables are
    written once all are computed.
    """
    torch.set_num_threads(settings.threads)
    layer = settings.layer
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.split("test")
    record_ids = records["record_id"].tolist()
    vectors = record_vectors(Activations.load(activations), layer, record_ids)
    test_mcr = mcr_of(load_mcr(mcr, settings.estimator), record_ids)
    chosen = read_json(selection)
    loaded = load_model(model, **settings.model.load_options)
    parameters = sum(parameter.numel() for parameter in loaded.model.parameters())
    run = TestRun(loaded, benchmark, records, settings, settings.batch_size, settings.max_new_tokens)
    tables = {}
    for direction in DIRECTIONS:
        done: dict[str, pd.DataFrame] = {}
        for method in METHODS:
            answers = method_answers(run, method, direction, vectors, test_mcr, chosen[direction], steerers, done)
            done[method] = answers
            main = answers[answers["main"] & (answers["condition"] == "conflict")]
            log.info(
                "%s %s %s main setting:\n%s",
                settings.model_name,
                method,
                direction,
                target_metrics(main, ["seed"], DIRECTIONS[direction][1]).to_string(index=False),
            )
            tables[method, direction] = answers.assign(
                model=settings.model_name, method=method, direction=direction, layer=layer, parameters=parameters
            )
    for (method, direction), answers in tables.items():
        write_table(answers_path(answers_dir, method, direction), answers)
