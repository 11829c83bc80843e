"""AMPS end to end: validation selection, module training, and the steered evaluation on the test split.

Every method is evaluated on the same test records, each asked in both option orders, without
instruction (the conflict prompt) and, at each method's main setting, as the agreeing control
(context that supports the image), so that the cost to the model's normal answers shows:

* ``instruction``: MC²'s preference instruction for the target modality in the prompt;
* ``mean``: the mean contrastive vector at each α of ``steering.alphas`` (the sweep's unit);
* ``p2s``: prompt-to-steer with each prompt's own contrastive vector (an oracle: at test time it
  needs the prompt's instructed versions), at strength ``s × multiplier``;
* ``l2s``: Learn-to-Steer, the module trained on the plain contrastive vectors (γ = 0);
* ``amps``: the module trained on AMPS's target ``max(0, 1 + γ_i)·v_i``;
* ``amps_online``: the mean vector at α·``max(0, 1 + γ_i)`` with γ from the record's MCR, computed on
  the test prompt itself (no module).

"No steering" is the baseline evaluation's uninstructed answers (same records, same code). The
learned methods run at every seed and multiplier, so that each seed has a short strength curve for
comparisons at matched shift.

Vectors: a prompt's own vector is its image-instructed minus its text-instructed state (same
record, same option order) at the steering layer's last position. Its letter part is what
separates this prompt's image answer from its text answer, so it is kept: input-dependent
steering has to predict it from the plain prompt. The mean vector averages both orders of every
steering-training record, so there the letter cancels.

Strength units: ``mean`` and ``amps_online`` use α × the mean hidden-state norm along the unit mean
vector (:func:`amps.steering.scaled_direction`); ``p2s``, ``l2s`` and ``amps`` add ``s`` times the
(predicted) vector itself, whose natural length is the prompt's own instruction effect. The
direction ``to_text`` uses the negated vectors.

The vectors and MCR of the agreeing control are those of the record's conflict prompt in the same
option order (``p2s``, ``amps_online``); the learned modules read the agreeing prompt itself, as
they would at deployment.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import pandas as pd
import torch

from amps import prompts, scaling
from amps.activations import Activations
from amps.data import Benchmark
from amps.evaluation import Question, answer_row, make_question
from amps.io import atomic_directory, read_json, read_table, write_json, write_table
from amps.models import Batch, MultimodalModel
from amps.progress import progress
from amps.steerer import (
    SteererConfig,
    TrainingSettings,
    learned_steering,
    load_steerer,
    save_steerer,
    train_steerer,
)
from amps.steering import scaled_direction, steer
from amps.scoring import DIRECTIONS, record_choices
from amps.sweep import check_alphas

log = logging.getLogger(__name__)

METHODS = ("instruction", "mean", "p2s", "l2s", "amps", "amps_online")
#: Vector families: each prompt's own contrastive vector, or the mean vector.
VECTORS = ("per_sample", "mean")
#: Position of each option order in the first axis of prompt vectors ([orders, records, hidden]).
ORDER_INDEX = {order: index for index, order in enumerate(prompts.ORDERS)}
#: The instruction that asks for each direction's target modality.
INSTRUCTION_FOR = {"to_vision": "image", "to_text": "text"}
#: Columns that identify one evaluated setting of a method.
POINT_COLUMNS = ["model", "method", "direction", "seed", "multiplier", "strength", "main"]

BatchContext = Callable[[list[Question], Batch], ContextManager]


# ----------------------------------------------------------------------------- questions


def _agreeing_context(record) -> str | None:
    context = record.get("context_agreeing")
    return None if context is None or (isinstance(context, float) and math.isnan(context)) else context


def evaluation_questions(records: pd.DataFrame, condition: str, instruction: str = "none") -> list[Question]:
    """Every record in both option orders: the ``conflict`` prompt or the ``agreeing`` control.

    ``instruction`` (``none``, ``image`` or ``text``) adds MC²'s preference instruction to either.
    """
    if condition not in ("conflict", "agreeing"):
        raise ValueError(f"unknown condition {condition!r}; expected conflict or agreeing")
    questions = []
    for index, record in records.iterrows():
        for order in prompts.ORDERS:
            if condition == "conflict":
                question = make_question(record, index, instruction, order)
            else:
                option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
                prompt = prompts.build_prompt(record["question"], option_a, option_b, _agreeing_context(record), instruction)
                question = Question(index, condition, order, prompt, option_a, option_b)
            questions.append(replace(question, condition=condition))
    return questions


@dataclass
class EncodedQuestions:
    """Questions encoded once, in batches, to be answered under many steering settings."""

    records: pd.DataFrame
    batches: list[tuple[list[Question], Batch]]

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk, _ in self.batches)


def encode_questions(
    model: MultimodalModel, benchmark: Benchmark, records: pd.DataFrame, questions: list[Question], batch_size: int
) -> EncodedQuestions:
    """Encode ``questions`` (images and prompts) in batches of ``batch_size``."""
    batches = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        images = [benchmark.image(records.iloc[question.record_index]) for question in chunk]
        batches.append((chunk, model.encode(images, [question.prompt for question in chunk])))
    return EncodedQuestions(records, batches)


def answer_encoded(
    model: MultimodalModel,
    encoded: EncodedQuestions,
    max_new_tokens: int,
    batch_context: BatchContext | None = None,
    desc: str = "answer",
) -> pd.DataFrame:
    """Greedy answers of encoded questions, each batch generated inside ``batch_context(chunk, batch)``."""
    rows = []
    with progress(total=encoded.size, desc=desc, unit="q") as bar:
        for chunk, batch in encoded.batches:
            if batch_context is None:
                answers = model.generate(batch, max_new_tokens)
            else:
                with batch_context(chunk, batch):
                    answers = model.generate(batch, max_new_tokens)
            rows += [answer_row(encoded.records, question, answer) for question, answer in zip(chunk, answers)]
            bar.update(len(chunk))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- vectors and contexts


def _per_order(activations: Activations, kind: str, layer: int, rows: torch.Tensor) -> torch.Tensor:
    """[orders, records, hidden]: a per-order tensor of the activations file for ``rows``."""
    return torch.stack([activations.get(f"{kind}.{order}", layer)[rows] for order in prompts.ORDERS])


@dataclass
class RecordVectors:
    """The steering vectors of a set of records' prompts at one layer, all pointing toward vision."""

    layer: int
    per_prompt: torch.Tensor
    mean_diff: torch.Tensor
    reference_norm: float
    typical_norm: float

    def base(self, vector: str) -> torch.Tensor:
        """[orders, records, hidden]: each prompt's own vector, or the mean direction at the typical prompt length.

        The mean variant keeps the steering-training prompts' mean vector length, so that one
        strength means the same size of vector for both variants.
        """
        if vector == "per_sample":
            return self.per_prompt
        if vector == "mean":
            return self.everywhere(self.mean_diff / self.mean_diff.norm().clamp(min=1e-12) * self.typical_norm)
        raise ValueError(f"unknown steering vector {vector!r}; expected one of {VECTORS}")

    def everywhere(self, vector: torch.Tensor) -> torch.Tensor:
        """One [hidden] vector for every prompt: [orders, records, hidden]."""
        return vector.expand_as(self.per_prompt).clone()


def record_vectors(activations: Activations, layer: int, record_ids: list[str]) -> RecordVectors:
    """The vectors of the prompts of ``record_ids`` (both orders) at ``layer`` from the activations file."""
    train = _per_order(activations, "diff", layer, activations.split_rows("steer_train"))
    return RecordVectors(
        layer=layer,
        per_prompt=_per_order(activations, "diff", layer, activations.rows(record_ids)),
        mean_diff=activations.get("mean_diff", layer),
        reference_norm=float(activations.get("mean_norm", layer)),
        typical_norm=float(train.norm(dim=-1).mean()),
    )


def plain_states(activations: Activations, layer: int, record_ids: list[str]) -> torch.Tensor:
    """The plain prompts' states of ``record_ids``: [orders × records, hidden], order-major (as ``reshape``)."""
    return _per_order(activations, "plain", layer, activations.rows(record_ids)).flatten(0, 1)


def per_record_steering(
    model: MultimodalModel, layer: int, vectors: torch.Tensor, strengths: torch.Tensor | float, positions: str
) -> BatchContext:
    """Steer each question's row with its prompt's vector ([orders, records, hidden]) × strength.

    ``strengths`` is a number or one strength per record.
    """

    def context(chunk: list[Question], _batch: Batch) -> ContextManager:
        records = torch.tensor([question.record_index for question in chunk], dtype=torch.long)
        orders = torch.tensor([ORDER_INDEX[question.order] for question in chunk], dtype=torch.long)
        alpha = strengths[records] if isinstance(strengths, torch.Tensor) else strengths
        return steer(model, layer, vectors[orders, records], positions, alpha)

    return context


def module_steering(model: MultimodalModel, module: torch.nn.Module, config: SteererConfig, strength: float, positions: str) -> BatchContext:
    """Steer with a learned module's prediction, read in the same forward pass."""

    def context(_chunk: list[Question], _batch: Batch) -> ContextManager:
        return learned_steering(model, module, config.input_layer, config.steer_layer, strength, positions)

    return context


def mean_direction(vectors: RecordVectors, alpha: float) -> torch.Tensor:
    """The mean vector at strength α in the sweep's unit (toward vision)."""
    return scaled_direction(vectors.mean_diff, alpha, vectors.reference_norm)


# ----------------------------------------------------------------------------- MCR and scaling


def load_mcr(path: str, estimator: str) -> pd.Series:
    """MCR per record id from an MCR table (records whose estimate failed are NaN)."""
    table = read_table(path)
    column = scaling.mcr_column(estimator)
    missing = {"record_id", column, "problem"} - set(table.columns)
    if missing:
        raise ValueError(f"MCR table {path} lacks columns {sorted(missing)}")
    values = table.set_index("record_id")[column].astype(float)
    return values.where(table.set_index("record_id")["problem"].fillna("") == "")


def mcr_of(mcr: pd.Series, record_ids: list[str]) -> pd.Series:
    """The MCR of ``record_ids`` in order; every record must be in the table (NaN where it failed)."""
    missing = [record_id for record_id in record_ids if record_id not in mcr.index]
    if missing:
        raise KeyError(f"{len(missing)} records have no MCR row, e.g. {missing[0]!r}")
    return mcr.loc[record_ids]


def online_factors(mcr: pd.Series, beta: float, r_anchor: float) -> tuple[torch.Tensor, int]:
    """``max(0, 1 + γ_i)`` per record; a record whose MCR failed keeps factor 1 (γ = 0). Also the count of those."""
    values = torch.tensor(mcr.to_numpy(dtype=np.float64), dtype=torch.float32)
    finite = torch.isfinite(values)
    factors = torch.ones(len(values))
    factors[finite] = scaling.scale_factor(scaling.gamma(values[finite], beta, r_anchor))
    return factors, int((~finite).sum())


# ----------------------------------------------------------------------------- scoring helpers


def target_metrics(answers: pd.DataFrame, keys: list[str], target: str) -> pd.DataFrame:
    """Per group: the record-level share following ``target`` in both orders, and pooled S_other."""
    records = record_choices(answers, keys)
    follows = records.assign(follows=records["choice"] == target).groupby(keys)["follows"].mean()
    other = answers.assign(other=answers["choice"] == "other").groupby(keys)["other"].mean()
    return pd.DataFrame({"record_target": follows, "s_other": other}).reset_index()


def reaction_table(answers: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per record: the smallest strength at which it follows ``target`` in both orders, and at which an answer names no option.

    ``answers`` holds every scanned strength (0 = unsteered) in a ``strength`` column; NaN where never.
    """
    records = record_choices(answers, ["strength"])
    any_other = answers.assign(other=answers["choice"] == "other").groupby(["strength", "record_id"])["other"].any()
    records = records.set_index(["strength", "record_id"]).join(any_other).reset_index()
    flip = records[records["choice"] == target].groupby("record_id")["strength"].min()
    collapse = records[records["other"]].groupby("record_id")["strength"].min()
    table = pd.DataFrame(index=sorted(records["record_id"].unique()))
    table.index.name = "record_id"
    table["flip_strength"] = flip
    table["collapse_strength"] = collapse
    table["reaction_strength"] = scaling.reaction_strength(table["flip_strength"], table["collapse_strength"])
    return table.reset_index()


# ----------------------------------------------------------------------------- validation selection


@dataclass
class ScanContext:
    """What the validation scans share: the model, the encoded validation conflicts and their unsteered answers."""

    model: MultimodalModel
    encoded: EncodedQuestions
    unsteered: pd.DataFrame
    layer: int
    positions: str
    max_new_tokens: int


def scan_point(scan: ScanContext, vectors: torch.Tensor, strengths: torch.Tensor | float, desc: str) -> pd.DataFrame:
    """Validation answers with each record steered by its vector × strength."""
    context = per_record_steering(scan.model, scan.layer, vectors, strengths, scan.positions)
    return answer_encoded(scan.model, scan.encoded, scan.max_new_tokens, context, desc=desc)


def grid_strengths(strengths: list[float], chosen: float) -> list[float]:
    """The base strengths AMPS's (β, r_anchor) grid runs at: the chosen one and the next stronger one scanned.

    Weakening the sensitive records is what lets a stronger base stay within the collapse bound, so
    the grid also tries one step above the strength chosen without scaling.
    """
    ordered = sorted(strengths)
    above = [strength for strength in ordered if strength > chosen]
    return [chosen] + above[:1]


def select_family(
    scan: ScanContext,
    vectors: torch.Tensor,
    strengths: list[float],
    mcr: pd.Series,
    train_mcr: np.ndarray,
    direction: str,
    family: str,
    amps_settings: dict,
) -> tuple[dict, pd.DataFrame]:
    """The strength without scaling, then AMPS's (strength, β, r_anchor), for one vector family and direction.

    ``vectors`` [orders, records, hidden] already point in ``direction`` at unit strength. The
    strength scan (β = 0) chooses the unscaled methods' strength and gives each record's reaction
    strength, whose correlation with the MCR sets the sign of β. AMPS's choice runs over the scan
    and the (β, r_anchor) grid at :func:`grid_strengths`, so it can only match or beat the unscaled
    choice on validation. Returns the choice (JSON-able) and every scanned point's metrics.
    """
    target = DIRECTIONS[direction][1]
    bound = amps_settings["max_collapse"]
    base = target_metrics(scan.unsteered.assign(point=0), ["point"], target).iloc[0]

    def evaluate(strength: torch.Tensor | float, label: str) -> tuple[pd.DataFrame, float, float]:
        answers = scan_point(scan, vectors, strength, f"validation {family} {direction} {label}")
        metrics = target_metrics(answers.assign(point=0), ["point"], target).iloc[0]
        return answers, metrics["record_target"] - base["record_target"], metrics["s_other"] - base["s_other"]

    rows, answers_by_strength = [], [scan.unsteered.assign(strength=0.0)]
    for strength in sorted(strengths):
        answers, shift, collapse = evaluate(strength, f"s={strength:g}")
        answers_by_strength.append(answers.assign(strength=strength))
        rows.append({"stage": "strength", "strength": strength, "beta": 0.0, "r_anchor": math.nan, "beta_units": 0.0,
                     "anchor_quantile": math.nan, "shift": shift, "collapse": collapse})
    strength_scan = pd.DataFrame(rows)
    best, strength_within = scaling.choose(strength_scan, bound)
    chosen_strength = float(strength_scan["strength"].iloc[best])
    reactions = reaction_table(pd.concat(answers_by_strength, ignore_index=True), target)
    reaction_mcr = mcr.reindex(reactions["record_id"]).reset_index(drop=True)
    correlation = scaling.sensitivity_correlation(reaction_mcr, reactions["reaction_strength"])
    sign = scaling.beta_sign(correlation)
    fixed = amps_settings["beta"] is not None
    if fixed:
        # β and r_anchor from the config: only the base strength is chosen, over the whole scan.
        candidates = [scaling.from_values(train_mcr, amps_settings["beta"], amps_settings["r_anchor"])]
        bases = sorted(strengths)
    else:
        candidates = scaling.scaling_grid(train_mcr, sign, amps_settings["beta_units"], amps_settings["anchor_quantiles"])
        bases = grid_strengths(strengths, chosen_strength)
    for strength in bases:
        for candidate in candidates:
            if candidate.beta == 0.0:
                continue  # the strength scan holds it
            factors, _failed = online_factors(mcr, candidate.beta, candidate.r_anchor)
            _answers, shift, collapse = evaluate(strength * factors, f"s={strength:g} β={candidate.beta:.3g} r={candidate.r_anchor:.3g}")
            rows.append({"stage": "scaling", "strength": strength, "beta": candidate.beta, "r_anchor": candidate.r_anchor,
                         "beta_units": candidate.beta_units, "anchor_quantile": candidate.anchor_quantile,
                         "shift": shift, "collapse": collapse})
    table = pd.DataFrame(rows)
    # The scan comes first, so on a tie the unscaled point (β = 0) wins; a fixed non-zero β keeps to its own rows.
    eligible = table[table["stage"] == "scaling"] if fixed and candidates[0].beta != 0.0 else table
    pick, scaling_within = scaling.choose(eligible.reset_index(drop=True), bound)
    chosen = eligible.iloc[pick]
    finite = np.isfinite(mcr.to_numpy(dtype=np.float64))
    choice = {
        "strength": chosen_strength,
        "strength_within_bound": strength_within,
        "strength_shift": float(strength_scan["shift"].iloc[best]),
        "strength_collapse": float(strength_scan["collapse"].iloc[best]),
        # JSON has no NaN: an undefined correlation is written as null.
        "sensitivity_correlation": correlation if math.isfinite(correlation) else None,
        "beta_sign": sign,
        "amps_strength": float(chosen["strength"]),
        "beta": float(chosen["beta"]),
        "r_anchor": float(chosen["r_anchor"]) if chosen["beta"] != 0.0 else 0.0,
        "beta_units": float(chosen["beta_units"]),
        "anchor_quantile": float(chosen["anchor_quantile"]) if chosen["beta"] != 0.0 else 0.5,
        "scaling_within_bound": scaling_within,
        "validation_shift": float(chosen["shift"]),
        "validation_collapse": float(chosen["collapse"]),
        "records_without_mcr": int((~finite).sum()),
        "records_reacting": int(np.isfinite(reactions["reaction_strength"]).sum()),
    }
    return choice, table.assign(direction=direction, family=family)


def load_model(settings: dict, model: str) -> MultimodalModel:
    """Load the model of a step (``settings["model"]`` is its config entry)."""
    spec = settings["model"]
    return MultimodalModel.load(model, spec["device"], spec["dtype"], spec["device_map"], spec["trust_remote_code"])


def check_amps_settings(section: dict) -> None:
    """Fail before any model work on an inconsistent ``amps`` section."""
    if (section["beta"] is None) != (section["r_anchor"] is None):
        raise ValueError("amps.beta and amps.r_anchor must be set together (fixed) or both left null (chosen on validation)")
    if section["vector"] not in VECTORS:
        raise ValueError(f"amps.vector must be one of {VECTORS}, got {section['vector']!r}")
    scaling.mcr_column(section["estimator"])
    if not section["strengths"] or any(not (value > 0 and math.isfinite(value)) for value in section["strengths"]):
        raise ValueError(f"amps.strengths must be positive and finite, got {section['strengths']}")
    if 1.0 not in section["multipliers"]:
        raise ValueError(f"amps.multipliers must contain 1 (the main setting), got {section['multipliers']}")


def select_scaling(settings: dict, benchmark_dir: str, model: str, activations: str, mcr: str, output: str, scan: str) -> None:
    """CLI step: choose the strengths, β and r_anchor of one model on the validation split.

    For each direction and vector family (the per-sample vectors of P2S / Learn-to-Steer / AMPS,
    and the mean vector of mean steering / AMPS-online): the strength with the largest shift within
    the collapse bound, the sign of β from the sensitivity correlation, then (β, r_anchor) on the
    grid. ``settings``: ``model_name``, ``model``, ``amps``, ``steering``, ``evaluation``, ``threads``.
    Writes the choice (JSON) and every scanned point (CSV).
    """
    amps_settings = settings["amps"]
    check_amps_settings(amps_settings)
    alphas = check_alphas(settings["steering"]["alphas"])
    torch.set_num_threads(settings["threads"])
    layer = settings["model"]["steering_layers"][0]
    stored = Activations.load(activations)
    benchmark = Benchmark(benchmark_dir)
    validation = benchmark.split("validation")
    record_ids = validation["record_id"].tolist()
    mcr_values = load_mcr(mcr, amps_settings["estimator"])
    train_mcr = mcr_values.reindex(benchmark.split("steer_train")["record_id"]).to_numpy(dtype=np.float64)
    validation_mcr = mcr_of(mcr_values, record_ids)
    vectors = record_vectors(stored, layer, record_ids)
    loaded = load_model(settings, model)
    batch_size = settings["model"]["batch_size"]
    encoded = encode_questions(loaded, benchmark, validation, evaluation_questions(validation, "conflict"), batch_size)
    max_new_tokens = settings["evaluation"]["max_new_tokens"]
    unsteered = answer_encoded(loaded, encoded, max_new_tokens, desc="validation unsteered")
    context = ScanContext(loaded, encoded, unsteered, layer, settings["steering"]["positions"], max_new_tokens)
    mean_unit = vectors.everywhere(mean_direction(vectors, 1.0))
    choices: dict = {"model": settings["model_name"], "layer": layer, "estimator": amps_settings["estimator"],
                     "vector": amps_settings["vector"], "max_collapse": amps_settings["max_collapse"],
                     "train_mcr_sd": scaling.mcr_statistics(train_mcr)[0]}
    tables = []
    for direction, (sign, _target) in DIRECTIONS.items():
        per_sample, per_sample_table = select_family(
            context, sign * vectors.base(amps_settings["vector"]), amps_settings["strengths"], validation_mcr, train_mcr,
            direction, amps_settings["vector"], amps_settings,
        )
        mean, mean_table = select_family(
            context, sign * mean_unit, alphas, validation_mcr, train_mcr, direction, "mean", amps_settings
        )
        choices[direction] = {"module": per_sample, "online": mean}
        tables += [per_sample_table.assign(method="amps"), mean_table.assign(method="amps_online")]
        log.info("%s %s: module %s; online %s", settings["model_name"], direction, per_sample, mean)
    write_json(output, choices)
    scanned = pd.concat(tables, ignore_index=True)
    scanned.insert(0, "model", settings["model_name"])
    write_table(scan, scanned)


# ----------------------------------------------------------------------------- module training


@dataclass
class TrainingData:
    """Plain states, vectors (toward vision) and MCR of the steering-training and validation prompts.

    Rows are prompts, order-major (every record in the first order, then in the second); a record's
    MCR is repeated for both of its prompts.
    """

    train_states: torch.Tensor
    validation_states: torch.Tensor
    train_vectors: torch.Tensor
    validation_vectors: torch.Tensor
    train_mcr: torch.Tensor
    validation_mcr: torch.Tensor


def training_data(activations: Activations, layer: int, vector: str, train: pd.DataFrame, validation: pd.DataFrame,
                  mcr: pd.Series) -> TrainingData:
    """States, vectors and MCR of the records with a finite MCR (the same records for every kind)."""
    parts = []
    for records in (train, validation):
        values = mcr_of(mcr, records["record_id"].tolist())
        ids = values.index[np.isfinite(values.to_numpy(dtype=np.float64))].tolist()
        if not ids:
            raise ValueError("no records with a finite MCR to train the steering module on")
        if len(ids) < len(values):
            log.warning("%d of %d records have no finite MCR and are left out of module training", len(values) - len(ids), len(values))
        vectors = record_vectors(activations, layer, ids).base(vector).flatten(0, 1)
        record_mcr = torch.tensor(mcr.loc[ids].to_numpy(), dtype=torch.float32)
        parts.append((plain_states(activations, layer, ids), vectors, record_mcr.repeat(len(prompts.ORDERS))))
    (train_states, train_vectors, train_mcr), (validation_states, validation_vectors, validation_mcr) = parts
    return TrainingData(train_states, validation_states, train_vectors, validation_vectors, train_mcr, validation_mcr)


def fit_module(data: TrainingData, config: SteererConfig, settings: TrainingSettings, direction_sign: float) -> tuple[torch.nn.Module, dict]:
    """Train one module on ``direction_sign × max(0, 1 + γ)·v`` for every prompt (γ = 0 for Learn-to-Steer)."""
    beta = config.beta if config.kind == "amps" else 0.0
    targets = [
        direction_sign * scaling.scaled_targets(vectors, mcr, beta, config.r_anchor)
        for vectors, mcr in ((data.train_vectors, data.train_mcr), (data.validation_vectors, data.validation_mcr))
    ]
    return train_steerer(data.train_states, targets[0], data.validation_states, targets[1], config.width, settings, config.seed)


def module_name(kind: str, direction: str, seed_index: int) -> str:
    """File stem of a trained module in the model's steerers folder."""
    return f"{kind}-{direction}-seed{seed_index}"


def train_modules(settings: dict, benchmark_dir: str, activations: str, mcr: str, selection: str, output_dir: str, summary: str) -> None:
    """CLI step: train Learn-to-Steer and AMPS modules of one model, each direction and seed.

    ``settings``: ``model_name``, ``steering_layer``, ``amps``, ``seed``, ``threads`` (no model
    entry: the step never loads the model, so it claims no GPU). Writes the modules (safetensors +
    JSON) into ``output_dir`` and a CSV of their training losses.
    """
    amps_settings = settings["amps"]
    check_amps_settings(amps_settings)
    torch.set_num_threads(settings["threads"])
    layer = settings["steering_layer"]
    stored = Activations.load(activations)
    benchmark = Benchmark(benchmark_dir)
    mcr_values = load_mcr(mcr, amps_settings["estimator"])
    chosen = read_json(selection)
    data = training_data(stored, layer, amps_settings["vector"], benchmark.split("steer_train"), benchmark.split("validation"), mcr_values)
    training = TrainingSettings.from_config(amps_settings["module"])
    rows = []
    with atomic_directory(output_dir) as folder:
        for direction, (sign, _target) in DIRECTIONS.items():
            for kind in ("l2s", "amps"):
                for seed_index in range(amps_settings["seeds"]):
                    config = SteererConfig(
                        hidden_size=stored.index["hidden_size"], width=amps_settings["module"]["width"], input_layer=layer,
                        steer_layer=layer, kind=kind, direction=direction, vector=amps_settings["vector"],
                        beta=chosen[direction]["module"]["beta"] if kind == "amps" else 0.0,
                        r_anchor=chosen[direction]["module"]["r_anchor"] if kind == "amps" else 0.0,
                        seed=settings["seed"] + seed_index,
                    )
                    module, history = fit_module(data, config, training, sign)
                    save_steerer(folder / f"{module_name(kind, direction, seed_index)}.safetensors", module, config)
                    rows.append({"model": settings["model_name"], "kind": kind, "direction": direction, "seed_index": seed_index,
                                 "beta": config.beta, "r_anchor": config.r_anchor, "train_prompts": len(data.train_mcr), **history})
    table = pd.DataFrame(rows)
    write_table(summary, table)
    log.info("steering modules of %s:\n%s", settings["model_name"], table.to_string(index=False))


# ----------------------------------------------------------------------------- test evaluation


@dataclass(frozen=True)
class Point:
    """One evaluated setting of a method: its identifying values and how each batch is steered."""

    seed: int
    multiplier: float
    strength: float
    main: bool
    context: BatchContext | None
    instruction: str = "none"


@dataclass
class MethodInputs:
    """What the methods read besides the model: vectors, MCR, the validation choice, the modules."""

    vectors: RecordVectors
    mcr: pd.Series
    selection: dict
    steerers_dir: Path
    alphas: list[float]
    amps_settings: dict
    positions: str


def method_points(model: MultimodalModel, method: str, direction: str, inputs: MethodInputs) -> list[Point]:
    """Every setting at which ``method`` is evaluated in ``direction`` (see the module docstring)."""
    sign = DIRECTIONS[direction][0]
    layer, positions = inputs.vectors.layer, inputs.positions
    chosen = inputs.selection[direction]
    multipliers = sorted(inputs.amps_settings["multipliers"])
    if method == "instruction":
        return [Point(0, 1.0, 0.0, True, None, INSTRUCTION_FOR[direction])]
    if method == "mean":
        return [
            Point(0, 1.0, alpha, alpha == chosen["online"]["strength"],
                  per_record_steering(model, layer, inputs.vectors.everywhere(sign * mean_direction(inputs.vectors, alpha)), 1.0, positions))
            for alpha in inputs.alphas
        ]
    if method == "p2s":
        strength = chosen["module"]["strength"]
        vectors = sign * inputs.vectors.base(inputs.amps_settings["vector"])
        return [Point(0, m, strength * m, m == 1.0, per_record_steering(model, layer, vectors, strength * m, positions)) for m in multipliers]
    if method == "amps_online":
        online = chosen["online"]
        factors, failed = online_factors(inputs.mcr, online["beta"], online["r_anchor"])
        if failed:
            log.warning("%d test records have no MCR: AMPS-online steers them with γ = 0", failed)
        unit = inputs.vectors.everywhere(sign * mean_direction(inputs.vectors, 1.0))
        strength = online["amps_strength"]
        return [
            Point(0, m, strength * m, m == 1.0, per_record_steering(model, layer, unit, strength * m * factors, positions))
            for m in multipliers
        ]
    if method in ("l2s", "amps"):
        strength = chosen["module"]["amps_strength" if method == "amps" else "strength"]
        points = []
        for seed_index in range(inputs.amps_settings["seeds"]):
            module, config = load_steerer(inputs.steerers_dir / f"{module_name(method, direction, seed_index)}.safetensors")
            for m in multipliers:
                points.append(Point(seed_index, m, strength * m, m == 1.0, module_steering(model, module, config, strength * m, positions)))
        return points
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def evaluate_points(
    model: MultimodalModel,
    benchmark: Benchmark,
    records: pd.DataFrame,
    points: list[Point],
    batch_size: int,
    max_new_tokens: int,
    desc: str,
    encoded: dict[tuple[str, str], EncodedQuestions] | None = None,
) -> pd.DataFrame:
    """Answers at every point: the conflict prompts always, the agreeing control at main points.

    ``encoded`` caches the encoded questions per (condition, instruction); pass one dict to share
    them between calls on the same records.
    """
    encoded = {} if encoded is None else encoded
    frames = []
    for point in points:
        for condition in ("conflict", "agreeing") if point.main else ("conflict",):
            key = (condition, point.instruction)
            if key not in encoded:
                questions = evaluation_questions(records, condition, point.instruction)
                encoded[key] = encode_questions(model, benchmark, records, questions, batch_size)
            answers = answer_encoded(model, encoded[key], max_new_tokens, point.context,
                                     desc=f"{desc} {condition} seed {point.seed} ×{point.multiplier:g}")
            frames.append(answers.assign(seed=point.seed, multiplier=point.multiplier, strength=point.strength, main=point.main))
    return pd.concat(frames, ignore_index=True)


def answers_path(answers_dir: str | Path, method: str, direction: str) -> Path:
    """Where the steered evaluation writes the answers of ``method`` in ``direction``."""
    return Path(answers_dir) / f"{method}-{direction}.parquet"


def steered_evaluation(
    settings: dict, benchmark_dir: str, model: str, activations: str, mcr: str, selection: str, steerers: str, answers_dir: str
) -> None:
    """CLI step: every method in both directions on the test split, one answers table each.

    One job per model: the methods share the loaded model and the encoded prompts, and on small
    models a job's start-up (importing torch and transformers) costs as much as a method's
    evaluation. The tables (:func:`answers_path`) are written once all are computed.
    ``settings``: ``model_name``, ``model``, ``amps``, ``steering``, ``evaluation``, ``threads``.
    """
    check_amps_settings(settings["amps"])
    torch.set_num_threads(settings["threads"])
    layer = settings["model"]["steering_layers"][0]
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.split("test")
    record_ids = records["record_id"].tolist()
    inputs = MethodInputs(
        vectors=record_vectors(Activations.load(activations), layer, record_ids),
        mcr=mcr_of(load_mcr(mcr, settings["amps"]["estimator"]), record_ids),
        selection=read_json(selection),
        steerers_dir=Path(steerers),
        alphas=check_alphas(settings["steering"]["alphas"]),
        amps_settings=settings["amps"],
        positions=settings["steering"]["positions"],
    )
    loaded = load_model(settings, model)
    # The model's size, for the table across scales.
    parameters = sum(parameter.numel() for parameter in loaded.model.parameters())
    encoded: dict[tuple[str, str], EncodedQuestions] = {}
    tables = {}
    for method in METHODS:
        for direction in DIRECTIONS:
            answers = evaluate_points(
                loaded, benchmark, records, method_points(loaded, method, direction, inputs),
                settings["model"]["batch_size"], settings["evaluation"]["max_new_tokens"],
                desc=f"{settings['model_name']} {method} {direction}", encoded=encoded,
            )
            answers.insert(0, "model", settings["model_name"])
            answers.insert(1, "method", method)
            answers.insert(2, "direction", direction)
            answers["layer"] = layer
            answers["parameters"] = parameters
            main = answers[answers["main"] & (answers["condition"] == "conflict")]
            log.info("%s %s %s main setting:\n%s", settings["model_name"], method, direction,
                     target_metrics(main, ["seed"], DIRECTIONS[direction][1]).to_string(index=False))
            tables[method, direction] = answers
    for (method, direction), answers in tables.items():
        write_table(answers_path(answers_dir, method, direction), answers)
