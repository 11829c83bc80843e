"""The one asking engine: questions of a split's records, encoded in batches once, answered under many settings.

Each record is asked in both option orders, as the ``conflict`` prompt or the ``agreeing`` control (a
context that supports the image; none on MC², so the image alone decides), optionally with one of MC²'s
preference instructions, or under a baseline condition (:data:`amps.vocabulary.BASELINE_CONDITIONS`).
:class:`QuestionBatches` cuts the questions into batches of the model's batch size, in the questions'
order, and encodes each batch once: kept for steps that answer the same prompts many times (the sweep,
the validation scans, the steered evaluation, the ablations), or encoded as it is read and let go for
steps that pass once over many prompts (the baseline, the activations). :func:`answer` generates the
greedy answers of every batch inside a per-batch context (the steering hooks of a method at one
strength) and parses each into an answers-table row: the record, its condition and option order, the
answer, the letter it chose and the modality it followed (:mod:`amps.metrics` scores them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator

import numpy as np
import pandas as pd

from amps.core.progress import progress
from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.models.interface import Batch, MultimodalModel
from amps.vocabulary import BASELINE_CONDITIONS, ORDERS, PROMPT_KINDS


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


#: A per-batch steering context: entered around each batch's generation.
BatchContext = Callable[[list[Question], Batch], ContextManager]


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


def baseline_questions(records: pd.DataFrame, conditions: Iterable[str] = BASELINE_CONDITIONS) -> list[Question]:
    """Every record under every condition, in both option orders (condition by condition)."""
    return [
        make_question(record, index, condition, order)
        for condition in conditions
        for index, record in records.iterrows()
        for order in ORDERS
    ]


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


class QuestionBatches:
    """``questions`` about ``records`` in batches of ``batch_size``, in order, each encoded once.

    With ``keep`` the encoded batches are kept to be answered again (under another steering); without,
    each batch is encoded as it is read and let go, so a single pass over many prompts holds one batch.
    """

    def __init__(
        self,
        model: MultimodalModel,
        benchmark: Benchmark,
        records: pd.DataFrame,
        questions: list[Question],
        batch_size: int,
        keep: bool,
    ):
        self.model, self.benchmark, self.records = model, benchmark, records
        self.chunks = [questions[start : start + batch_size] for start in range(0, len(questions), batch_size)]
        self.keep = keep
        self.encoded: list[Batch] = []

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def _encode(self, chunk: list[Question]) -> Batch:
        images = [
            self.benchmark.image(self.records.iloc[question.record_index]["record_id"], question.blank_image)
            for question in chunk
        ]
        return self.model.encode(images, [question.prompt for question in chunk])

    def __iter__(self) -> Iterator[tuple[list[Question], Batch]]:
        for index, chunk in enumerate(self.chunks):
            if not self.keep:
                yield chunk, self._encode(chunk)
                continue
            if index == len(self.encoded):
                self.encoded.append(self._encode(chunk))
            yield chunk, self.encoded[index]


def answer(
    model: MultimodalModel,
    batches: QuestionBatches,
    max_new_tokens: int,
    batch_context: BatchContext | None = None,
    desc: str = "answer",
) -> pd.DataFrame:
    """Greedy answers of every batch, each generated inside ``batch_context(chunk, batch)`` if given."""
    rows = []
    with progress(total=batches.size, desc=desc, unit="q") as bar:
        for chunk, batch in batches:
            with batch_context(chunk, batch) if batch_context else contextlib.nullcontext():
                answers = model.generate(batch, max_new_tokens)
            rows += [answer_row(batches.records, question, text) for question, text in zip(chunk, answers)]
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
