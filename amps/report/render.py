"""Every AMPS table is written as CSV (numbers) and, beside it, as Markdown and LaTeX (mean ± sd over seeds where
there are several)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from amps.core.io import write_table, write_text


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as text; a ``{x}`` column with a ``{x}_sd`` beside it reads "mean ± sd" where the sd is not zero."""
    shown = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        if column.endswith("_sd") and column[:-3] in frame.columns:
            continue
        cells = frame[column].map(_cell)
        spread = f"{column}_sd"
        if spread in frame.columns:
            sd = frame[spread]
            cells = [
                f"{cell} ± {s:.3f}" if cell and isinstance(s, float) and math.isfinite(s) and s > 0 else cell
                for cell, s in zip(cells, sd)
            ]
        shown[column] = cells
    return shown


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of the display cells."""
    shown = display_frame(frame)
    lines = ["| " + " | ".join(shown.columns) + " |", "| " + " | ".join("---" for _ in shown.columns) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(character, character) for character in text)


def to_latex(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs LaTeX table of the display cells."""
    shown = display_frame(frame)
    header = " & ".join(_latex_escape(column) for column in shown.columns) + r" \\"
    body = [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in shown.itertuples(index=False)]
    return (
        "\n".join(
            [
                r"\begin{table}[t]",
                r"\centering",
                r"\small",
                f"\\caption{{{_latex_escape(caption)}}}",
                r"\begin{tabular}{" + "l" * len(shown.columns) + "}",
                r"\toprule",
                header,
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                r"\end{table}",
            ]
        )
        + "\n"
    )


def write_report_table(csv_path: str, frame: pd.DataFrame, caption: str) -> None:
    """Write ``frame`` as CSV at ``csv_path`` and as Markdown (.md) and LaTeX (.tex) beside it."""
    path = Path(csv_path)
    write_table(path, frame)
    write_text(path.with_suffix(".md"), f"{caption}\n\n{to_markdown(frame)}")
    write_text(path.with_suffix(".tex"), to_latex(frame, caption))
