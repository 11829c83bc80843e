"""Figures, each written as PDF and PNG, each titled with the run (config) it came from."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from amps.io import atomic_path, read_table  # noqa: E402

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
