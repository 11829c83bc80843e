"""CUDA out of memory, simulated on the CPU: the answers of a batch that does not fit come in smaller passes,
equal to the answers of the whole batch, with a log line; a batch of one row that does not fit is an error."""

from __future__ import annotations

import logging

import pytest
import torch

from amps.data.benchmark import Benchmark
from amps.models.asking import QuestionBatches, answer, evaluation_questions
from amps.steering.hook import SteeringVector


def fits_at_most(model, rows: int, monkeypatch) -> list[int]:
    """Make ``model`` run out of CUDA memory on generations of more than ``rows`` rows; returns the sizes it ran."""
    generate_tokens = model.generate_tokens
    sizes = []

    def limited(batch, max_new_tokens):
        if batch.rows > rows:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({batch.rows} rows)")
        sizes.append(batch.rows)
        return generate_tokens(batch, max_new_tokens)

    monkeypatch.setattr(model, "generate_tokens", limited)
    return sizes


def test_a_batch_out_of_memory_is_answered_in_halves_with_the_same_answers(tiny_model, tiny_benchmark_dir, monkeypatch, caplog):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test").head(6)
    batches = QuestionBatches(tiny_model, benchmark, records, evaluation_questions(records, "conflict"), 8, keep=True)
    vector = SteeringVector(torch.randn(tiny_model.hidden_size, generator=torch.Generator().manual_seed(0)), layer=1)

    def steered(_chunk, _batch):
        return vector.apply(tiny_model, strength=6.0)

    whole = answer(tiny_model, batches, 4, steered)
    sizes = fits_at_most(tiny_model, 3, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="amps.core.devices"):
        halved = answer(tiny_model, batches, 4, steered, desc="steered")
    assert halved.equals(whole)
    assert max(sizes) == 2 and sum(sizes) >= len(whole)  # 8 -> 4 -> 2 rows per pass, kept for later batches
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "steered: CUDA out of memory in a pass of 8 rows; retrying with 4 rows per pass",
        "steered: CUDA out of memory in a pass of 4 rows; retrying with 2 rows per pass",
    ]


def test_one_row_out_of_memory_is_an_error(tiny_model, tiny_benchmark_dir, monkeypatch):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test").head(2)
    batches = QuestionBatches(tiny_model, benchmark, records, evaluation_questions(records, "conflict"), 4, keep=True)
    fits_at_most(tiny_model, 0, monkeypatch)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        answer(tiny_model, batches, 4)
