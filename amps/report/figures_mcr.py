"""The figures of the MCR: per-sample steering sensitivity and the MCR against it, and the MCR against the
world's ground truth, each titled with the run (config) it came from."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from amps.core.io import read_table
from amps.data.benchmark import Benchmark
from amps.report.figure_style import OTHER_COLOR, VISION_COLOR, plt, save_figure
from amps.vocabulary import DIRECTIONS, SENSITIVITY_SCORES

if TYPE_CHECKING:
    from amps.report.figure_steps import PlotMcrSensitivity, PlotMcrValidation


def _sensitivity_levels(tables: list[pd.DataFrame], score: str) -> list[float]:
    """The grid strengths a sensitivity score takes, in order (NaN, "beyond the grid", is not among them)."""
    values = pd.concat([table[score] for table in tables]).dropna().unique()
    return sorted(float(value) for value in values)


def _level_positions(scores: pd.Series, levels: list[float]) -> pd.Series:
    """Each score's place on the ordinal axis of grid strengths; beyond the grid (NaN) is one past the last."""
    index = {level: position for position, level in enumerate(levels)}
    return scores.map(lambda value: len(levels) if pd.isna(value) else index[float(value)])


def draw_mcr_sensitivity(
    settings: PlotMcrSensitivity, mcr: str, sensitivity: str, correlations: str, scores_figure: str, scatter_figure: str
) -> None:
    """Per-sample steering sensitivity across models and tasks, and the MCR against it.

    ``scores_figure``: for each score (flip α, collapse α) and direction, the share of test records
    at each strength of the grid (and beyond it), per task and model. ``scatter_figure``: each test
    record's MCR (functional entropy) against its flip α, one panel per direction and model, with
    Spearman's rho and its bootstrap interval from ``correlations``. ``settings.models`` names the
    comma-separated tables in order.
    """
    models = settings.models
    sensitivity_tables = [read_table(path) for path in sensitivity.split(",")]
    mcr_tables = [read_table(path) for path in mcr.split(",")]
    if not len(sensitivity_tables) == len(mcr_tables) == len(models):
        raise ValueError(f"{len(mcr_tables)} MCR and {len(sensitivity_tables)} sensitivity tables for models {models}")
    title = f"({settings.run_name}, {settings.benchmark_label})"
    tasks = sorted(pd.concat([table["task"] for table in sensitivity_tables]).unique())
    colormap = plt.get_cmap("viridis")

    figure, axes = plt.subplots(
        len(SENSITIVITY_SCORES), len(DIRECTIONS), figsize=(max(7.0, 1.1 * len(tasks) * len(models) + 3), 7.0), squeeze=False
    )
    width = 0.8 / len(models)
    for row, score in enumerate(SENSITIVITY_SCORES):
        levels = _sensitivity_levels(sensitivity_tables, score)
        colors = [colormap(position / max(1, len(levels) - 1)) for position in range(len(levels))] + [OTHER_COLOR]
        labels = [f"α = {level:g}" for level in levels] + ["beyond the grid"]
        for column, direction in enumerate(DIRECTIONS):
            axis = axes[row][column]
            for model_index, (model, table) in enumerate(zip(models, sensitivity_tables)):
                part = table[table["direction"] == direction]
                for task_index, task in enumerate(tasks):
                    places = _level_positions(part.loc[part["task"] == task, score], levels)
                    shares = places.value_counts(normalize=True).reindex(range(len(levels) + 1), fill_value=0.0)
                    x = task_index - 0.4 + width * (model_index + 0.5)
                    bottom = 0.0
                    for place, share in shares.items():
                        axis.bar(
                            x,
                            share,
                            width=width * 0.9,
                            bottom=bottom,
                            color=colors[place],
                            label=labels[place] if model_index == task_index == 0 else None,
                        )
                        bottom += share
                    if task_index == 0 or len(models) > 1:
                        axis.text(x, 1.01, model, rotation=90, fontsize=6, ha="center", va="bottom")
            axis.set_xticks(range(len(tasks)), [task.replace("_", " ") for task in tasks], rotation=30, ha="right", fontsize=7)
            axis.set_ylim(0, 1.25)
            axis.set_ylabel("share of test records")
            axis.set_title(f"{score.replace('_alpha', ' α')}, steering {direction.replace('_', ' ')}", fontsize=9)
        axes[row][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    figure.suptitle(
        textwrap.fill(f"Per-sample steering sensitivity: smallest α that flips / collapses each record {title}", 90), fontsize=10
    )
    figure.tight_layout()
    save_figure(figure, scores_figure)

    table = read_table(correlations)
    overall = table[(table["task"] == "all") & (table["estimator"] == "entropy") & (table["score"] == "flip_alpha")]
    levels = _sensitivity_levels(sensitivity_tables, "flip_alpha")
    task_colors = {task: plt.get_cmap("tab10")(index % 10) for index, task in enumerate(tasks)}
    figure, axes = plt.subplots(
        len(DIRECTIONS), len(models), figsize=(max(7.0, 3.6 * len(models) + 1.5), 6.4), squeeze=False, sharey=True
    )
    jitter = np.random.default_rng(0)
    for column, (model, scores, mcr_table) in enumerate(zip(models, sensitivity_tables, mcr_tables)):
        joined = scores.merge(mcr_table[["record_id", "mcr"]], on="record_id", how="inner")
        for row, direction in enumerate(DIRECTIONS):
            axis = axes[row][column]
            part = joined[joined["direction"] == direction]
            places = _level_positions(part["flip_alpha"], levels) + jitter.uniform(-0.2, 0.2, len(part))
            axis.scatter(part["mcr"], places, s=10, alpha=0.7, c=[task_colors[task] for task in part["task"]])
            axis.set_yticks(range(len(levels) + 1), [f"{level:g}" for level in levels] + ["beyond"], fontsize=7)
            axis.set_ylim(-0.5, len(levels) + 0.5)
            axis.set_xlim(-0.02, 1.02)
            axis.set_xlabel("MCR (text share of the modality contribution)")
            found = overall[(overall["model"] == model) & (overall["direction"] == direction)]
            defined = len(found) and np.isfinite(found["spearman"].iloc[0])
            rho = (
                f"ρ = {found['spearman'].iloc[0]:.2f} [{found['ci_low'].iloc[0]:.2f}, {found['ci_high'].iloc[0]:.2f}]"
                if defined
                else "ρ undefined (ties)"
            )
            axis.set_title(f"{model}, {direction.replace('_', ' ')}: {rho}", fontsize=8)
    for row, direction in enumerate(DIRECTIONS):
        axes[row][0].set_ylabel(f"flip α ({direction.replace('_', ' ')})")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=color, label=task.replace("_", " "))
        for task, color in task_colors.items()
    ]
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    figure.suptitle(textwrap.fill(f"MCR against the steering strength that flips each test record {title}", 80), fontsize=10)
    figure.tight_layout()
    save_figure(figure, scatter_figure)


def draw_mcr_validation(
    settings: PlotMcrValidation, mcr: str, benchmark_dir: str, correlations: str, bins: str, output: str
) -> None:
    """The MCR against the world's ground truth, one column per model.

    Top: each record's MCR (functional entropy) against its evidence balance (text strength minus
    image strength), coloured by task, with Spearman's rho and its bootstrap interval, and the MCR's rho
    with the input ablation. Below it, the same way: the answer-position ablation ratio (what the MCR's
    noise can reach), then the input-ablation ratio (what a measure of the model's own reliance shows).
    Bottom: the uninstructed vision share of the test records by MCR bin. ``settings.models`` names the
    comma-separated MCR tables in order.
    """
    from amps.report.mcr_validation import ABLATION, ANSWER_ABLATION, balance

    models = settings.models
    truth = balance(Benchmark(benchmark_dir).records)
    linked = read_table(correlations).set_index(["model", "estimator", "against"])
    binned = read_table(bins)
    figure, axes = plt.subplots(4, len(models), figsize=(max(7.0, 3.4 * len(models)), 12.0), squeeze=False)
    colormap = plt.get_cmap("tab10")
    for column, (model, path) in enumerate(zip(models, mcr.split(","))):
        table = read_table(path)
        table = table[table["problem"].fillna("") == ""]
        with_ablation = linked.loc[(model, "entropy", "ablation_ratio"), "spearman"]
        panels = (
            ("mcr", "MCR", "entropy", f"\nρ with the input ablation {with_ablation:.2f}"),
            ("answer_ablation_ratio", "answer-position ablation ratio", ANSWER_ABLATION, ""),
            ("ablation_ratio", "input-ablation ratio", ABLATION, ""),
        )
        for row, (value, label, measure, extra) in enumerate(panels):
            axis = axes[row][column]
            for index, (task, part) in enumerate(table.groupby("task")):
                balances = truth.reindex(part["record_id"])
                axis.scatter(balances, part[value], s=7, alpha=0.7, color=colormap(index % 10), label=task)
            linked_row = linked.loc[(model, measure, "balance")]
            axis.set_title(
                f"{model}: ρ = {linked_row['spearman']:.2f} [{linked_row['low']:.2f}, {linked_row['high']:.2f}]{extra}",
                fontsize=9,
            )
            axis.set_xlabel("text strength − image strength", fontsize=8)
            if column == 0:
                axis.set_ylabel(label, fontsize=8)
            axis.tick_params(labelsize=7)
        shares = binned[binned["model"] == model]
        axis = axes[3][column]
        axis.bar(shares["bin"], shares["vision_share"], color=VISION_COLOR)
        axis.set_xticks(
            shares["bin"],
            [f"{low:.2f}–{high:.2f}" for low, high in zip(shares["mcr_low"], shares["mcr_high"])],
            fontsize=6,
            rotation=30,
        )
        axis.set_ylim(0, 1)
        axis.set_xlabel("MCR bin (test records)", fontsize=8)
        if column == 0:
            axis.set_ylabel("uninstructed S_vision", fontsize=8)
        axis.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="upper center", ncol=min(5, len(labels)), fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 0.96)
    )
    figure.suptitle(
        f"MCR against the ground-truth evidence balance ({settings.run_name}, {settings.benchmark_label})", fontsize=10
    )
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(figure, output)
