"""The report stage's figure steps, each written as PDF and PNG and titled with the run it came from. Each reads
only its tables and its own keys: editing one redraws that figure alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

from amps.core.resources import ablation_model
from amps.core.settings import Step, benchmark_label, model_names


@dataclass(frozen=True)
class PlotPreference(Step):
    """The run's name and benchmark (the title)."""

    run_name: str
    benchmark_label: str

    READS: ClassVar[tuple[str, ...]] = ("run_name", "benchmark.source")

    @classmethod
    def from_config(cls, config: Mapping) -> PlotPreference:
        return cls(config["run_name"], benchmark_label(config))


def plot_preference(settings: PlotPreference, scores: str, output: str) -> None:
    """MC²-style preference bars: stacked S_vision / S_other / S_text per model, vision ratio beside."""
    from amps.report.figures_scores import draw_preference

    draw_preference(settings, scores, output)


@dataclass(frozen=True)
class PlotSweep(Step):
    """The run's name and benchmark (the title)."""

    run_name: str
    benchmark_label: str

    READS: ClassVar[tuple[str, ...]] = ("run_name", "benchmark.source")

    @classmethod
    def from_config(cls, config: Mapping) -> PlotSweep:
        return cls(config["run_name"], benchmark_label(config))


def plot_sweep(settings: PlotSweep, scores: str, output: str) -> None:
    """Vision ratio and S_other against the steering strength, one panel per model."""
    from amps.report.figures_scores import draw_sweep

    draw_sweep(settings, scores, output)


@dataclass(frozen=True)
class PlotMcrSensitivity(Step):
    """The run's name and benchmark (the title) and its models, in the order of the tables."""

    run_name: str
    benchmark_label: str
    models: tuple[str, ...]

    READS: ClassVar[tuple[str, ...]] = ("run_name", "benchmark.source", "models")

    @classmethod
    def from_config(cls, config: Mapping) -> PlotMcrSensitivity:
        return cls(config["run_name"], benchmark_label(config), model_names(config))


def plot_mcr_sensitivity(
    settings: PlotMcrSensitivity, mcr: str, sensitivity: str, correlations: str, scores_figure: str, scatter_figure: str
) -> None:
    """Sensitivity scores across models and tasks, and each record's MCR against its flip strength."""
    from amps.report.figures_mcr import draw_mcr_sensitivity

    draw_mcr_sensitivity(settings, mcr, sensitivity, correlations, scores_figure, scatter_figure)


@dataclass(frozen=True)
class PlotMcrValidation(Step):
    """The run's name and benchmark (the title) and its models, in the order of the MCR tables."""

    run_name: str
    benchmark_label: str
    models: tuple[str, ...]

    READS: ClassVar[tuple[str, ...]] = ("run_name", "benchmark.source", "models")

    @classmethod
    def from_config(cls, config: Mapping) -> PlotMcrValidation:
        return cls(config["run_name"], benchmark_label(config), model_names(config))


def plot_mcr_validation(
    settings: PlotMcrValidation, mcr: str, benchmark_dir: str, correlations: str, bins: str, output: str
) -> None:
    """The MCR against the ground-truth balance, and the uninstructed vision share by MCR bin, per model."""
    from amps.report.figures_mcr import draw_mcr_validation

    draw_mcr_validation(settings, mcr, benchmark_dir, correlations, bins, output)


@dataclass(frozen=True)
class PlotTradeoff(Step):
    """The run's name and benchmark (the title)."""

    run_name: str
    benchmark_label: str

    READS: ClassVar[tuple[str, ...]] = ("run_name", "benchmark.source")

    @classmethod
    def from_config(cls, config: Mapping) -> PlotTradeoff:
        return cls(config["run_name"], benchmark_label(config))


def plot_tradeoff(settings: PlotTradeoff, scores: str, output: str) -> None:
    """Shift against collapse: every method's measured strength curve and its validation-chosen point."""
    from amps.report.figures_scores import draw_tradeoff

    draw_tradeoff(settings, scores, output)


@dataclass(frozen=True)
class PlotExamples(Step):
    """The run's name and benchmark, the ablation model and direction (whose answers are shown) and how many records."""

    run_name: str
    benchmark_label: str
    model_name: str
    direction: str
    examples: int

    READS: ClassVar[tuple[str, ...]] = (
        "run_name",
        "benchmark.source",
        "amps.ablation.model",
        "models",
        "amps.ablation.direction",
        "amps.examples",
    )

    @classmethod
    def from_config(cls, config: Mapping) -> PlotExamples:
        return cls(
            config["run_name"],
            benchmark_label(config),
            ablation_model(config),
            config["amps"]["ablation"]["direction"],
            config["amps"]["examples"],
        )


def plot_examples(settings: PlotExamples, mean_answers: str, amps_answers: str, benchmark_dir: str, output: str) -> None:
    """A few test records with their answers under strong mean steering and under AMPS."""
    from amps.report.figures_scores import draw_examples

    draw_examples(settings, mean_answers, amps_answers, benchmark_dir, output)
