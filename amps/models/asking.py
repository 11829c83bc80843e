"""Asking a split's records many times: encode the prompts once, answer them under many steering settings.

Each record is asked in both option orders, as the ``conflict`` prompt or the ``agreeing`` control
(a context that supports the image; none on MC², so the image alone decides), optionally with one
of MC²'s preference instructions. :func:`encode_questions` builds the batches once;
:func:`answer_encoded` generates greedy answers of every batch inside a per-batch context (the
steering hooks of a method at one strength).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager

import pandas as pd

from amps.core.progress import progress
from amps.data.benchmark import Benchmark
from amps.models.evaluation import Question, answer_row, build_question
from amps.models.interface import Batch, MultimodalModel
from amps.vocabulary import ORDERS, PROMPT_KINDS

#: A per-batch steering context: entered around each batch's generation.
BatchContext = Callable[[list[Question], Batch], ContextManager]


def evaluation_questions(records: pd.DataFrame, condition: str, instruction: str = "none") -> list[Question]:
    """Every record in both option orders: the ``conflict`` prompt or the ``agreeing`` control.

    ``instruction`` (``none``, ``image`` or ``text``) adds MC²'s preference instruction to either.
    """
    if condition not in PROMPT_KINDS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {PROMPT_KINDS}")
    return [
        build_question(record, index, condition, instruction, order, condition)
        for index, record in records.iterrows()
        for order in ORDERS
    ]


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
        images = [benchmark.image(records.iloc[question.record_index], question.blank_image) for question in chunk]
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
