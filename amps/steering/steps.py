"""The steering stage's steps: ``collect_activations`` (contrastive hidden states of every record) and
``steering_sweep`` (mean steering at every strength of the grid, both directions, on the test split)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Mapping

from amps.core.settings import ModelSpec, Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectActivations(Step):
    """The model, its steering layers (all are read; the first steers) and how prompts are batched."""

    model_name: str
    model: ModelSpec
    batch_size: int
    steering_layers: tuple[int, ...]
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        *ModelSpec.READS,
        "models.{model}.batch_size",
        "models.{model}.steering_layers",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> CollectActivations:
        spec = config["models"][model]
        return cls(
            model, ModelSpec.from_config(config, model), spec["batch_size"], tuple(spec["steering_layers"]), config["threads"]
        )


def collect_activations(settings: CollectActivations, benchmark_dir: str, model: str, output: str, index: str) -> None:
    """Contrastive activations of every record at the model's steering layers: the safetensors file ``output``
    and its JSON ``index`` (see :mod:`amps.steering.activations`)."""
    import torch

    from amps.core.io import write_json, write_tensors
    from amps.data.benchmark import Benchmark
    from amps.models.loading import load_model
    from amps.steering.activations import collect_states, contrastive_tensors
    from amps.vocabulary import ALPHA_UNIT, MEAN_SPLIT

    torch.set_num_threads(settings.threads)
    layers = sorted(set(settings.steering_layers))
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.records.reset_index(drop=True)
    mean_rows = torch.tensor((records["split"] == MEAN_SPLIT).tolist())
    if not mean_rows.any():
        raise ValueError(f"the benchmark in {benchmark_dir} has no {MEAN_SPLIT} records to build the mean vector from")
    loaded = load_model(model, **settings.model.load_options)
    out_of_range = [layer for layer in layers if layer >= loaded.num_layers]
    if out_of_range:
        raise ValueError(f"steering_layers {out_of_range} are beyond the model's {loaded.num_layers} decoder layers")
    states = collect_states(loaded, benchmark, records, layers, settings.batch_size, desc=f"activations {settings.model_name}")
    tensors, stats = contrastive_tensors(states, layers, mean_rows)
    write_tensors(output, tensors, metadata={"model": settings.model_name})
    write_json(
        index,
        {
            "model": settings.model_name,
            "layers": layers,
            "steering_layer": settings.steering_layers[0],
            "hidden_size": loaded.hidden_size,
            "record_ids": records["record_id"].tolist(),
            "splits": records["split"].tolist(),
            "tasks": records["task"].tolist(),
            "tensors": sorted(tensors),
            "mean_split": MEAN_SPLIT,
            "direction": "diff and mean_diff point toward vision: image-instruction minus text-instruction state",
            "alpha_unit": ALPHA_UNIT,
            "stats": {str(layer): values for layer, values in stats.items()},
        },
    )
    for layer, values in stats.items():
        log.info("layer %d: %s", layer, ", ".join(f"{key} {value:.4g}" for key, value in values.items()))


@dataclass(frozen=True)
class SteeringSweep(Step):
    """The model, the steering layer (the first of its steering layers), the strength grid and positions, and
    how prompts are batched and answered."""

    model_name: str
    model: ModelSpec
    batch_size: int
    layer: int
    alphas: tuple[float, ...]
    positions: str
    max_new_tokens: int
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        *ModelSpec.READS,
        "models.{model}.batch_size",
        "models.{model}.steering_layers",
        "steering.alphas",
        "steering.positions",
        "evaluation.max_new_tokens",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> SteeringSweep:
        spec = config["models"][model]
        return cls(
            model,
            ModelSpec.from_config(config, model),
            spec["batch_size"],
            spec["steering_layers"][0],
            tuple(config["steering"]["alphas"]),
            config["steering"]["positions"],
            config["evaluation"]["max_new_tokens"],
            config["threads"],
        )


def steering_sweep(
    settings: SteeringSweep, benchmark_dir: str, model: str, activations: str, answers: str, records: str, sensitivity_table: str
) -> None:
    """The mean-steering sweep of one model on the test split: its answers, the per-record table and the
    per-sample sensitivity (see :mod:`amps.steering.sweep`)."""
    import torch

    from amps.core.io import write_table
    from amps.data.benchmark import Benchmark
    from amps.metrics import record_table, sensitivity, sweep_overview
    from amps.models.loading import load_model
    from amps.steering.activations import Activations
    from amps.steering.sweep import sorted_alphas, sweep_answers

    torch.set_num_threads(settings.threads)
    alphas = sorted_alphas(settings.alphas)
    stored = Activations.load(activations)
    layer = settings.layer
    mean_diff = stored.get("mean_diff", layer)
    reference_norm = float(stored.get("mean_norm", layer))
    benchmark = Benchmark(benchmark_dir)
    test_records = benchmark.split("test")
    loaded = load_model(model, **settings.model.load_options)
    table = sweep_answers(
        loaded,
        benchmark,
        test_records,
        mean_diff,
        reference_norm,
        layer,
        alphas,
        settings.positions,
        settings.batch_size,
        settings.max_new_tokens,
        desc=f"sweep {settings.model_name}",
    )
    table.insert(0, "model", settings.model_name)
    table["layer"] = layer
    table["positions"] = settings.positions
    table["reference_norm"] = reference_norm
    write_table(answers, table)
    per_record = record_table(table)
    write_table(records, per_record)
    write_table(sensitivity_table, sensitivity(per_record))
    log.info(
        "sweep %s at layer %d (reference norm %.4g):\n%s",
        settings.model_name,
        layer,
        reference_norm,
        sweep_overview(table).to_string(index=False),
    )
