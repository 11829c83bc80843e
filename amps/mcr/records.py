"""The MCR of a benchmark's records: both option orders, both modalities, both estimators, one table row each
(the columns of :data:`amps.mcr.table.COLUMNS`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from amps.core.progress import progress
from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.mcr.estimates import Estimate, contribution_ratio, functional_entropy, order_average, sample_mean
from amps.mcr.perturb import Samples, score_samples, scoring_mode, stream_seed
from amps.mcr.prefill import Prefill, prefill
from amps.mcr.settings import EstimatorSettings
from amps.mcr.table import COLUMNS
from amps.models.interface import MultimodalModel
from amps.vocabulary import MODALITIES, ORDERS

log = logging.getLogger(__name__)


def target_index(record, order: str, answer: str, option_logits: torch.Tensor) -> int:
    """Which option (0 = A, 1 = B) ``f`` scores: the clean argmax, or the vision- or text-consistent option."""
    if answer == "clean":
        return int(option_logits.argmax())
    option_a, _option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
    wanted = record["answer_vision"] if answer == "vision" else record["answer_text"]
    return 0 if option_a == wanted else 1


@dataclass
class OrderScores:
    """One option order's estimates per modality: functional entropy and, when computed, the Fisher term."""

    entropy: dict[str, Estimate]
    fisher: dict[str, Estimate] | None


def clean_answer(record, order: str, state: Prefill) -> dict:
    """Which modality the unperturbed answer follows in ``order``, and its probability among (A, B)."""
    query = prompts.conflict_query(record, order)
    probabilities = state.option_logits.softmax(dim=-1)
    letter = int(probabilities.argmax())
    chosen = query.option_a if letter == 0 else query.option_b
    return {
        f"clean_choice_{order}": "vision" if chosen == record["answer_vision"] else "text",
        f"clean_p_{order}": float(probabilities[letter]),
    }


def non_finite_problems(order: str, state: Prefill, scored: dict[str, Samples]) -> list[str]:
    """What in one order's prefill or samples is NaN or infinite, in words (empty when all is finite)."""
    problems = []
    if not torch.isfinite(state.option_logits).all():
        problems.append(f"{order}: clean option logits non-finite")
    for modality, samples in scored.items():
        for name, values in (("samples of f", samples.f), ("Fisher terms", samples.fisher)):
            bad = 0 if values is None else int((~np.isfinite(values)).sum())
            if bad:
                problems.append(f"{order} {modality}: {bad} of {len(values)} {name} non-finite")
    return problems


def score_order(
    model: MultimodalModel, record, order: str, state: Prefill, settings: EstimatorSettings, max_batch: int
) -> tuple[OrderScores, list[str]]:
    """Both modalities' estimates for one option order, with each modality's own seeded noise stream."""
    target = target_index(record, order, settings.answer, state.option_logits)
    device = state.layers[0][0].device
    generators = {
        modality: torch.Generator(device=device).manual_seed(
            stream_seed(settings.seed, record["record_id"], order, modality, settings.stream)
        )
        for modality in MODALITIES
        if len(state.positions[modality])
    }
    scored = score_samples(model, state, target, generators, settings, max_batch)
    # A modality with no positions (a prompt without a context) contributes nothing: exactly 0.
    absent = {modality: Estimate(0.0, 0.0) for modality in MODALITIES if modality not in scored}
    entropy = {**{modality: functional_entropy(samples.f) for modality, samples in scored.items()}, **absent}
    fisher = (
        {**{modality: sample_mean(samples.fisher) for modality, samples in scored.items()}, **absent} if settings.fisher else None
    )
    return OrderScores(entropy, fisher), non_finite_problems(order, state, scored)


def combined_columns(scores: dict[str, OrderScores]) -> dict[str, float]:
    """MCS, Fisher terms and both ratios with their errors, averaged over the option orders; per-order MCS."""
    columns: dict[str, float] = {}
    for order, order_scores in scores.items():
        for modality in MODALITIES:
            columns[f"mcs_{modality}_{order}"] = order_scores.entropy[modality].value
    estimators = (
        ("mcs", "mcr", [order_scores.entropy for order_scores in scores.values()]),
        ("fisher", "mcr_fisher", [order_scores.fisher for order_scores in scores.values()]),
    )
    for prefix, ratio_name, per_order in estimators:
        if any(estimates is None for estimates in per_order):  # the Fisher term was not asked for
            per_modality = {modality: Estimate(math.nan, math.nan) for modality in MODALITIES}
        else:
            per_modality = {modality: order_average([estimates[modality] for estimates in per_order]) for modality in MODALITIES}
        for modality in MODALITIES:
            columns[f"{prefix}_{modality}"] = per_modality[modality].value
            columns[f"{prefix}_{modality}_se"] = per_modality[modality].se
        ratio = contribution_ratio(per_modality["text"], per_modality["image"])
        columns[ratio_name], columns[f"{ratio_name}_se"] = ratio.value, ratio.se
    return columns


def estimate_record(model: MultimodalModel, benchmark: Benchmark, record, settings: EstimatorSettings, max_batch: int) -> dict:
    """The MCR row of one record: both option orders, both modalities, both estimators (at most ``max_batch``
    samples per pass).

    Both orders are prefilled first, then scored inside one :func:`scoring_mode`.
    """
    image = benchmark.image(record["record_id"])
    states = {
        order: prefill(
            model,
            model.encode([image], [prompts.conflict_query(record, order).prompt], contexts=[record["context"]]),
            settings.text,
        )
        for order in ORDERS
    }
    row: dict = {"record_id": record["record_id"], "task": record["task"], "split": record["split"]}
    scores, problems = {}, []
    with scoring_mode(model):
        for order, state in states.items():
            row.update(clean_answer(record, order, state))
            scores[order], order_problems = score_order(model, record, order, state, settings, max_batch)
            problems += order_problems
    row.update(combined_columns(scores))
    row["problem"] = "; ".join(problems)
    if problems:
        log.warning("record %s: non-finite Monte Carlo values (%s); its estimates are NaN", record["record_id"], row["problem"])
    return row


def estimate_records(
    model: MultimodalModel, benchmark: Benchmark, indices: range, settings: EstimatorSettings, max_batch: int, desc: str
) -> pd.DataFrame:
    """MCR rows for the benchmark records at ``indices`` (positions in ``records.parquet``)."""
    rows = []
    with progress(total=len(indices), desc=desc, unit="record") as bar:
        for index in indices:
            row = estimate_record(model, benchmark, benchmark.records.iloc[index], settings, max_batch)
            rows.append({"record_index": index, **row})
            bar.update(1)
    return pd.DataFrame(rows, columns=COLUMNS)
