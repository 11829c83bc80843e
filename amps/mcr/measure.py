"""The MCR of a record, an image and a question whose text context asserts another answer than the image shows.

:func:`measure_mcr` is the estimator of :mod:`amps.mcr` for one record or many: each record is asked as the
MC² prompt (context, question, options A/B, answer line) in both option orders, prefilled once per order,
and each modality's cached keys and values are perturbed ``samples`` times. The estimator's settings are
its keyword arguments, with the pipeline's defaults; the pipeline's MCR shards and ablations call it record
by record, so a record's MCR here equals the run's for the same settings and seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, overload

import numpy as np
import torch
from PIL import Image

from amps.core.config import check_section_values
from amps.data import prompts
from amps.mcr.ablation import answer_ablation, input_ablation
from amps.mcr.estimates import Estimate, contribution_ratio, functional_entropy, order_average, sample_mean
from amps.mcr.perturb import Samples, score_samples, scoring_mode, stream_seed
from amps.mcr.prefill import Prefill, prefill
from amps.mcr.settings import MAX_BATCH, EstimatorSettings
from amps.mcr.table import ABLATION_COLUMNS
from amps.models.interface import MultimodalModel
from amps.vocabulary import MODALITIES, ORDERS

log = logging.getLogger(__name__)

#: What a record must hold: the image (PIL), the question, the answer the image shows, the answer the context
#: asserts, and the context (None: no context, so the text contributes nothing). A ``record_id``, where given,
#: names its noise streams (the pipeline's records have one); otherwise its text does.
RECORD_KEYS = ("image", "question", "answer_vision", "answer_text", "context")


@dataclass(frozen=True)
class McrEstimate:
    """The MCR of one record with its Monte Carlo standard error, and every number of its row in the MCR table.

    ``mcr`` = MCS_text / (MCS_text + MCS_image), each modality's score the functional entropy of ``f`` averaged
    over both option orders: near 1 the answer rests on the text, near 0 on the image. ``se`` is its standard
    error (delta method; it falls as 1/sqrt(samples)). ``columns`` holds the row of the pipeline's MCR table
    (:data:`amps.mcr.table.COLUMNS` but the record's index, id, task and split): the scores and their errors,
    the Fisher-term estimates (NaN without ``fisher``), each order's scores and clean answer, and ``problem``
    (which order, modality and estimator gave a non-finite value; empty when none did, else the numbers are NaN).

    Example::

        estimate = amps.measure_mcr(model, record)
        f"MCR {estimate.mcr:.2f} ± {estimate.se:.2f}"       # 'MCR 0.73 ± 0.04'
        estimate.columns["clean_choice_vision_first"]       # 'text': the unperturbed answer followed the text
    """

    columns: dict[str, Any]

    @property
    def mcr(self) -> float:
        return float(self.columns["mcr"])

    @property
    def se(self) -> float:
        return float(self.columns["mcr_se"])

    @property
    def mcr_fisher(self) -> float:
        """The MCR from the Fisher term instead of the entropy (NaN unless estimated)."""
        return float(self.columns["mcr_fisher"])

    @property
    def problem(self) -> str:
        return str(self.columns["problem"])


def check_record(record: Any) -> None:
    """Raise a clear error for a record that is not a mapping, lacks a key or whose image is not an image."""
    if not isinstance(record, Mapping):
        raise TypeError(f"an MCR record is a mapping of {RECORD_KEYS}, got a {type(record).__name__}")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ValueError(f"the MCR record lacks {missing}; it needs {RECORD_KEYS}")
    if not isinstance(record["image"], Image.Image):
        raise TypeError(f"the MCR record's image must be a PIL image, got a {type(record['image']).__name__}")


def noise_key(record: Mapping) -> str:
    """What names a record's noise streams: its ``record_id``, or else its text."""
    if record.get("record_id"):
        return str(record["record_id"])
    return "|".join(str(record[key]) for key in ("question", "answer_vision", "answer_text", "context"))


def target_index(record: Mapping, order: str, answer: str, option_logits: torch.Tensor) -> int:
    """Which option (0 = A, 1 = B) ``f`` scores: the clean argmax, or the vision- or text-consistent option."""
    if answer == "clean":
        return int(option_logits.argmax())
    return prompts.option_index(record, order, answer)


@dataclass
class OrderScores:
    """One option order's estimates per modality: functional entropy and, when computed, the Fisher term."""

    entropy: dict[str, Estimate]
    fisher: dict[str, Estimate] | None


def clean_answer(record: Mapping, order: str, state: Prefill) -> dict:
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
    model: MultimodalModel, record: Mapping, order: str, state: Prefill, settings: EstimatorSettings, max_batch: int
) -> tuple[OrderScores, list[str]]:
    """Both modalities' estimates for one option order, with each modality's own seeded noise stream."""
    target = target_index(record, order, settings.answer, state.option_logits)
    device = state.layers[0][0].device
    generators = {
        modality: torch.Generator(device=device).manual_seed(
            stream_seed(settings.seed, noise_key(record), order, modality, settings.stream)
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


def estimate(
    model: MultimodalModel, record: Mapping, settings: EstimatorSettings, max_batch: int, ablation: bool = True
) -> McrEstimate:
    """One record's estimate: both option orders prefilled first, with the input ablation beside them (its own
    forwards, before the scoring) and the answer-position ablation (on the prefills; both NaN columns without
    ``ablation``), then scored inside one :func:`scoring_mode`."""
    states = {
        order: prefill(
            model,
            model.encode([record["image"]], [prompts.conflict_query(record, order).prompt], contexts=[record["context"]]),
            settings.text,
        )
        for order in ORDERS
    }
    clean_logits = {order: state.option_logits for order, state in states.items()}
    columns: dict[str, Any] = (
        input_ablation(model, record, clean_logits) if ablation else dict.fromkeys(ABLATION_COLUMNS, math.nan)
    )
    scores, problems = {}, []
    with scoring_mode(model):
        if ablation:
            columns.update(answer_ablation(model, record, states, columns["p_text_clean"]))
        for order, state in states.items():
            columns.update(clean_answer(record, order, state))
            scores[order], order_problems = score_order(model, record, order, state, settings, max_batch)
            problems += order_problems
    columns.update(combined_columns(scores))
    columns["problem"] = "; ".join(problems)
    if problems:
        log.warning("record %s: non-finite Monte Carlo values (%s); its estimates are NaN", noise_key(record), columns["problem"])
    return McrEstimate(columns)


@overload
def measure_mcr(
    model: MultimodalModel,
    records: Mapping[str, Any],
    *,
    sigma: float = ...,
    samples: int = ...,
    answer: str = ...,
    fisher: bool = ...,
    text: str = ...,
    seed: int = ...,
    stream: str = ...,
    max_batch: int = ...,
    ablation: bool = ...,
) -> McrEstimate: ...
@overload
def measure_mcr(
    model: MultimodalModel,
    records: Iterable[Mapping[str, Any]],
    *,
    sigma: float = ...,
    samples: int = ...,
    answer: str = ...,
    fisher: bool = ...,
    text: str = ...,
    seed: int = ...,
    stream: str = ...,
    max_batch: int = ...,
    ablation: bool = ...,
) -> list[McrEstimate]: ...
def measure_mcr(
    model: MultimodalModel,
    records: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    sigma: float = EstimatorSettings.sigma,
    samples: int = EstimatorSettings.samples,
    answer: str = EstimatorSettings.answer,
    fisher: bool = EstimatorSettings.fisher,
    text: str = EstimatorSettings.text,
    seed: int = EstimatorSettings.seed,
    stream: str = EstimatorSettings.stream,
    max_batch: int = MAX_BATCH,
    ablation: bool = True,
) -> McrEstimate | list[McrEstimate]:
    """The Modality Contribution Ratio of one record (a mapping) or of each of many (a list, a ``datasets.Dataset``).

    A record holds :data:`RECORD_KEYS` (a row of a prepared benchmark does). The settings are the config's
    ``mcr`` keys, with their defaults: noise scale ``sigma``, Monte Carlo ``samples`` per option order and
    modality, what ``f`` scores (``answer``), the Fisher term (``fisher``), the text positions (``text``);
    ``seed`` is the run's seed and ``stream`` names another set of noise draws. ``max_batch`` bounds the
    samples per forward pass (memory only; on a GPU, passes take fewer where its free memory holds fewer).
    ``ablation`` adds the record's input and answer-position ablations (:mod:`amps.mcr.ablation`: two forwards
    and two one-token forwards per option order; their columns are NaN without it).
    A record's noise comes from its ``record_id`` and the seed, so with a run's settings and seed its MCR
    is the run's (``results/<run>/mcr/<model>.parquet``).

    Example::

        record = {"image": Image.open("bus.jpg"), "question": "What colour is the bus?",
                  "answer_vision": "red", "answer_text": "blue", "context": "A caption states that the bus is blue."}
        estimate = amps.measure_mcr(model, record, samples=16)
        estimate.mcr, estimate.se       # (0.73, 0.04): the answer rests mostly on the text
    """
    check_section_values(
        "mcr", {"sigma": sigma, "samples": samples, "answer": answer, "fisher": fisher, "text": text, "max_batch": max_batch}
    )
    settings = EstimatorSettings(sigma, samples, answer, fisher, text, seed, stream)
    if isinstance(records, Mapping):
        check_record(records)
        return estimate(model, records, settings, max_batch, ablation)
    many = list(records)
    for record in many:
        check_record(record)
    return [estimate(model, record, settings, max_batch, ablation) for record in many]
