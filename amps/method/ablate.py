"""Ablations of AMPS on one model and direction, each a real run on the test split.

All families in one job (they share the model and the encoded prompts); every variant changes one
thing against the validation-chosen setting:

* ``beta``: β in units of 1/sd of the steering-training MCR, both signs and 0 (Learn-to-Steer's target);
* ``anchor``: r_anchor at each quantile of the grid (at the chosen |β|, or one unit with the
  data's sign where the choice was β = 0, since r_anchor is idle without β);
* ``layer``: the input and steering layer, over the model's ``steering_layers`` (the strength is
  the same multiple of each layer's own prompt vectors);
* ``samples``: the MCR re-estimated with other (smaller, cheaper) Monte Carlo sample counts N, each
  under several Monte Carlo seeds: their spread is the Monte Carlo spread of the results, an upper
  bound for the configured N;
* ``estimator``: γ from the functional entropy or from the Fisher term;
* ``vector``: each prompt's own vector, or the mean vector at the typical prompt length.

Each variant trains an AMPS module (first seed) on its target and asks the test conflicts at the
main strength; the MCR families (``beta``, ``anchor``, ``samples``, ``estimator``) also run
AMPS-online with the same change to its own chosen setting. Scores are computed by the summary
(:mod:`amps.report.amps_tables`) against the same unsteered answers as the main table.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from amps.core.io import read_json, read_table, write_table
from amps.data.benchmark import Benchmark
from amps.mcr.records import estimate_records
from amps.mcr.table import mcr_of, mcr_values
from amps.method import scaling
from amps.method.fit import fit_module
from amps.method.methods import ModuleSteering, VectorSteering
from amps.method.steering_module import SteeringModule
from amps.method.vectors import prompt_set, record_vectors
from amps.models.answer_check import check_option_tokens
from amps.models.asking import QuestionBatches, answer, evaluation_questions
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.steering.activations import Activations
from amps.vocabulary import ABLATION_FAMILIES, DIRECTIONS, ESTIMATORS, MCR_FAMILIES, VECTORS

if TYPE_CHECKING:
    from amps.method.steps import AblateAmps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One ablation setting: the value shown in the table and everything the run needs."""

    family: str
    value: str
    layer: int
    vector: str
    beta_units: float
    anchor_quantile: float
    online_beta_units: float
    online_anchor_quantile: float
    samples: int
    mc_seed_offset: int
    estimator: str
    chosen: bool
    online_chosen: bool


def chosen_units(choice: dict) -> tuple[float, float]:
    """(β units, anchor quantile) of a validation choice's scaling; with β = 0 the anchor is idle and the median stands in."""
    scaled = choice["scaling"]
    if scaled["beta"] == 0.0:
        return 0.0, 0.5
    return scaled["beta_units"], scaled["anchor_quantile"]


def anchor_units(units: float, sign: int, beta_units: list[float]) -> float:
    """β units for the anchor family: the chosen ones, or the smallest grid unit with the data's sign (+ if none)."""
    if units != 0.0:
        return units
    return (sign or 1) * min(beta_units)


def variants(family: str, settings: AblateAmps, selection: dict) -> list[Variant]:
    """The variants of ``family`` for the ablation direction (see the module docstring)."""
    direction = settings.direction
    module_choice, online_choice = selection[direction]["amps"], selection[direction]["amps_online"]
    units, quantile = chosen_units(module_choice)
    online_units, online_quantile = chosen_units(online_choice)
    default = Variant(
        family,
        "",
        settings.steering_layers[0],
        settings.vector,
        units,
        quantile,
        online_units,
        online_quantile,
        settings.mcr.samples,
        0,
        settings.estimator,
        True,
        True,
    )
    if family == "beta":
        return [
            replace(
                default,
                value=f"{value:g}",
                beta_units=value,
                online_beta_units=value,
                chosen=value == units,
                online_chosen=value == online_units,
            )
            for value in sorted(set(settings.ablation_beta_units) | {units, online_units})
        ]
    if family == "anchor":
        module_units = anchor_units(units, module_choice["sign"]["sign"], settings.beta_units)
        online_units_here = anchor_units(online_units, online_choice["sign"]["sign"], settings.beta_units)
        return [
            replace(
                default,
                value=f"{value:g}",
                anchor_quantile=value,
                online_anchor_quantile=value,
                beta_units=module_units,
                online_beta_units=online_units_here,
                chosen=value == quantile and units != 0.0,
                online_chosen=value == online_quantile and online_units != 0.0,
            )
            for value in sorted(settings.anchor_quantiles)
        ]
    if family == "layer":
        return [
            replace(default, value=str(layer), layer=layer, chosen=layer == default.layer, online_chosen=layer == default.layer)
            for layer in sorted(settings.steering_layers)
        ]
    if family == "samples":
        # The other sample counts at every Monte Carlo seed (their spread is the Monte Carlo spread, an upper
        # bound for the configured count: the estimator's variance falls as 1/N), and the main MCR table.
        runs = sorted(
            {(samples, offset) for samples in settings.ablation_samples for offset in range(settings.mc_seeds)}
            | {(default.samples, 0)}
        )
        return [
            replace(
                default,
                value=f"N={samples}, MC seed +{offset}",
                samples=samples,
                mc_seed_offset=offset,
                chosen=(samples, offset) == (default.samples, 0),
                online_chosen=(samples, offset) == (default.samples, 0),
            )
            for samples, offset in runs
        ]
    if family == "estimator":
        return [
            replace(
                default, value=name, estimator=name, chosen=name == default.estimator, online_chosen=name == default.estimator
            )
            for name in ESTIMATORS
        ]
    if family == "vector":
        return [
            replace(default, value=name, vector=name, chosen=name == default.vector, online_chosen=name == default.vector)
            for name in VECTORS
        ]
    raise ValueError(f"unknown ablation family {family!r}; expected one of {ABLATION_FAMILIES}")


def estimate_mcr(
    model: MultimodalModel, benchmark: Benchmark, settings: AblateAmps, variant: Variant, max_batch: int
) -> pd.DataFrame:
    """The MCR table of every record with the variant's sample count, on draws of its own.

    Each (N, Monte Carlo seed) has its own noise stream, independent of the main run's and of every
    other variant's, so their spread is the Monte Carlo spread. The Fisher term (a backward pass per
    sample) is computed only when γ reads it, the input ablation (which no variant changes) not at all.
    """
    estimator = replace(
        settings.mcr,
        samples=variant.samples,
        fisher=variant.estimator == "fisher",
        stream=f"ablation N={variant.samples} seed {variant.mc_seed_offset}",
    )
    return estimate_records(
        model,
        benchmark,
        range(len(benchmark.records)),
        estimator,
        max_batch,
        desc=f"ablation MCR N={variant.samples} seed +{variant.mc_seed_offset}",
        ablation=False,
    )


@dataclass
class AblationRun:
    """What every family's variants share: the model, the splits, the stored vectors, the choices."""

    settings: AblateAmps
    model: MultimodalModel
    benchmark: Benchmark
    stored: Activations
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    chosen: dict
    default_mcr: pd.DataFrame
    encoded: QuestionBatches
    #: Samples per pass of the Monte Carlo re-estimates (the memory budget).
    max_batch: int


def family_answers(run: AblationRun, family: str) -> pd.DataFrame:
    """The test answers of every variant of ``family``: AMPS, and AMPS-online for the MCR families."""
    settings = run.settings
    direction = settings.direction
    sign = DIRECTIONS[direction][0]
    max_new_tokens = settings.max_new_tokens
    chosen = run.chosen[direction]
    test_ids = run.test["record_id"].tolist()
    frames = []
    for variant in variants(family, settings, run.chosen):
        if (variant.samples, variant.mc_seed_offset) == (settings.mcr.samples, 0):
            table = run.default_mcr
        else:
            table = estimate_mcr(run.model, run.benchmark, settings, variant, run.max_batch)
        values = mcr_values(table, variant.estimator)
        train = prompt_set(run.stored, variant.layer, variant.vector, run.train, values)
        validation = prompt_set(run.stored, variant.layer, variant.vector, run.validation, values)
        module_scaling = scaling.from_units(train.mcr, variant.beta_units, variant.anchor_quantile, settings.max_factor)
        module, config, history = fit_module(
            train, validation, module_scaling, direction, settings.recipe, variant.layer, "amps", variant.vector, settings.seed
        )
        strength = chosen["amps"]["seeds"][0]["strength"]
        described = {
            "family": family,
            "value": variant.value,
            "chosen": variant.chosen,
            "layer": variant.layer,
            "samples": variant.samples,
            "mc_seed_offset": variant.mc_seed_offset,
            "estimator": variant.estimator,
            "vector": variant.vector,
            "validation_loss": history["validation_loss"],
        }
        scale = record_vectors(run.stored, variant.layer, test_ids).prompt_scale
        steering = ModuleSteering(run.model, SteeringModule(module, config, scale, settings.positions))
        answers = answer(
            run.model, run.encoded, max_new_tokens, steering.context(strength), desc=f"ablation {family} {variant.value}"
        )
        frames.append(answers.assign(method="amps", beta=config.beta, r_anchor=config.r_anchor, strength=strength, **described))
        if family in MCR_FAMILIES:
            online_strength = chosen["amps_online"]["seeds"][0]["strength"]
            online_scaling = scaling.from_units(
                train.mcr, variant.online_beta_units, variant.online_anchor_quantile, settings.max_factor
            )
            vectors = record_vectors(run.stored, variant.layer, test_ids)
            factors = online_scaling.factors(mcr_of(values, test_ids).to_numpy(dtype=np.float64))
            steering = VectorSteering(run.model, variant.layer, sign * vectors.base("mean"), settings.positions, factors)
            answers = answer(
                run.model,
                run.encoded,
                max_new_tokens,
                steering.context(online_strength),
                desc=f"ablation {family} {variant.value} online",
            )
            frames.append(
                answers.assign(
                    method="amps_online",
                    beta=online_scaling.beta,
                    r_anchor=online_scaling.r_anchor,
                    strength=online_strength,
                    **{**described, "chosen": variant.online_chosen, "validation_loss": math.nan},
                )
            )
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "model", settings.model_name)
    table.insert(1, "direction", direction)
    log.info("ablation %s on %s: %d variants", family, settings.model_name, table["value"].nunique())
    return table


def ablation_path(output_dir: str | Path, family: str) -> Path:
    """Where the ablations write the answers of ``family``."""
    return Path(output_dir) / f"{family}.parquet"


def run_families(
    settings: AblateAmps,
    benchmark_dir: str,
    model: str,
    activations: str,
    mcr: str,
    selection: str,
    output_dir: str,
    max_batch: int,
) -> None:
    """Every variant of every ablation family on the ablation model, one answers table per family.

    One job: the families share the loaded model and the encoded test prompts. The tables
    (:func:`ablation_path`) are written once all are computed.
    """
    torch.set_num_threads(settings.threads)
    benchmark = Benchmark(benchmark_dir)
    test = benchmark.split("test")
    loaded = load_model(model, **settings.model.load_options)
    run = AblationRun(
        settings=settings,
        model=loaded,
        benchmark=benchmark,
        stored=Activations.load(activations),
        train=benchmark.split("steer_train"),
        validation=benchmark.split("validation"),
        test=test,
        chosen=read_json(selection),
        default_mcr=read_table(mcr),
        encoded=QuestionBatches(loaded, benchmark, test, evaluation_questions(test, "conflict"), settings.batch_size, keep=True),
        max_batch=max_batch,
    )
    check_option_tokens(loaded, run.encoded, settings.max_new_tokens, f"ablations {settings.model_name}")
    tables = {family: family_answers(run, family) for family in ABLATION_FAMILIES}
    for family, table in tables.items():
        write_table(ablation_path(output_dir, family), table)
