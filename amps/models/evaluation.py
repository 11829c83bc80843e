"""Preference evaluation: ask records in both option orders and parse the answers.

Each answer row names the record, its condition and option order, the answer, the letter it chose
and the modality it followed; :mod:`amps.metrics` turns these rows into MC²'s scores.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable

import numpy as np
import pandas as pd

from amps.core.progress import progress
from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.models.interface import MultimodalModel
from amps.vocabulary import BASELINE_CONDITIONS, ORDERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """One row to ask: a record in one option order under one condition (``blank_image``: with a blank image)."""

    record_index: int
    condition: str
    order: str
    prompt: str
    option_a: str
    option_b: str
    blank_image: bool = False


def build_question(
    record, record_index: int, kind: str, instruction: str, order: str, condition: str, blank_image: bool = False
) -> Question:
    """The question of a record in ``order``: the ``conflict`` prompt or the ``agreeing`` control, with ``instruction``.

    ``agreeing`` asks with a context that supports the vision answer (``context_agreeing``); where a
    benchmark has none (MC²), the context is left out, so the image alone decides.
    """
    option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
    if kind == "agreeing":
        context = record.get("context_agreeing")
        context = None if context is None or (isinstance(context, float) and np.isnan(context)) else context
    elif kind == "conflict":
        context = record["context"]
    else:
        raise ValueError(f"unknown prompt kind {kind!r}; expected conflict or agreeing")
    prompt = prompts.build_prompt(record["question"], option_a, option_b, context, instruction)
    return Question(record_index, condition, order, prompt, option_a, option_b, blank_image)


def make_question(record, record_index: int, condition: str, order: str) -> Question:
    """The question of a record under a baseline condition (:data:`amps.vocabulary.BASELINE_CONDITIONS`)."""
    if condition not in BASELINE_CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {list(BASELINE_CONDITIONS)}")
    kind, instruction, blank = BASELINE_CONDITIONS[condition]
    return build_question(record, record_index, kind, instruction, order, condition, blank)


BatchContext = Callable[[list[Question], "object"], ContextManager]


def ask(
    model: MultimodalModel,
    benchmark: Benchmark,
    records: pd.DataFrame,
    questions: list[Question],
    batch_size: int,
    max_new_tokens: int,
    batch_context: BatchContext | None = None,
    desc: str = "ask",
) -> pd.DataFrame:
    """Generate greedy answers for ``questions`` and classify each as vision / text / other.

    ``batch_context(questions, batch)``, if given, returns a context manager entered around each
    batch's generation (steering hooks use it to add per-row vectors).
    """
    rows = []
    with progress(total=len(questions), desc=desc, unit="q") as bar:
        for start in range(0, len(questions), batch_size):
            chunk = questions[start : start + batch_size]
            images = [benchmark.image(records.iloc[q.record_index], q.blank_image) for q in chunk]
            batch = model.encode(images, [q.prompt for q in chunk])
            with batch_context(chunk, batch) if batch_context else contextlib.nullcontext():
                answers = model.generate(batch, max_new_tokens)
            rows += [answer_row(records, question, answer) for question, answer in zip(chunk, answers)]
            bar.update(len(chunk))
    return pd.DataFrame(rows)


def answer_row(records: pd.DataFrame, question: Question, answer: str) -> dict:
    """One answers-table row: the record, the question's condition and order, the answer, its letter and choice."""
    record = records.iloc[question.record_index]
    letter = prompts.parse_letter(answer, question.option_a, question.option_b)
    return {
        "record_id": record["record_id"],
        "task": record["task"],
        "condition": question.condition,
        "order": question.order,
        "answer": answer,
        "letter": letter or "",
        "choice": prompts.classify(answer, record, question.order),
    }


def baseline_questions(records: pd.DataFrame, conditions: Iterable[str] = BASELINE_CONDITIONS) -> list[Question]:
    """Every record under every condition, in both option orders."""
    return [
        make_question(record, index, condition, order)
        for condition in conditions
        for index, record in records.iterrows()
        for order in ORDERS
    ]
