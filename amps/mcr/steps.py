"""The MCR stage's steps: ``mcr_shard`` estimates the MCR of one shard of a model's records, ``gather_mcr``
merges a model's shards into one table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Mapping

from amps.core.settings import ModelSpec, Step
from amps.mcr.settings import EstimatorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class McrShard(Step):
    """The model, the estimator and which shard of how many (``mcr.max_batch`` comes as a job resource); the
    batch size and answer length of the evaluations, with which the option-token check asks the first records."""

    model_name: str
    model: ModelSpec
    estimator: EstimatorSettings
    shard: int
    shards: int
    threads: int
    batch_size: int
    max_new_tokens: int

    READS: ClassVar[tuple[str, ...]] = (
        *ModelSpec.READS,
        *EstimatorSettings.READS,
        "mcr.shards",
        "threads",
        "models.{model}.batch_size",
        "evaluation.max_new_tokens",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str, shard: int) -> McrShard:
        return cls(
            model,
            ModelSpec.from_config(config, model),
            EstimatorSettings.from_config(config),
            int(shard),
            config["mcr"]["shards"],
            config["threads"],
            config["models"][model]["batch_size"],
            config["evaluation"]["max_new_tokens"],
        )


def mcr_shard(settings: McrShard, benchmark_dir: str, model: str, output: str, max_batch: str) -> None:
    """The MCR of one shard of the benchmark's records (every split), at most ``max_batch`` samples per pass."""
    import torch

    from amps.core.io import write_table
    from amps.data.benchmark import Benchmark
    from amps.mcr.records import estimate_records
    from amps.mcr.table import shard_range
    from amps.models.answer_check import CHECK_PROMPTS, check_option_tokens
    from amps.models.asking import QuestionBatches, evaluation_questions
    from amps.models.loading import load_model

    torch.set_num_threads(settings.threads)
    loaded = load_model(model, **settings.model.load_options)
    benchmark = Benchmark(benchmark_dir)
    indices = shard_range(len(benchmark.records), settings.shard, settings.shards)
    desc = f"mcr {settings.model_name} shard {settings.shard + 1}/{settings.shards}"
    # The MCR's prompt is the conflict question: its first records, both orders, answered and scored.
    first = benchmark.records.iloc[indices[: CHECK_PROMPTS // 2]].reset_index(drop=True)
    questions = evaluation_questions(first, "conflict")
    batches = QuestionBatches(loaded, benchmark, first, questions, settings.batch_size, keep=False)
    check_option_tokens(loaded, batches, settings.max_new_tokens, desc)
    table = estimate_records(loaded, benchmark, indices, settings.estimator, int(max_batch), desc)
    write_table(output, table)
    log.info("%s: %d records, %d with non-finite values", desc, len(table), int((table["problem"] != "").sum()))


@dataclass(frozen=True)
class GatherMcr(Step):
    """How many shards a model's MCR table is cut into."""

    shards: int

    READS: ClassVar[tuple[str, ...]] = ("mcr.shards",)

    @classmethod
    def from_config(cls, config: Mapping) -> GatherMcr:
        return cls(config["mcr"]["shards"])


def gather_mcr(settings: GatherMcr, shards: str, benchmark_dir: str, output: str) -> None:
    """Merge the shard tables (comma-separated, in shard order) into the model's MCR table; fail on a missing,
    duplicated or overlapping record."""
    from amps.core.io import read_table, write_table
    from amps.data.benchmark import Benchmark
    from amps.mcr.table import gather_shards

    paths = shards.split(",")
    if len(paths) != settings.shards:
        raise ValueError(f"expected {settings.shards} shard tables, got {len(paths)}: {paths}")
    record_ids = Benchmark(benchmark_dir).records["record_id"].tolist()
    table = gather_shards([read_table(path) for path in paths], paths, record_ids)
    write_table(output, table)
    log.info("gathered %d MCR rows from %d shards into %s", len(table), len(paths), output)
