"""The report stage's table steps: the baseline's scores and checks, the sweep's scores, the MCR summary, its
link to the steering sensitivity and its validation against the world's ground truth, AMPS's tables, and a
table as a report page. Each reads only its tables and its own keys: editing one reruns that table alone."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Mapping, Self

from amps.core.resources import ablation_model
from amps.core.settings import Step, benchmark_label, model_names
from amps.method.curves import CurveSettings
from amps.method.steps import CURVE_KEYS, curve_of
from amps.report.baseline import BaselineChecks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SummarizeBaseline(Step):
    """The run's name, the toy models (only they are checked) and the checks' thresholds."""

    run_name: str
    toy_models: tuple[str, ...]
    checks: BaselineChecks

    READS: ClassVar[tuple[str, ...]] = ("run_name", "models", "models.*.source", *BaselineChecks.READS)

    @classmethod
    def from_config(cls, config: Mapping) -> SummarizeBaseline:
        toy = tuple(name for name in model_names(config) if config["models"][name]["source"] == "toy")
        return cls(config["run_name"], toy, BaselineChecks.from_config(config))


def summarize_baseline(settings: SummarizeBaseline, answers: str, benchmark_dir: str, scores: str, checks: str) -> None:
    """Score all models' baseline answers (comma-separated tables) and write the toy models' checks."""
    import pandas as pd

    from amps.core.io import read_table, split_paths, write_table
    from amps.data.benchmark import Benchmark
    from amps.metrics import score
    from amps.report.baseline import choice_follows_evidence, toy_checks

    asked = pd.concat([read_table(path) for path in split_paths(answers)], ignore_index=True)
    table = score(asked, ["model", "condition"])
    table.insert(0, "run", settings.run_name)
    write_table(scores, table)
    # The behaviour checks are the toy models' design targets; pretrained models are only measured.
    follows_evidence = choice_follows_evidence(asked, Benchmark(benchmark_dir).records)
    check_table = toy_checks(table[table["model"].isin(settings.toy_models)], settings.checks, follows_evidence)
    check_table.insert(0, "run", settings.run_name)
    write_table(checks, check_table)
    log.info("toy model checks:\n%s", check_table.to_string(index=False))


@dataclass(frozen=True)
class SummarizeSweep(Step):
    """The run's name."""

    run_name: str

    READS: ClassVar[tuple[str, ...]] = ("run_name",)

    @classmethod
    def from_config(cls, config: Mapping) -> SummarizeSweep:
        return cls(config["run_name"])


def summarize_sweep(settings: SummarizeSweep, answers: str, records: str, scores: str) -> None:
    """The sweep scores of all models (``answers`` and ``records``: comma-separated tables)."""
    import pandas as pd

    from amps.core.io import read_table, split_paths, write_table
    from amps.metrics import sweep_overview
    from amps.report.sweep import sweep_scores
    from amps.vocabulary import ALPHA_UNIT

    answer_table = pd.concat([read_table(path) for path in split_paths(answers)], ignore_index=True)
    record_rows = pd.concat([read_table(path) for path in split_paths(records)], ignore_index=True)
    table = sweep_scores(answer_table, record_rows)
    table.insert(0, "run", settings.run_name)
    table["alpha_unit"] = ALPHA_UNIT
    write_table(scores, table)
    log.info("sweep scores:\n%s", sweep_overview(answer_table).to_string(index=False))


@dataclass(frozen=True)
class SummarizeMcr(Step):
    """The run's name and its models, in the order of the MCR tables."""

    run_name: str
    models: tuple[str, ...]

    READS: ClassVar[tuple[str, ...]] = ("run_name", "models")

    @classmethod
    def from_config(cls, config: Mapping) -> SummarizeMcr:
        return cls(config["run_name"], model_names(config))


def summarize_mcr(settings: SummarizeMcr, tables: str, output: str) -> None:
    """The MCR summary table over all models (``tables``: comma-separated, in the order of the models)."""
    from amps.core.io import read_table, split_paths, write_table
    from amps.report.mcr_summary import summarize

    paths = split_paths(tables, len(settings.models))
    summary = summarize({model: read_table(path) for model, path in zip(settings.models, paths)})
    summary.insert(0, "run", settings.run_name)
    write_table(output, summary)


@dataclass(frozen=True)
class McrSensitivity(Step):
    """The run's name, its models, the bootstrap's resamples and the seed of its draws."""

    run_name: str
    models: tuple[str, ...]
    bootstrap: int
    seed: int

    READS: ClassVar[tuple[str, ...]] = ("run_name", "models", "mcr.bootstrap", "seed")

    @classmethod
    def from_config(cls, config: Mapping) -> Self:
        return cls(config["run_name"], model_names(config), config["mcr"]["bootstrap"], config["seed"])


def mcr_sensitivity(settings: McrSensitivity, mcr: str, sensitivity: str, output: str) -> None:
    """The MCR-sensitivity correlations of every model (comma-separated tables in the order of the models)."""
    import pandas as pd

    from amps.core.io import read_table, split_paths, write_table
    from amps.report.mcr_sensitivity import correlations

    models = settings.models
    mcr_paths, sensitivity_paths = split_paths(mcr, len(models)), split_paths(sensitivity, len(models))
    frames = [
        correlations(read_table(mcr_path), read_table(sensitivity_path), model, settings.bootstrap, settings.seed)
        for model, mcr_path, sensitivity_path in zip(models, mcr_paths, sensitivity_paths)
    ]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "run", settings.run_name)
    write_table(output, table)
    overview = table[(table["task"] == "all") & (table["estimator"] == "entropy")]
    log.info("MCR against sensitivity (all tasks, entropy MCR):\n%s", overview.to_string(index=False))


@dataclass(frozen=True)
class ValidateMcr(McrSensitivity):
    """The same settings as :class:`McrSensitivity`: the run's name, its models, the bootstrap's resamples and the
    seed of its draws."""


def validate_mcr(
    settings: ValidateMcr, mcr: str, benchmark_dir: str, baselines: str, correlations_table: str, bins_table: str
) -> None:
    """The MCR against the world's ground-truth balance (``mcr`` and ``baselines``: comma-separated tables in the
    order of the models): correlations, and the uninstructed vision share by MCR bin."""
    import pandas as pd

    from amps.core.io import read_table, split_paths, write_table
    from amps.data.benchmark import Benchmark
    from amps.report.mcr_validation import VISION_BINS, correlations, vision_by_bin

    tables = dict(zip(settings.models, (read_table(path) for path in split_paths(mcr, len(settings.models)))))
    records = Benchmark(benchmark_dir).records
    answers = pd.concat([read_table(path) for path in split_paths(baselines)], ignore_index=True)
    linked = correlations(tables, records, settings.bootstrap, settings.seed, answers)
    binned = vision_by_bin(tables, answers, VISION_BINS)
    write_table(correlations_table, linked.assign(run=settings.run_name))
    write_table(bins_table, binned.assign(run=settings.run_name))
    log.info("MCR against the ground truth and the models' own choices:\n%s", linked.to_string(index=False))


@dataclass(frozen=True)
class SummarizeAmps(Step):
    """The run and its models, the ablation model, the collapse budgets and the curves' density."""

    run_name: str
    benchmark_label: str
    models: tuple[str, ...]
    ablation_model: str
    collapse_budgets: tuple[float, ...]
    curve: CurveSettings

    READS: ClassVar[tuple[str, ...]] = (
        "run_name",
        "benchmark.source",
        "models",
        "amps.ablation.model",
        "amps.collapse_budgets",
        *CURVE_KEYS,
    )

    @classmethod
    def from_config(cls, config: Mapping) -> SummarizeAmps:
        return cls(
            config["run_name"],
            benchmark_label(config),
            model_names(config),
            ablation_model(config),
            tuple(config["amps"]["collapse_budgets"]),
            curve_of(config),
        )


def summarize_amps(
    settings: SummarizeAmps,
    answers: str,
    baselines: str,
    selections: str,
    ablations: str,
    scores: str,
    main: str,
    scale: str,
    matched: str,
    budget: str,
    selection: str,
    ablation: str,
) -> None:
    """Every AMPS table from the steered answers, baselines, validation choices and ablations.

    ``answers``, ``baselines``, ``selections`` and ``ablations`` are comma-separated paths; the
    selection files follow the settings' models. Each table path is a CSV; Markdown and LaTeX are
    written beside it.
    """
    import pandas as pd

    from amps.core.io import read_json, read_table, split_paths, write_table
    from amps.report.amps_scores import baseline_as_points, main_table, point_scores
    from amps.report.amps_tables import ablation_table, budget_table, matched_table, scale_table, selection_table
    from amps.report.render import to_markdown, write_report_table

    run = settings.run_name
    baseline = pd.concat([read_table(path) for path in split_paths(baselines)], ignore_index=True)
    steered = pd.concat([read_table(path) for path in split_paths(answers)], ignore_index=True)
    parameters = steered.groupby("model")["parameters"].first()
    everything = pd.concat([baseline_as_points(baseline), steered.drop(columns=["layer", "parameters"])], ignore_index=True)
    table = point_scores(everything)
    write_table(scores, table.assign(run=run))
    main_frame = main_table(table)
    matched_frame = matched_table(table)
    curve = settings.curve
    budget_frame = budget_table(table, settings.collapse_budgets, curve)
    chosen = {model: read_json(path) for model, path in zip(settings.models, split_paths(selections))}
    ablation_paths = split_paths(ablations)
    ablation_answers = (
        pd.concat([read_table(path) for path in ablation_paths], ignore_index=True) if ablation_paths else pd.DataFrame()
    )
    ablation_frame = ablation_table(ablation_answers, baseline)
    label = f"({run}, {settings.benchmark_label})"
    write_report_table(
        main,
        main_frame.assign(run=run),
        f"Shift and collapse at each method's validation-chosen strength, both directions {label}",
    )
    write_report_table(
        scale, scale_table(main_frame, parameters, matched_frame).assign(run=run), f"Steering across model scales {label}"
    )
    write_report_table(
        matched,
        matched_frame.assign(run=run),
        "Collapse of each method where its measured curve reaches AMPS's shift, between the bracketing "
        f"measured points (other minus AMPS; mean ± sd over seeds) {label}",
    )
    write_report_table(
        budget,
        budget_frame.assign(run=run),
        f"Largest measured shift of each method with collapse within each budget; curves of at most "
        f"{curve.max_points} points, resolved where neighbours differ by at most {curve.tolerance:g} "
        f"(curves_resolved counts the seeds) {label}",
    )
    write_report_table(
        selection,
        selection_table(chosen).assign(run=run),
        f"Validation choices: each method's strength from its own validation outputs; AMPS's link, beta, "
        f"r_anchor and factors {label}",
    )
    write_report_table(ablation, ablation_frame.assign(run=run), f"Ablations on {settings.ablation_model} {label}")
    log.info("main table:\n%s", to_markdown(main_frame))
    log.info("matched shift:\n%s", to_markdown(matched_frame))
    log.info("collapse budgets:\n%s", to_markdown(budget_frame))


@dataclass(frozen=True)
class RenderTable(Step):
    """The table's name and the run it came from (its page's title)."""

    run_name: str
    benchmark_label: str
    table: str

    READS: ClassVar[tuple[str, ...]] = ("run_name", "benchmark.source")

    @classmethod
    def from_config(cls, config: Mapping, table: str) -> RenderTable:
        return cls(config["run_name"], benchmark_label(config), table)


def render_table(settings: RenderTable, table: str, output: str) -> None:
    """Write a results table (CSV) as an HTML page titled with its name and run."""
    from amps.core.io import atomic_path, read_table
    from amps.report.pages import table_page

    frame = read_table(table)
    body = frame.to_html(index=False, na_rep="", float_format=lambda value: f"{value:.4g}", border=0)
    page = table_page(settings.table, settings.run_name, settings.benchmark_label, body, len(frame))
    with atomic_path(output) as tmp:
        tmp.write_text(page, encoding="utf-8")
