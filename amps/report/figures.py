"""Figures, each written as PDF and PNG, each titled with the run (config) it came from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from amps.data import prompts  # noqa: E402
from amps.data.benchmark import Benchmark  # noqa: E402
from amps.core.io import atomic_path, read_table  # noqa: E402
from amps.vocabulary import DIRECTIONS, METHOD_LABELS, ORDERS, SENSITIVITY_SCORES  # noqa: E402

VISION_COLOR = "#3b7dd8"
TEXT_COLOR = "#e0813a"
OTHER_COLOR = "#9a9a9a"


def save_figure(figure: plt.Figure, pdf_path: str | Path) -> None:
    """Save ``figure`` as the given PDF and a PNG beside it, atomically, with fixed metadata."""
    pdf = Path(pdf_path)
    if pdf.suffix != ".pdf":
        raise ValueError(f"figure path must end in .pdf, got {pdf}")
    # Fixed metadata keeps the files byte-identical across runs.
    with atomic_path(pdf) as tmp:
        figure.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None, "Creator": "amps"})
    with atomic_path(pdf.with_suffix(".png")) as tmp:
        figure.savefig(tmp, format="png", dpi=150, metadata={"Software": "amps"})
    plt.close(figure)


def plot_preference(settings: dict, scores: str, output: str) -> None:
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
    figure.suptitle(f"Modality preference on conflicts ({settings['run_name']}, {settings['benchmark_label']})", fontsize=10)
    figure.tight_layout()
    save_figure(figure, output)


def plot_sweep(settings: dict, scores: str, output: str) -> None:
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
        axis.plot(record["signed_alpha"], record["s_vision"], "s--", color=VISION_COLOR, alpha=0.7, label="records: image in both orders")
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
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=4 if len(models) > 1 else 2, fontsize=8, frameon=False)
    figure.suptitle(f"Uniform mean steering ({settings['run_name']}, {settings['benchmark_label']})", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9 if len(models) > 1 else 0.86))
    save_figure(figure, output)


#: Styles of the steering methods in the AMPS figures: (colour, marker, label).
METHOD_STYLES = {
    method: (color, marker, METHOD_LABELS[method])
    for method, color, marker in (
        ("mean", "#555555", "o"),
        ("p2s", "#8c6bb1", "D"),
        ("l2s", "#e0813a", "s"),
        ("amps", "#3b7dd8", "^"),
        ("amps_online", "#2ca25f", "v"),
        ("instruction", "#d62728", "*"),
    )
}


def plot_tradeoff(settings: dict, scores: str, output: str) -> None:
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
                    axis.plot([0, *curve["collapse"]], [0, *curve["shift"]], marker=marker, color=color, markersize=2.5,
                              linewidth=0.8, alpha=0.35 if seeded else 0.8, linestyle="--" if method == "p2s" else "-")
                main = rows[rows["main"].astype(bool)]
                axis.errorbar(main["collapse"].mean(), main["shift"].mean(),
                              xerr=main["collapse"].std(ddof=1) if len(main) > 1 else None,
                              yerr=main["shift"].std(ddof=1) if len(main) > 1 else None,
                              marker=marker, color=color, markersize=8 if method != "instruction" else 11,
                              markeredgecolor="black", markeredgewidth=0.5, linestyle="none", capsize=2, label=label)
            axis.axhline(0, color="black", linewidth=0.4)
            axis.axvline(0, color="black", linewidth=0.4)
            axis.set_title(f"{model}, {direction.replace('_', ' ')}", fontsize=9)
            axis.set_xlabel("collapse: Δ S_other", fontsize=8)
            if column == 0:
                axis.set_ylabel("shift: Δ records following target", fontsize=8)
            axis.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=3, fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 0.955))
    figure.suptitle(f"Shift vs collapse on the test split, measured curves ({settings['run_name']}, {settings['benchmark_label']})",
                    fontsize=10)
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
    ranked = sorted(amps_follows.index, key=lambda record: (not (amps_follows[record] and not mean_follows.get(record, False)),
                                                            not differs[record], record))
    tasks = amps_answers.groupby("record_id")["task"].first()
    chosen: list[str] = []
    for record in ranked:
        if len(chosen) < count and tasks[record] not in {tasks[other] for other in chosen}:
            chosen.append(record)
    chosen += [record for record in ranked if record not in chosen][: count - len(chosen)]
    return chosen


def plot_examples(settings: dict, mean_answers: str, amps_answers: str, benchmark_dir: str, output: str) -> None:
    """A few test records: image, context, question and options, and the answers in both option orders
    under mean steering at its strongest measured strength and under AMPS (first seed, main strength)."""
    direction = settings["direction"]
    target = DIRECTIONS[direction][1]
    mean_table = read_table(mean_answers)
    mean_table = mean_table[(mean_table["condition"] == "conflict") & (mean_table["strength"] == mean_table["strength"].max())]
    amps_table = read_table(amps_answers)
    amps_table = amps_table[(amps_table["condition"] == "conflict") & amps_table["main"].astype(bool) & (amps_table["seed"] == 0)]
    chosen = example_records(mean_table, amps_table, target, settings["examples"])
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.records.set_index("record_id")
    figure, axes = plt.subplots(len(chosen), 2, figsize=(9.5, 2.3 * len(chosen)), squeeze=False,
                                gridspec_kw={"width_ratios": [1, 5]})
    alpha = mean_table["strength"].max()
    for row, record_id in enumerate(chosen):
        record = records.loc[record_id]
        image_axis, text_axis = axes[row]
        image_axis.imshow(benchmark.image(record))
        image_axis.set_axis_off()
        option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], "vision_first")
        lines = [f"Context: {record['context']}", f"Q: {record['question']}   A. {option_a}   B. {option_b}",
                 f"image shows: {record['answer_vision']}   text says: {record['answer_text']}"]
        for name, answers in ((f"mean steering, s = {alpha:g}", mean_table), ("AMPS", amps_table)):
            mine = answers[answers["record_id"] == record_id].set_index("order")
            said = "; ".join(f"{order.replace('_', ' ')}: {mine.loc[order, 'answer']!r} → {mine.loc[order, 'choice']}"
                             for order in ORDERS if order in mine.index)
            lines.append(f"{name}: {said}")
        text_axis.text(0, 0.5, "\n".join(textwrap.fill(line, 110) for line in lines), va="center", fontsize=7.5, family="monospace")
        text_axis.set_axis_off()
    figure.suptitle(f"{settings['model_name']}, steering {direction.replace('_', ' ')} "
                    f"({settings['run_name']}, {settings['benchmark_label']})", fontsize=10)
    figure.tight_layout()
    save_figure(figure, output)


def _sensitivity_levels(tables: list[pd.DataFrame], score: str) -> list[float]:
    """The grid strengths a sensitivity score takes, in order (NaN, "beyond the grid", is not among them)."""
    values = pd.concat([table[score] for table in tables]).dropna().unique()
    return sorted(float(value) for value in values)


def _level_positions(scores: pd.Series, levels: list[float]) -> pd.Series:
    """Each score's place on the ordinal axis of grid strengths; beyond the grid (NaN) is one past the last."""
    index = {level: position for position, level in enumerate(levels)}
    return scores.map(lambda value: len(levels) if pd.isna(value) else index[float(value)])


def plot_mcr_sensitivity(
    settings: dict, mcr: str, sensitivity: str, correlations: str, scores_figure: str, scatter_figure: str
) -> None:
    """Per-sample steering sensitivity across models and tasks, and the MCR against it.

    ``scores_figure``: for each score (flip α, collapse α) and direction, the share of test records
    at each strength of the grid (and beyond it), per task and model. ``scatter_figure``: each test
    record's MCR (functional entropy) against its flip α, one panel per direction and model, with
    Spearman's rho and its bootstrap interval from ``correlations``. ``settings["models"]`` names the
    comma-separated tables in order.
    """
    models = settings["models"]
    sensitivity_tables = [read_table(path) for path in sensitivity.split(",")]
    mcr_tables = [read_table(path) for path in mcr.split(",")]
    if not len(sensitivity_tables) == len(mcr_tables) == len(models):
        raise ValueError(f"{len(mcr_tables)} MCR and {len(sensitivity_tables)} sensitivity tables for models {models}")
    title = f"({settings['run_name']}, {settings['benchmark_label']})"
    tasks = sorted(pd.concat([table["task"] for table in sensitivity_tables]).unique())
    colormap = plt.get_cmap("viridis")

    figure, axes = plt.subplots(len(SENSITIVITY_SCORES), len(DIRECTIONS), figsize=(max(7.0, 1.1 * len(tasks) * len(models) + 3), 7.0), squeeze=False)
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
                        axis.bar(x, share, width=width * 0.9, bottom=bottom, color=colors[place],
                                 label=labels[place] if model_index == task_index == 0 else None)
                        bottom += share
                    if task_index == 0 or len(models) > 1:
                        axis.text(x, 1.01, model, rotation=90, fontsize=6, ha="center", va="bottom")
            axis.set_xticks(range(len(tasks)), [task.replace("_", " ") for task in tasks], rotation=30, ha="right", fontsize=7)
            axis.set_ylim(0, 1.25)
            axis.set_ylabel("share of test records")
            axis.set_title(f"{score.replace('_alpha', ' α')}, steering {direction.replace('_', ' ')}", fontsize=9)
        axes[row][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    figure.suptitle(textwrap.fill(f"Per-sample steering sensitivity: smallest α that flips / collapses each record {title}", 90), fontsize=10)
    figure.tight_layout()
    save_figure(figure, scores_figure)

    table = read_table(correlations)
    overall = table[(table["task"] == "all") & (table["estimator"] == "entropy") & (table["score"] == "flip_alpha")]
    levels = _sensitivity_levels(sensitivity_tables, "flip_alpha")
    task_colors = {task: plt.get_cmap("tab10")(index % 10) for index, task in enumerate(tasks)}
    figure, axes = plt.subplots(len(DIRECTIONS), len(models), figsize=(max(7.0, 3.6 * len(models) + 1.5), 6.4), squeeze=False, sharey=True)
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
            rho = (f"ρ = {found['spearman'].iloc[0]:.2f} [{found['ci_low'].iloc[0]:.2f}, {found['ci_high'].iloc[0]:.2f}]"
                   if defined else "ρ undefined (ties)")
            axis.set_title(f"{model}, {direction.replace('_', ' ')}: {rho}", fontsize=8)
    for row, direction in enumerate(DIRECTIONS):
        axes[row][0].set_ylabel(f"flip α ({direction.replace('_', ' ')})")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=color, label=task.replace("_", " ")) for task, color in task_colors.items()]
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    figure.suptitle(textwrap.fill(f"MCR against the steering strength that flips each test record {title}", 80), fontsize=10)
    figure.tight_layout()
    save_figure(figure, scatter_figure)


def plot_mcr_validation(settings: dict, mcr: str, benchmark_dir: str, correlations: str, bins: str, output: str) -> None:
    """The MCR against the world's ground truth, one column per model.

    Top: each record's MCR (functional entropy) against its evidence balance (text strength minus
    image strength), coloured by task, with Spearman's rho and its bootstrap interval. Bottom: the
    uninstructed vision share of the test records by MCR bin. ``settings["models"]`` names the
    comma-separated MCR tables in order.
    """
    from amps.report.mcr_validation import balance

    models = settings["models"]
    truth = balance(Benchmark(benchmark_dir).records)
    linked = read_table(correlations).set_index(["model", "estimator"])
    binned = read_table(bins)
    figure, axes = plt.subplots(2, len(models), figsize=(max(7.0, 3.4 * len(models)), 6.4), squeeze=False)
    colormap = plt.get_cmap("tab10")
    for column, (model, path) in enumerate(zip(models, mcr.split(","))):
        table = read_table(path)
        table = table[table["problem"].fillna("") == ""]
        axis = axes[0][column]
        for index, (task, part) in enumerate(table.groupby("task")):
            axis.scatter(truth.reindex(part["record_id"]), part["mcr"], s=7, alpha=0.7, color=colormap(index % 10), label=task)
        row = linked.loc[(model, "entropy")]
        axis.set_title(f"{model}: ρ = {row['spearman']:.2f} [{row['low']:.2f}, {row['high']:.2f}]", fontsize=9)
        axis.set_xlabel("text strength − image strength", fontsize=8)
        if column == 0:
            axis.set_ylabel("MCR", fontsize=8)
        axis.tick_params(labelsize=7)
        shares = binned[binned["model"] == model]
        axis = axes[1][column]
        axis.bar(shares["bin"], shares["vision_share"], color=VISION_COLOR)
        axis.set_xticks(shares["bin"], [f"{low:.2f}–{high:.2f}" for low, high in zip(shares["mcr_low"], shares["mcr_high"])],
                        fontsize=6, rotation=30)
        axis.set_ylim(0, 1)
        axis.set_xlabel("MCR bin (test records)", fontsize=8)
        if column == 0:
            axis.set_ylabel("uninstructed S_vision", fontsize=8)
        axis.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=min(5, len(labels)), fontsize=7.5, frameon=False,
                  bbox_to_anchor=(0.5, 0.96))
    figure.suptitle(f"MCR against the ground-truth evidence balance ({settings['run_name']}, {settings['benchmark_label']})",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    save_figure(figure, output)
