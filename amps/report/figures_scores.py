"""The figures of the scores: preference bars, the sweep, the shift-collapse trade-off and example records,
each titled with the run (config) it came from."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pandas as pd

from amps.core.io import read_table
from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.report.figure_style import METHOD_STYLES, OTHER_COLOR, TEXT_COLOR, VISION_COLOR, plt, save_figure
from amps.vocabulary import DIRECTIONS, ORDERS

if TYPE_CHECKING:
    from amps.report.figure_steps import PlotExamples, PlotPreference, PlotSweep, PlotTradeoff


def draw_preference(settings: PlotPreference, scores: str, output: str) -> None:
    """MC²-style preference bars: stacked S_vision / S_other / S_text per model, vision ratio beside.

    One panel per instruction condition (none, text, image), both option orders pooled.
    """
    table = read_table(scores)
    pooled = table[(table["task"] == "all") & (table["view"] == "pooled")]
    conditions = [c for c in ("none", "text", "image") if c in set(pooled["condition"])]
    models = list(dict.fromkeys(pooled["model"]))
    figure, axes = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 0.55 * len(models) + 1.8), squeeze=False)
    titles = {"none": "no instruction", "text": "text instruction", "image": "image instruction"}
    for axis, condition in zip(axes[0], conditions):
        part = pooled[pooled["condition"] == condition].set_index("model").loc[models]
        positions = range(len(models))
        left = [0.0] * len(models)
        for column, color, label in (
            ("s_vision", VISION_COLOR, "S_vision"),
            ("s_other", OTHER_COLOR, "S_other"),
            ("s_text", TEXT_COLOR, "S_text"),
        ):
            values = (part[column] * 100).tolist()
            axis.barh(positions, values, left=left, color=color, label=label, height=0.7)
            left = [a + b for a, b in zip(left, values)]
        for position, ratio in zip(positions, part["vision_ratio"]):
            axis.text(102, position, f"{ratio:.0%}", va="center", fontsize=9)
        axis.set_yticks(list(positions), models)
        axis.set_xlim(0, 118)
        axis.invert_yaxis()
        axis.set_xlabel("% of answers (both option orders)")
        axis.set_title(titles[condition], fontsize=10)
        axis.text(102, -0.75, "vision\nratio", fontsize=8, va="bottom")
    axes[0][0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.12), ncol=3, fontsize=8, frameon=False)
    figure.suptitle(f"Modality preference on conflicts ({settings.run_name}, {settings.benchmark_label})", fontsize=10)
    figure.tight_layout()
    save_figure(figure, output)


def draw_sweep(settings: PlotSweep, scores: str, output: str) -> None:
    """Mean-steering sweep: vision ratio (shift) and S_other (collapse) against α, one panel per model.

    The x axis is the signed strength: to-text steering on the left, to-vision on the right, in units
    of the layer's mean hidden-state norm. Beside the pooled vision ratio, the share of records that
    pick the image in both option orders and the rate of answering "A" show whether the shift is a
    modality shift or only a letter shift.
    """
    table = read_table(scores)
    whole = table[table["task"] == "all"].copy()
    whole["signed_alpha"] = whole["alpha"].where(whole["direction"] == "to_vision", -whole["alpha"])
    models = list(dict.fromkeys(whole["model"]))
    width = max(6.5, 4.2 * len(models))
    figure, axes = plt.subplots(1, len(models), figsize=(width, 3.8), squeeze=False, sharey=True)
    smallest = whole.loc[whole["alpha"] > 0, "alpha"].min()
    grid = sorted(whole["signed_alpha"].unique())
    for axis, model in zip(axes[0], models):
        part = whole[whole["model"] == model]
        pooled = part[part["view"] == "pooled"].drop_duplicates("signed_alpha").sort_values("signed_alpha")
        record = part[part["view"] == "record"].drop_duplicates("signed_alpha").sort_values("signed_alpha")
        x = pooled["signed_alpha"]
        axis.plot(x, pooled["vision_ratio"], "o-", color=VISION_COLOR, label="vision ratio (pooled)")
        axis.plot(
            record["signed_alpha"],
            record["s_vision"],
            "s--",
            color=VISION_COLOR,
            alpha=0.7,
            label="records: image in both orders",
        )
        axis.plot(x, pooled["s_other"], "^-", color=OTHER_COLOR, label="S_other (collapse)")
        axis.plot(x, pooled["rate_a"], ":", color="black", label='rate of "A"')
        axis.set_xscale("symlog", linthresh=smallest)
        axis.set_xticks(grid, [f"{abs(alpha):g}" for alpha in grid], rotation=90, fontsize=7)
        axis.minorticks_off()
        axis.axvline(0, color="black", linewidth=0.5)
        axis.set_ylim(-0.03, 1.03)
        axis.set_xlabel("α (× mean ‖h‖)   ← to text | to vision →")
        axis.set_title(f"{model} (layer {int(pooled['layer'].iloc[0])})", fontsize=10)
    axes[0][0].set_ylabel("share")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.94),
        ncol=4 if len(models) > 1 else 2,
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(f"Uniform mean steering ({settings.run_name}, {settings.benchmark_label})", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9 if len(models) > 1 else 0.86))
    save_figure(figure, output)


def draw_tradeoff(settings: PlotTradeoff, scores: str, output: str) -> None:
    """Shift against collapse: every method's measured strength curve and its validation-chosen point.

    One panel per model (columns) and direction (rows). x: increase of S_other over no steering;
    y: record-level shift toward the target modality. Each measured point is a small marker, lines
    only join measured neighbours (learned methods: one faint curve per seed); the validation-chosen
    point is a large marker with the seed spread (± sd).
    """
    table = read_table(scores)
    whole = table[table["task"] == "all"]
    models = list(dict.fromkeys(whole["model"]))
    directions = list(DIRECTIONS)
    figure, axes = plt.subplots(len(directions), len(models), figsize=(max(7.5, 3.6 * len(models) + 0.6), 7.0), squeeze=False)
    for row, direction in enumerate(directions):
        for column, model in enumerate(models):
            axis = axes[row][column]
            part = whole[(whole["model"] == model) & (whole["direction"] == direction)]
            axis.plot([0], [0], "k+", markersize=9)
            for method, (color, marker, label) in METHOD_STYLES.items():
                rows = part[part["method"] == method]
                if rows.empty:
                    continue
                seeded = rows["seed"].nunique() > 1
                for _seed, curve in rows.groupby("seed"):
                    curve = curve[curve["strength"] > 0].sort_values("strength")
                    if curve.empty:
                        continue
                    axis.plot(
                        [0, *curve["collapse"]],
                        [0, *curve["shift"]],
                        marker=marker,
                        color=color,
                        markersize=2.5,
                        linewidth=0.8,
                        alpha=0.35 if seeded else 0.8,
                        linestyle="--" if method == "p2s" else "-",
                    )
                main = rows[rows["main"].astype(bool)]
                axis.errorbar(
                    main["collapse"].mean(),
                    main["shift"].mean(),
                    xerr=main["collapse"].std(ddof=1) if len(main) > 1 else None,
                    yerr=main["shift"].std(ddof=1) if len(main) > 1 else None,
                    marker=marker,
                    color=color,
                    markersize=8 if method != "instruction" else 11,
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    linestyle="none",
                    capsize=2,
                    label=label,
                )
            axis.axhline(0, color="black", linewidth=0.4)
            axis.axvline(0, color="black", linewidth=0.4)
            axis.set_title(f"{model}, {direction.replace('_', ' ')}", fontsize=9)
            axis.set_xlabel("collapse: Δ S_other", fontsize=8)
            if column == 0:
                axis.set_ylabel("shift: Δ records following target", fontsize=8)
            axis.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=3, fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 0.955))
    figure.suptitle(
        f"Shift vs collapse on the test split, measured curves ({settings.run_name}, {settings.benchmark_label})", fontsize=10
    )
    figure.tight_layout(rect=(0, 0, 1, 0.88))
    save_figure(figure, output)


def example_records(mean_answers: pd.DataFrame, amps_answers: pd.DataFrame, target: str, count: int) -> list[str]:
    """Test records to show: first where AMPS follows the target in both orders and strong mean steering does not.

    Then records whose answers differ between the two, then any; in record order within each group,
    one record per task before a task repeats.
    """

    def follows(answers: pd.DataFrame) -> pd.Series:
        return answers.groupby("record_id")["choice"].apply(lambda choices: bool((choices == target).all()))

    def answer_text(answers: pd.DataFrame) -> pd.Series:
        return answers.sort_values("order").groupby("record_id")["answer"].apply(" / ".join)

    amps_follows, mean_follows = follows(amps_answers), follows(mean_answers)
    differs = answer_text(amps_answers) != answer_text(mean_answers).reindex(amps_follows.index)
    ranked = sorted(
        amps_follows.index,
        key=lambda record: (not (amps_follows[record] and not mean_follows.get(record, False)), not differs[record], record),
    )
    tasks = amps_answers.groupby("record_id")["task"].first()
    chosen: list[str] = []
    for record in ranked:
        if len(chosen) < count and tasks[record] not in {tasks[other] for other in chosen}:
            chosen.append(record)
    chosen += [record for record in ranked if record not in chosen][: count - len(chosen)]
    return chosen


def draw_examples(settings: PlotExamples, mean_answers: str, amps_answers: str, benchmark_dir: str, output: str) -> None:
    """A few test records: image, context, question and options, and the answers in both option orders
    under mean steering at its strongest measured strength and under AMPS (first seed, main strength)."""
    direction = settings.direction
    target = DIRECTIONS[direction][1]
    mean_table = read_table(mean_answers)
    mean_table = mean_table[(mean_table["condition"] == "conflict") & (mean_table["strength"] == mean_table["strength"].max())]
    amps_table = read_table(amps_answers)
    amps_table = amps_table[(amps_table["condition"] == "conflict") & amps_table["main"].astype(bool) & (amps_table["seed"] == 0)]
    chosen = example_records(mean_table, amps_table, target, settings.examples)
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.records.set_index("record_id")
    figure, axes = plt.subplots(
        len(chosen), 2, figsize=(9.5, 2.3 * len(chosen)), squeeze=False, gridspec_kw={"width_ratios": [1, 5]}
    )
    alpha = mean_table["strength"].max()
    for row, record_id in enumerate(chosen):
        record = records.loc[record_id]
        image_axis, text_axis = axes[row]
        image_axis.imshow(benchmark.image(record_id))
        image_axis.set_axis_off()
        option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], "vision_first")
        lines = [
            f"Context: {record['context']}",
            f"Q: {record['question']}   A. {option_a}   B. {option_b}",
            f"image shows: {record['answer_vision']}   text says: {record['answer_text']}",
        ]
        for name, answers in ((f"mean steering, s = {alpha:g}", mean_table), ("AMPS", amps_table)):
            mine = answers[answers["record_id"] == record_id].set_index("order")
            said = "; ".join(
                f"{order.replace('_', ' ')}: {mine.loc[order, 'answer']!r} → {mine.loc[order, 'choice']}"
                for order in ORDERS
                if order in mine.index
            )
            lines.append(f"{name}: {said}")
        text_axis.text(
            0, 0.5, "\n".join(textwrap.fill(line, 110) for line in lines), va="center", fontsize=7.5, family="monospace"
        )
        text_axis.set_axis_off()
    figure.suptitle(
        f"{settings.model_name}, steering {direction.replace('_', ' ')} ({settings.run_name}, {settings.benchmark_label})",
        fontsize=10,
    )
    figure.tight_layout()
    save_figure(figure, output)
