"""The check that the option tokens are the answers: it passes where the model writes the tokenizer's "A" and "B",
stops an MCR or evaluation job, naming the tokens, where the model writes another token for its letter."""

from __future__ import annotations

import logging

import pytest

from amps.baseline.steps import EvaluateBaseline, evaluate_baseline
from amps.data.benchmark import Benchmark
from amps.mcr.steps import McrShard, mcr_shard
from amps.models import loading
from amps.models.answer_check import OptionCheck, check_option_tokens, opens_with_letter
from amps.models.asking import QuestionBatches, evaluation_questions
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model

from steps import TINY_MODEL, build
from tiny_models import build_tiny_model, forced_tokens


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> MultimodalModel:
    """A tiny LLaVA-1.5: its tokenizer's "A" is "▁A", and it also has a plain "A" that decodes to the same letter."""
    return load_model(build_tiny_model("llava", tmp_path_factory.mktemp("llava") / "model"), device="cpu")


def conflict_batches(model: MultimodalModel, benchmark_dir) -> QuestionBatches:
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.split("test")
    return QuestionBatches(model, benchmark, records, evaluation_questions(records, "conflict"), 6, keep=False)


def writes(model: MultimodalModel, letters: dict[int, float]):
    """A rule for :func:`forced_tokens`: every prompt gets ``letters``' biases (the first named is written); after
    the first of them, the end token."""
    written = next(iter(letters))

    def choose(tokens: list[int]) -> dict[int, float]:
        if len(tokens) > 1:
            return letters
        return {model.end_tokens()[0]: 60.0} if tokens == [written] else {}

    return choose


def own_letters(model: MultimodalModel):
    """The tokenizer's own "A" or "B" by the prompt, then the end token."""
    option_a, option_b = model.option_token_ids()

    def choose(tokens: list[int]) -> dict[int, float]:
        if len(tokens) > 1:
            return {(option_a, option_b)[sum(tokens) % 2]: 60.0}
        return {model.end_tokens()[0]: 60.0} if tokens[0] in (option_a, option_b) else {}

    return choose


@pytest.mark.parametrize("which", ["toy", "tiny LLaVA"])
def test_a_model_writing_the_option_tokens_passes(which, tiny_model, tiny_llava, tiny_benchmark_dir):
    model = tiny_model if which == "toy" else tiny_llava
    batches = conflict_batches(model, tiny_benchmark_dir)
    with forced_tokens(model, own_letters(model)):
        check = check_option_tokens(model, batches, 4, "test job", prompts_asked=12)
    assert check == OptionCheck(prompts=12, letters=12, agreeing=12)


def test_a_model_writing_another_letter_token_is_stopped_with_the_tokens_named(tiny_llava, tiny_benchmark_dir):
    """It writes the plain "A" (decoded "A", parsed as the letter A), while its "▁A"/"▁B" scores lean to "▁B"."""
    plain_a = tiny_llava.tokenizer.convert_tokens_to_ids("A")
    option_b = tiny_llava.option_token_ids()[1]
    batches = conflict_batches(tiny_llava, tiny_benchmark_dir)
    with forced_tokens(tiny_llava, writes(tiny_llava, {plain_a: 60.0, option_b: 30.0})):
        with pytest.raises(ValueError) as raised:
            check_option_tokens(tiny_llava, batches, 4, "test job")
    message = str(raised.value)
    assert "124 ('▁A'), 293 ('▁B')" in message and f"{plain_a} ('A') ×16" in message
    assert "only 0 of 16 letter answers" in message and message.startswith("test job:")


def test_answers_without_a_letter_leave_nothing_to_check(tiny_llava, tiny_benchmark_dir, caplog):
    batches = conflict_batches(tiny_llava, tiny_benchmark_dir)
    with forced_tokens(tiny_llava, lambda tokens: {tiny_llava.end_tokens()[0]: 60.0}):
        with caplog.at_level(logging.WARNING, logger="amps.models.answer_check"):
            check = check_option_tokens(tiny_llava, batches, 4, "test job")
    assert check == OptionCheck(prompts=16, letters=0, agreeing=0)
    assert "none of the first 16 answers opens with a letter" in caplog.text


@pytest.mark.parametrize(
    ("answer", "letter", "opens"),
    [
        ("A", "A", True),
        ("(B) blue", "B", True),
        ("**A.** red", "A", True),
        ("b)", "B", True),
        ("The answer is B", "B", False),
        ("blue", "B", False),
        ("Apple", "A", False),
    ],
)
def test_only_answers_that_open_with_their_letter_are_scored(answer, letter, opens):
    """A model that names its choice in words ("The answer is B") writes a word first: its option scores are not
    compared with that answer, so a wordy model is not stopped for it."""
    assert opens_with_letter(answer, letter) is opens


def test_mcr_and_evaluation_jobs_stop_before_their_work(tiny_model, tiny_model_dir, tiny_benchmark_dir, tmp_path, monkeypatch):
    """The baseline and an MCR shard check their first records and stop, naming the tokens, without writing.

    The toy writes "a" (the letter A, lower-case: its own token, not the option token "A")."""
    plain_a = tiny_model.tokenizer.convert_tokens_to_ids("a")
    option_b = tiny_model.option_token_ids()[1]
    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: tiny_model)
    models = {"models": {"tiny": TINY_MODEL}}
    with forced_tokens(tiny_model, writes(tiny_model, {plain_a: 60.0, option_b: 30.0})):
        with pytest.raises(ValueError, match=r"baseline tiny: the option tokens .* others begin with \d+ \('a'\)"):
            settings = build(EvaluateBaseline, models, model="tiny")
            evaluate_baseline(settings, str(tiny_benchmark_dir), "unused", str(tmp_path / "a"))
        with pytest.raises(ValueError, match=r"mcr tiny shard 1/2: the option tokens"):
            settings = build(McrShard, {**models, "mcr": {"shards": 2}}, model="tiny", shard=0)
            mcr_shard(settings, str(tiny_benchmark_dir), "unused", str(tmp_path / "b"), "64")
    assert not any(tmp_path.iterdir())


def test_a_model_that_answers_with_option_words_is_not_stopped(tiny_model, tiny_benchmark_dir, caplog):
    """It writes "red" (parsed as whichever option it names) while its "A"/"B" scores lean to "B": no letter opens an
    answer, so there is nothing to compare and the job goes on."""
    red, option_b = tiny_model.tokenizer.convert_tokens_to_ids("red"), tiny_model.option_token_ids()[1]
    batches = conflict_batches(tiny_model, tiny_benchmark_dir)
    with forced_tokens(tiny_model, writes(tiny_model, {red: 60.0, option_b: 30.0})):
        with caplog.at_level(logging.WARNING, logger="amps.models.answer_check"):
            check = check_option_tokens(tiny_model, batches, 4, "test job")
    assert check.letters == 0 and "none of the first 16 answers opens with a letter" in caplog.text
