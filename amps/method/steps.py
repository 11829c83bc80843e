"""The method stage's steps: ``train_steerers`` (Learn-to-Steer and every candidate AMPS module), ``select_amps``
(each method's validation choice), ``steered_eval`` (every method's measured curve on the test split) and
``ablate_amps`` (the ablations on one model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import ClassVar, Mapping

from amps.core.resources import ablation_model
from amps.core.settings import ModelSpec, Step
from amps.mcr.settings import EstimatorSettings
from amps.method.curves import CurveSettings
from amps.method.recipe import ModuleRecipe

log = logging.getLogger(__name__)

#: The config keys of the steering module's recipe.
RECIPE_KEYS = tuple(f"amps.module.{field.name}" for field in fields(ModuleRecipe))
CURVE_KEYS = tuple(f"amps.curve.{field.name}" for field in fields(CurveSettings))


def recipe_of(config: Mapping, width: int | None = None) -> ModuleRecipe:
    """The ``amps.module`` recipe, with ``width`` instead of its own where given (a model's ``module_width``)."""
    section = {field.name: config["amps"]["module"][field.name] for field in fields(ModuleRecipe)}
    return ModuleRecipe.from_config(section if width is None else {**section, "width": width})


def curve_of(config: Mapping) -> CurveSettings:
    """The ``amps.curve`` settings of the test curves."""
    return CurveSettings.from_config({field.name: config["amps"]["curve"][field.name] for field in fields(CurveSettings)})


@dataclass(frozen=True)
class ScalingGrid:
    """AMPS's scaling: the MCR estimator and vector it reads, β and r_anchor fixed or their candidate grid, the bound."""

    estimator: str
    vector: str
    beta: float | None
    r_anchor: float | None
    beta_units: tuple[float, ...]
    anchor_quantiles: tuple[float, ...]
    max_factor: float

    READS: ClassVar[tuple[str, ...]] = tuple(
        f"amps.{key}" for key in ("estimator", "vector", "beta", "r_anchor", "beta_units", "anchor_quantiles", "max_factor")
    )

    @property
    def fixed(self) -> bool:
        """Whether β and r_anchor come from the config (else they are chosen on validation)."""
        return self.beta is not None

    @classmethod
    def from_config(cls, config: Mapping) -> ScalingGrid:
        amps = config["amps"]
        return cls(
            amps["estimator"],
            amps["vector"],
            amps["beta"],
            amps["r_anchor"],
            tuple(amps["beta_units"]),
            tuple(amps["anchor_quantiles"]),
            amps["max_factor"],
        )


@dataclass(frozen=True)
class TrainSteerers(Step):
    """The steering layer, the scaling grid, the seeds and the module recipe (the model's width, if it sets one).
    No model entry: the step never loads the model, so it claims no GPU."""

    model_name: str
    layer: int
    grid: ScalingGrid
    seeds: int
    recipe: ModuleRecipe
    seed: int
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        "models.{model}.steering_layers",
        "models.{model}.module_width",
        *ScalingGrid.READS,
        "amps.seeds",
        *RECIPE_KEYS,
        "seed",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> TrainSteerers:
        spec = config["models"][model]
        return cls(
            model,
            spec["steering_layers"][0],
            ScalingGrid.from_config(config),
            config["amps"]["seeds"],
            recipe_of(config, spec.get("module_width")),
            config["seed"],
            config["threads"],
        )


def train_steerers(
    settings: TrainSteerers, benchmark_dir: str, activations: str, mcr: str, output_dir: str, summary: str
) -> None:
    """Every module of one model (each direction; Learn-to-Steer and every AMPS candidate; each seed): the
    modules (safetensors + JSON) in ``output_dir`` and a CSV of their training summaries."""
    from amps.method.fit import train_modules

    train_modules(settings, benchmark_dir, activations, mcr, output_dir, summary)


@dataclass(frozen=True)
class SelectAmps(Step):
    """The model, its steering layer, the scaling grid and the validation scans' strengths, bound and sign test."""

    model_name: str
    model: ModelSpec
    batch_size: int
    layer: int
    grid: ScalingGrid
    seeds: int
    sign_confidence: float
    sign_bootstrap: int
    strengths: tuple[float, ...]
    max_collapse: float
    positions: str
    max_new_tokens: int
    seed: int
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        *ModelSpec.READS,
        "models.{model}.batch_size",
        "models.{model}.steering_layers",
        *ScalingGrid.READS,
        "amps.seeds",
        "amps.sign_confidence",
        "amps.sign_bootstrap",
        "amps.strengths",
        "amps.max_collapse",
        "steering.positions",
        "evaluation.max_new_tokens",
        "seed",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> SelectAmps:
        spec, amps = config["models"][model], config["amps"]
        return cls(
            model,
            ModelSpec.from_config(config, model),
            spec["batch_size"],
            spec["steering_layers"][0],
            ScalingGrid.from_config(config),
            amps["seeds"],
            amps["sign_confidence"],
            amps["sign_bootstrap"],
            tuple(sorted(amps["strengths"])),
            amps["max_collapse"],
            config["steering"]["positions"],
            config["evaluation"]["max_new_tokens"],
            config["seed"],
            config["threads"],
        )


def select_amps(
    settings: SelectAmps, benchmark_dir: str, model: str, activations: str, mcr: str, steerers: str, output: str, scan: str
) -> None:
    """Every method's validation choice in both directions (JSON), and every scanned point (CSV)."""
    from amps.method.select import select_all

    select_all(settings, benchmark_dir, model, activations, mcr, steerers, output, scan)


@dataclass(frozen=True)
class SteeredEval(Step):
    """The model, its steering layer, the vector and estimator AMPS reads, the strength grid and the curves' density."""

    model_name: str
    model: ModelSpec
    batch_size: int
    layer: int
    vector: str
    estimator: str
    strengths: tuple[float, ...]
    curve: CurveSettings
    positions: str
    max_new_tokens: int
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        *ModelSpec.READS,
        "models.{model}.batch_size",
        "models.{model}.steering_layers",
        "amps.vector",
        "amps.estimator",
        "amps.strengths",
        *CURVE_KEYS,
        "steering.positions",
        "evaluation.max_new_tokens",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> SteeredEval:
        spec, amps = config["models"][model], config["amps"]
        return cls(
            model,
            ModelSpec.from_config(config, model),
            spec["batch_size"],
            spec["steering_layers"][0],
            amps["vector"],
            amps["estimator"],
            tuple(sorted(amps["strengths"])),
            curve_of(config),
            config["steering"]["positions"],
            config["evaluation"]["max_new_tokens"],
            config["threads"],
        )


def steered_eval(
    settings: SteeredEval,
    benchmark_dir: str,
    model: str,
    activations: str,
    mcr: str,
    selection: str,
    steerers: str,
    answers_dir: str,
) -> None:
    """Every method in both directions on the test split, one answers table each (``<method>-<direction>.parquet``)."""
    from amps.method.steered_eval import evaluate_methods

    evaluate_methods(settings, benchmark_dir, model, activations, mcr, selection, steerers, answers_dir)


@dataclass(frozen=True)
class AblateAmps(Step):
    """The ablation model and direction, what the variants start from (the scaling grid's units, the vector, the
    estimator, the module recipe, the model's steering layers, the MCR estimator) and the families' own grids."""

    model_name: str
    model: ModelSpec
    batch_size: int
    steering_layers: tuple[int, ...]
    direction: str
    vector: str
    estimator: str
    beta_units: tuple[float, ...]
    anchor_quantiles: tuple[float, ...]
    max_factor: float
    recipe: ModuleRecipe
    ablation_beta_units: tuple[float, ...]
    ablation_samples: tuple[int, ...]
    mc_seeds: int
    mcr: EstimatorSettings
    positions: str
    max_new_tokens: int
    seed: int
    threads: int

    READS: ClassVar[tuple[str, ...]] = (
        "amps.ablation.model",
        "models",
        *ModelSpec.READS,
        "models.{model}.batch_size",
        "models.{model}.steering_layers",
        "amps.ablation.direction",
        "amps.vector",
        "amps.estimator",
        "amps.beta_units",
        "amps.anchor_quantiles",
        "amps.max_factor",
        *RECIPE_KEYS,
        "amps.ablation.beta_units",
        "amps.ablation.samples",
        "amps.ablation.mc_seeds",
        *EstimatorSettings.READS,
        "steering.positions",
        "evaluation.max_new_tokens",
        "threads",
    )

    @classmethod
    def from_config(cls, config: Mapping) -> AblateAmps:
        amps, ablation = config["amps"], config["amps"]["ablation"]
        model = ablation_model(config)
        spec = config["models"][model]
        return cls(
            model,
            ModelSpec.from_config(config, model),
            spec["batch_size"],
            tuple(spec["steering_layers"]),
            ablation["direction"],
            amps["vector"],
            amps["estimator"],
            tuple(amps["beta_units"]),
            tuple(amps["anchor_quantiles"]),
            amps["max_factor"],
            recipe_of(config),
            tuple(ablation["beta_units"]),
            tuple(ablation["samples"]),
            ablation["mc_seeds"],
            EstimatorSettings.from_config(config),
            config["steering"]["positions"],
            config["evaluation"]["max_new_tokens"],
            config["seed"],
            config["threads"],
        )


def ablate_amps(
    settings: AblateAmps,
    benchmark_dir: str,
    model: str,
    activations: str,
    mcr: str,
    selection: str,
    output_dir: str,
    max_batch: str,
) -> None:
    """Every variant of every ablation family on the ablation model, one answers table per family
    (``<family>.parquet``); the Monte Carlo re-estimates take at most ``max_batch`` samples per pass."""
    from amps.method.ablate import run_families

    run_families(settings, benchmark_dir, model, activations, mcr, selection, output_dir, int(max_batch))
