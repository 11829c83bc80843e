"""The baseline stage's step: ``evaluate_baseline`` asks every test record under each baseline condition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

from amps.core.settings import ModelSpec, Step


@dataclass(frozen=True)
class EvaluateBaseline(Step):
    """The model and how it answers: batch size, generated tokens, CPU threads."""

    model_name: str
    model: ModelSpec
    batch_size: int
    max_new_tokens: int
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        *ModelSpec.READS,
        "models.{model}.batch_size",
        "evaluation.max_new_tokens",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> EvaluateBaseline:
        return cls(
            model,
            ModelSpec.from_config(config, model),
            config["models"][model]["batch_size"],
            config["evaluation"]["max_new_tokens"],
            config["threads"],
        )


def evaluate_baseline(settings: EvaluateBaseline, benchmark_dir: str, model: str, output: str) -> None:
    """Ask the test split under every baseline condition (:data:`amps.vocabulary.BASELINE_CONDITIONS`), both
    option orders, and write the answers table."""
    import torch

    from amps.core.io import write_table
    from amps.data.benchmark import Benchmark
    from amps.models.answer_check import check_option_tokens
    from amps.models.asking import QuestionBatches, answer, baseline_questions
    from amps.models.loading import load_model

    torch.set_num_threads(settings.threads)
    loaded = load_model(model, **settings.model.load_options)
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.split("test")
    batches = QuestionBatches(loaded, benchmark, records, baseline_questions(records), settings.batch_size, keep=False)
    check_option_tokens(loaded, batches, settings.max_new_tokens, f"baseline {settings.model_name}")
    answers = answer(loaded, batches, settings.max_new_tokens, desc=f"baseline {settings.model_name}")
    answers.insert(0, "model", settings.model_name)
    write_table(output, answers)
