"""Shared fixtures: a tiny random-weight toy LLaVA and a tiny prepared benchmark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from amps.data import world
from amps.data.benchmark import Splits, WorldSpec
from amps.data.steps import PrepareBenchmark, prepare_benchmark
from amps.models import toy
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.models.toy_plan import ToyArchitecture

from slurm_run import slurm_run  # noqa: F401 (a fixture: the completed test-config run that DAG tests share)

REPO = Path(__file__).resolve().parent.parent
MC2_DIR = REPO.parent / "shared" / "data" / "mc2"
TASKS = ["color", "positional_reasoning"]

os.environ.setdefault("AMPS_PROGRESS", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_arch() -> ToyArchitecture:
    return ToyArchitecture(
        text_layers=2, text_hidden=32, text_heads=2, vision_layers=1, vision_hidden=32, image_size=32, patch_size=8
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_arch) -> Path:
    """A random-weight toy LLaVA saved with save_pretrained (no training)."""
    folder = tmp_path_factory.mktemp("models") / "tiny-llava"
    model = toy.build_toy(tiny_arch, list(world.TASKS), seed=0)
    model.model.save_pretrained(folder)
    model.processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> MultimodalModel:
    """The tiny model loaded back through the public loading path."""
    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_benchmark_dir(tmp_path_factory) -> Path:
    """A prepared conflict-world benchmark with 10 records per task."""
    folder = tmp_path_factory.mktemp("bench") / "benchmark"
    world = WorldSpec(tuple(TASKS), records_per_task=10, image_size=32, image_strength=(0.3, 1.0))
    prepare_benchmark(PrepareBenchmark("world", world, None, Splits(0.4, 0.2, 0.4), seed=3), str(folder))
    return folder


def forward_hooks(model: MultimodalModel) -> list[set[int]]:
    """The forward-hook ids on each decoder layer.

    transformers itself keeps hooks on layers once hidden states have been requested, so tests
    compare these sets before and after a block rather than expect none.
    """
    return [set(layer._forward_hooks) for layer in model.decoder_layers]
