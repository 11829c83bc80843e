"""Training the steering modules of one model: Learn-to-Steer, and AMPS for every candidate scaling.

Modules are trained before any strength is chosen, so that the validation scans (:mod:`amps.method.select`)
read each method's own outputs. The sign of β is not known yet (it comes from the validation scans),
so an AMPS module is trained for every candidate of both signs (|β| units × anchor quantiles, or the
fixed β of the config); they are small and train in seconds on the CPU. Every module uses the same
recipe (:class:`amps.method.recipe.ModuleRecipe`): Learn-to-Steer and AMPS differ only in the target.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from amps.core.io import atomic_directory, write_table
from amps.data.benchmark import Benchmark
from amps.mcr.table import load_mcr
from amps.method import scaling
from amps.method.recipe import ModuleRecipe
from amps.method.steerer import Steerer, SteererConfig, save_steerer, train_steerer
from amps.method.steering_module import module_name
from amps.method.vectors import PromptSet, prompt_set
from amps.steering.activations import Activations
from amps.vocabulary import DIRECTIONS

if TYPE_CHECKING:
    from amps.method.steps import ScalingGrid, TrainSteerers

log = logging.getLogger(__name__)


def scaling_candidates(grid: ScalingGrid, train_mcr: np.ndarray, signs: list[int]) -> tuple[list[scaling.Scaling], list[str]]:
    """AMPS's candidate scalings with β ≠ 0 for ``signs`` (or the config's fixed β), and the infeasible ones left out."""
    if grid.fixed:
        fixed = scaling.from_values(train_mcr, grid.beta, grid.r_anchor, grid.max_factor)
        return ([fixed] if fixed.beta != 0.0 else []), []
    return scaling.candidates(train_mcr, signs, list(grid.beta_units), list(grid.anchor_quantiles), grid.max_factor)


def fit_module(
    train: PromptSet,
    validation: PromptSet,
    chosen: scaling.Scaling,
    direction: str,
    recipe: ModuleRecipe,
    layer: int,
    kind: str,
    vector: str,
    seed: int,
) -> tuple[Steerer, SteererConfig, dict]:
    """Train one module on ``sign × c_i·v_i`` for every prompt (factors 1 for Learn-to-Steer)."""
    sign = DIRECTIONS[direction][0]
    config = SteererConfig(
        hidden_size=train.states.shape[1],
        input_layer=layer,
        steer_layer=layer,
        kind=kind,
        direction=direction,
        vector=vector,
        beta=chosen.beta,
        r_anchor=chosen.r_anchor,
        seed=seed,
        recipe=recipe,
    )
    module, history = train_steerer(
        train.states,
        sign * chosen.targets(train.vectors, train.mcr),
        validation.states,
        sign * chosen.targets(validation.vectors, validation.mcr),
        recipe,
        seed,
    )
    return module, config, history


def train_modules(settings: TrainSteerers, benchmark_dir: str, activations: str, mcr: str, output_dir: str, summary: str) -> None:
    """Every module of one model (each direction; Learn-to-Steer and every AMPS candidate; each seed), written into
    ``output_dir`` (safetensors + JSON), and a CSV of their training summaries."""
    grid = settings.grid
    torch.set_num_threads(settings.threads)
    layer = settings.layer
    stored = Activations.load(activations)
    benchmark = Benchmark(benchmark_dir)
    mcr_values = load_mcr(mcr, grid.estimator)
    train = prompt_set(stored, layer, grid.vector, benchmark.split("steer_train"), mcr_values)
    validation = prompt_set(stored, layer, grid.vector, benchmark.split("validation"), mcr_values)
    identity = scaling.from_units(train.mcr, 0.0, 0.5, grid.max_factor)
    candidates, skipped = scaling_candidates(grid, train.mcr, [1, -1])
    for reason in skipped:
        log.warning("candidate left out: %s", reason)
    rows = []
    with atomic_directory(output_dir) as folder:
        for direction in DIRECTIONS:
            for chosen in [identity, *candidates]:
                kind = "l2s" if chosen.beta == 0.0 else "amps"
                for seed_index in range(settings.seeds):
                    module, config, history = fit_module(
                        train,
                        validation,
                        chosen,
                        direction,
                        settings.recipe,
                        layer,
                        kind,
                        grid.vector,
                        settings.seed + seed_index,
                    )
                    save_steerer(folder / f"{module_name(kind, direction, seed_index, chosen.name)}.safetensors", module, config)
                    rows.append(
                        {
                            "model": settings.model_name,
                            "kind": kind,
                            "direction": direction,
                            "scaling": chosen.name,
                            "seed_index": seed_index,
                            "beta": chosen.beta,
                            "r_anchor": chosen.r_anchor,
                            "train_prompts": len(train.mcr),
                            **history,
                        }
                    )
    table = pd.DataFrame(rows)
    write_table(summary, table)
    log.info("steering modules of %s:\n%s", settings.model_name, table.to_string(index=False))
