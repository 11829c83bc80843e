"""The one asking engine: questions of a split's records, encoded in batches once, answered under many settings.

Each record is asked in both option orders, as the ``conflict`` prompt or the ``agreeing`` control (a
context that supports the image; none on MC², so the image alone decides), optionally with one of MC²'s
preference instructions, or under a baseline condition (:data:`amps.vocabulary.BASELINE_CONDITIONS`).
:class:`QuestionBatches` cuts the questions into batches of the model's batch size, in the questions'
order, and encodes each batch once, on the host, the next batch in a background thread while the current
one is answered: kept for steps that answer the same prompts many times (the sweep, the validation scans,
the steered evaluation, the ablations), or encoded as it is read and let go for steps that pass once over
many prompts (the baseline, the activations). :func:`answer` answers every batch inside a per-batch context
(the steering hooks of a method at one strength) and parses each answer into an answers-table row: the
record, its condition and option order, the answer, the letter it chose and the modality it followed
(:mod:`amps.metrics` scores them).

Answers are the model's full greedy answers, at less than full generation's cost (:func:`greedy_tokens`):
every row gets the prefill and one more step, and the rows that have ended by then (a letter and the end of
the answer, or the end at once) are answered; only the rest are generated on, as a batch of their own,
instead of holding the whole batch to the token limit. A letter is not an answer by itself ("B B" names no
option, "A. blue" contradicts its letter), so a row is answered once its end token shows. Where many
answers of a pass run on, that first round costs more than it saves (they are prefilled again), and
:func:`answer` answers the next batches in one generation until few rows run on again.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator

import numpy as np
import pandas as pd

from amps.core.devices import run_in_passes
from amps.core.progress import progress
from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.models.batch import Batch
from amps.models.interface import MultimodalModel
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


#: A per-batch steering context: entered around each generation, with the questions and batch it generates.
BatchContext = Callable[[list[Question], Batch], ContextManager]
#: New tokens every row gets first: enough for an answer that is a letter and the end of the answer.
FIRST_TOKENS = 2
#: The share of rows running on past the first round above which it costs more than it saves (their prompts are
#: prefilled again). benchmarks/answer_cost.py, toy-l on the CPU (a decoding step about a fifteenth of a prefill):
#: 10% less time with 4 of 64 rows running on, 5% more with 16 of 64; where steps cost more than there, the
#: break-even share is higher, so this errs on the side of generating whole.
MAX_RUNNING_ON = 0.125


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
    """``questions`` about ``records`` in batches of ``batch_size``, in order, each encoded once, on the host.

    With ``keep`` the encoded batches are kept to be answered again (under another steering); without,
    each batch is encoded as it is read and let go, so a single pass over many prompts holds two batches.
    While a batch is answered, the next one is encoded in a background thread (image preprocessing
    overlaps with the model); the batches come in order, and are what encoding them one by one gives.

    Example::

        batches = QuestionBatches(model, benchmark, records, evaluation_questions(records, "conflict"), 16, keep=True)
        unsteered = answer(model, batches, max_new_tokens=4)    # encodes each batch once
        again = answer(model, batches, max_new_tokens=4)        # reuses them
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
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.model, self.benchmark, self.records = model, benchmark, records
        self.chunks = [questions[start : start + batch_size] for start in range(0, len(questions), batch_size)]
        self.batch_size = batch_size
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
        return self._batches(len(self.chunks))

    def head(self, prompts: int) -> Iterator[tuple[list[Question], Batch]]:
        """The first batches, enough to hold ``prompts`` questions (all of them if there are fewer)."""
        count, held = 0, 0
        while count < len(self.chunks) and held < prompts:
            held += len(self.chunks[count])
            count += 1
        return self._batches(count)

    def _batches(self, count: int) -> Iterator[tuple[list[Question], Batch]]:
        """The first ``count`` batches, each batch not yet encoded encoded one step ahead in a background thread."""

        def ready(index: int) -> bool:
            return self.keep and index < len(self.encoded)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
            pending: dict[int, Future] = {}

            def request(index: int) -> None:
                if index < count and not ready(index) and index not in pending:
                    pending[index] = pool.submit(self._encode, self.chunks[index])

            request(0)
            for index in range(count):
                batch = self.encoded[index] if ready(index) else pending.pop(index).result()
                if self.keep and index == len(self.encoded):
                    self.encoded.append(batch)
                request(index + 1)
                yield self.chunks[index], batch


def greedy_tokens(
    model: MultimodalModel,
    chunk: list[Question],
    batch: Batch,
    max_new_tokens: int,
    batch_context: BatchContext | None = None,
    first_round: bool = True,
) -> list[list[int]]:
    """The full greedy answer tokens of each row of ``batch``, each generation inside ``batch_context`` if given.

    With ``first_round``, every row gets the prefill and :data:`FIRST_TOKENS` - 1 more step; the rows that
    have ended (or reached ``max_new_tokens``) are answered, and the others are generated from their prompt
    again, as a batch of their own (the context entered again for them alone), so that they do not hold the
    ended rows in the batch for the remaining steps. Without, the batch is generated whole, at once. Either
    way a row's tokens are what greedy generation of the whole batch writes (padded after its end token).

    Example::

        chunk, batch = next(iter(batches))
        model.decode(greedy_tokens(model, chunk, batch, max_new_tokens=4))     # ['A', 'B', 'B B', ...]
    """
    enter = batch_context or (lambda _chunk, _batch: contextlib.nullcontext())
    # A model without an end token never ends early: one generation, no second round.
    first = min(FIRST_TOKENS, max_new_tokens) if first_round and model.end_tokens() else max_new_tokens
    with enter(chunk, batch):
        tokens = model.generate_tokens(batch, first)
    answers = tokens.tolist()
    open_rows = [] if first == max_new_tokens else (~model.ended(tokens)).nonzero().flatten().tolist()
    if open_rows:
        rest, subset = [chunk[row] for row in open_rows], batch.select(open_rows)
        with enter(rest, subset):
            generated = model.generate_tokens(subset, max_new_tokens).tolist()
        for row, row_tokens in zip(open_rows, generated):
            answers[row] = row_tokens
    return answers


def ended_early(model: MultimodalModel, tokens: list[list[int]]) -> int:
    """How many rows of answer tokens end within :data:`FIRST_TOKENS` tokens (answered by a first round alone)."""
    ends = set(model.end_tokens())
    return sum(bool(ends.intersection(row[:FIRST_TOKENS])) for row in tokens)


def answer(
    model: MultimodalModel,
    batches: QuestionBatches,
    max_new_tokens: int,
    batch_context: BatchContext | None = None,
    desc: str = "answer",
) -> pd.DataFrame:
    """Greedy answers of every batch (:func:`greedy_tokens`), each generated inside ``batch_context(chunk, batch)`` if
    given, as answers-table rows.

    A batch gets the first round while at most :data:`MAX_RUNNING_ON` of the rows answered so far in the pass
    ran on past it (the first batch always does): where many answers run on, the batches are generated whole.
    A batch that runs out of GPU memory is answered in halves (:func:`amps.core.devices.run_in_passes`), and so
    are the batches after it; a row's answer does not depend on the rows beside it, so the answers are the same.
    """
    rows, early, asked = [], 0, 0
    rows_per_pass = batches.batch_size
    with progress(total=batches.size, desc=desc, unit="q") as bar:
        for chunk, batch in batches:
            first_round = asked - early <= MAX_RUNNING_ON * asked

            def answer_rows(start: int, stop: int) -> list[list[int]]:
                part = batch if (start, stop) == (0, len(chunk)) else batch.select(range(start, stop))
                return greedy_tokens(model, chunk[start:stop], part, max_new_tokens, batch_context, first_round)

            passes = run_in_passes(answer_rows, len(chunk), rows_per_pass, desc)
            rows_per_pass = min(rows_per_pass, max(len(part) for part in passes))
            tokens = [row for part in passes for row in part]
            early, asked = early + ended_early(model, tokens), asked + len(chunk)
            rows += [answer_row(batches.records, question, text) for question, text in zip(chunk, model.decode(tokens))]
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
