"""AMPS's tables: shift and collapse against no steering, seeds, matched shift, Markdown and LaTeX."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from amps.reporting import (
    baseline_as_points,
    collapse_at_shift,
    main_table,
    matched_table,
    point_scores,
    to_latex,
    to_markdown,
)

# vision_first: A = vision answer; text_first: A = text answer.
LETTER = {("vision", "vision_first"): "A", ("text", "vision_first"): "B", ("vision", "text_first"): "B",
          ("text", "text_first"): "A", ("other", "vision_first"): "", ("other", "text_first"): ""}


def _rows(method: str, direction: str, seed: int, multiplier: float, strength: float, main: bool, condition: str,
          choices: dict[str, tuple[str, str]]) -> list[dict]:
    rows = []
    for record, pair in choices.items():
        for order, choice in zip(("vision_first", "text_first"), pair):
            rows.append({"model": "m", "method": method, "direction": direction, "seed": seed, "multiplier": multiplier,
                         "strength": strength, "main": main, "condition": condition, "record_id": record, "task": "color",
                         "order": order, "answer": choice, "letter": LETTER[(choice, order)], "choice": choice})
    return rows


def _baseline() -> pd.DataFrame:
    rows = []
    for condition, choices in (("none", {"r1": ("text", "text"), "r2": ("text", "text"), "r3": ("vision", "vision"), "r4": ("text", "other")}),
                               ("agreeing", {"r1": ("vision", "vision"), "r2": ("vision", "vision"), "r3": ("vision", "vision"), "r4": ("vision", "text")}),
                               ("image", {"r1": ("vision", "vision"), "r2": ("vision", "vision"), "r3": ("vision", "vision"), "r4": ("vision", "vision")})):
        for row in _rows("x", "x", 0, 1.0, 0.0, True, condition, choices):
            rows.append({key: row[key] for key in ("model", "record_id", "task", "condition", "order", "answer", "letter", "choice")})
    return pd.DataFrame(rows)


def _steered() -> pd.DataFrame:
    rows = []
    # AMPS, two seeds: seed 0 flips r1 and r2 (r2 only in one order), seed 1 flips r1, r2; no collapse.
    rows += _rows("amps", "to_vision", 0, 1.0, 2.0, True, "conflict", {"r1": ("vision", "vision"), "r2": ("vision", "text"), "r3": ("vision", "vision"), "r4": ("text", "other")})
    rows += _rows("amps", "to_vision", 1, 1.0, 2.0, True, "conflict", {"r1": ("vision", "vision"), "r2": ("vision", "vision"), "r3": ("vision", "vision"), "r4": ("text", "other")})
    for seed in (0, 1):
        rows += _rows("amps", "to_vision", seed, 1.0, 2.0, True, "agreeing", {"r1": ("vision", "vision"), "r2": ("vision", "vision"), "r3": ("vision", "text"), "r4": ("vision", "vision")})
    # Mean steering: α = 1 shifts one record and collapses one answer; α = 2 shifts two and collapses three.
    rows += _rows("mean", "to_vision", 0, 1.0, 1.0, True, "conflict", {"r1": ("vision", "vision"), "r2": ("text", "other"), "r3": ("vision", "vision"), "r4": ("text", "other")})
    rows += _rows("mean", "to_vision", 0, 1.0, 2.0, False, "conflict", {"r1": ("vision", "vision"), "r2": ("vision", "vision"), "r3": ("vision", "other"), "r4": ("other", "other")})
    rows += _rows("mean", "to_vision", 0, 1.0, 1.0, True, "agreeing", {"r1": ("vision", "vision"), "r2": ("vision", "vision"), "r3": ("vision", "vision"), "r4": ("vision", "vision")})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return point_scores(pd.concat([baseline_as_points(_baseline()), _steered()], ignore_index=True))


def _at(scores, method, seed=0, strength=None):
    rows = scores[(scores["method"] == method) & (scores["direction"] == "to_vision") & (scores["task"] == "all") & (scores["seed"] == seed)]
    return rows if strength is None else rows[rows["strength"] == strength]


def test_shift_and_collapse_are_taken_against_no_steering(scores):
    none = _at(scores, "none").iloc[0]
    # One record of four follows the image in both orders; one answer of eight names no option.
    assert (none["record_target"], none["s_other"], none["shift"], none["collapse"]) == (0.25, 0.125, 0.0, 0.0)
    assert none["agreeing_accuracy"] == pytest.approx(7 / 8)
    amps = _at(scores, "amps", 0).iloc[0]
    assert amps["shift"] == pytest.approx(0.25) and amps["collapse"] == pytest.approx(0.0)
    assert amps["agreeing_accuracy"] == pytest.approx(7 / 8) and amps["agreeing_change"] == pytest.approx(0.0)
    assert _at(scores, "amps", 1).iloc[0]["shift"] == pytest.approx(0.5)
    strong = _at(scores, "mean", 0, 2.0).iloc[0]
    assert strong["shift"] == pytest.approx(0.25) and strong["s_other"] == pytest.approx(3 / 8) and strong["collapse"] == pytest.approx(0.25)
    assert math.isnan(strong["agreeing_accuracy"])  # agreeing control only at the main setting
    # to_text lists the same unsteered answers: three records do not follow the text in both orders.
    assert scores[(scores["method"] == "none") & (scores["direction"] == "to_text") & (scores["task"] == "all")]["record_target"].iloc[0] == 0.5


def test_main_table_averages_seeds_with_their_spread(scores):
    table = main_table(scores).set_index("method")
    assert list(table.index) == ["none", "mean", "amps"]
    assert table.loc["amps", "to_vision.shift"] == pytest.approx(0.375)
    assert table.loc["amps", "to_vision.shift_sd"] == pytest.approx(pd.Series([0.25, 0.5]).std())
    assert table.loc["amps", "seeds"] == 2 and table.loc["mean", "to_vision.strength"] == 1.0


def test_collapse_at_shift_interpolates_along_the_strength_curve():
    curve = pd.DataFrame({"shift": [0.2, 0.6, 0.5], "collapse": [0.0, 0.2, 0.4]})
    assert collapse_at_shift(curve, 0.1) == pytest.approx(0.0)
    assert collapse_at_shift(curve, 0.4) == pytest.approx(0.1)
    assert math.isnan(collapse_at_shift(curve, 0.7))  # never reached
    assert math.isnan(collapse_at_shift(curve, 0.0))  # no shift: nothing to match


def test_matched_table_reads_other_methods_at_amps_shift(scores):
    table = matched_table(scores).set_index("direction").loc["to_vision"]
    # Seed 0: AMPS shift 0.25 at no collapse; mean reaches 0.25 at α = 1 with collapse 1/8.
    # Seed 1: AMPS shift 0.5, which mean steering never reaches.
    assert table["amps_shift"] == pytest.approx(0.375)
    assert table["mean_minus_amps"] == pytest.approx(0.125)
    assert table["mean_max_shift"] == pytest.approx(0.25)
    assert table["seeds"] == 2 and table["mean_seeds_matched"] == 1


def test_markdown_and_latex_show_mean_and_sd():
    frame = pd.DataFrame({"method": ["amps_x", "b"], "shift": [0.5, 0.25], "shift_sd": [0.1, 0.0], "ok": [True, False]})
    markdown = to_markdown(frame)
    assert markdown.splitlines()[0] == "| method | shift | ok |"
    assert "| amps_x | 0.500 ± 0.100 | yes |" in markdown and "| b | 0.250 | no |" in markdown
    latex = to_latex(frame, "Shift & collapse")
    assert r"amps\_x & 0.500 $\pm$ 0.100 & yes \\" in latex and r"\caption{Shift \& collapse}" in latex


def test_steps_without_a_model_start_without_torch():
    """Table, figure and data steps must not import torch or transformers: on the offline default each
    such import costs a job about 6 s of its start-up."""
    import subprocess
    import sys

    from amps.cli import COMMANDS

    model_free = ("prepare-", "validate-", "plan-", "summarize-", "gather-", "mcr-sensitivity", "plot-", "render-")
    modules = sorted({module for name, (module, *_rest) in COMMANDS.items() if name.startswith(model_free)})
    assert {"amps.scoring", "amps.mcr_tables", "amps.reporting", "amps.figures"} <= set(modules)
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"{modules} import {loaded}"
