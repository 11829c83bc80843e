"""AMPS's tables: scores of every method and setting, the main table, scales, matched shift, selection, ablations.

Definitions (per model, direction and task; "target" is the direction's modality):

* ``shift``: the share of records that follow the target in both option orders, minus that share
  without steering (the record-level view: a letter pushed to one side never counts as a shift);
* ``ratio_shift``: the pooled vision ratio's change toward the target (sign flipped for ``to_text``);
* ``s_other`` (collapse) and ``collapse``: S_other pooled over both orders, and its increase over
  no steering;
* ``agreeing_accuracy``: the share of agreeing-control answers that name the (true) image answer,
  measured at each method's main setting, and ``agreeing_change`` against no steering.

Matched shift: for each AMPS seed, every other method's collapse at AMPS's shift is read off its
strength curve (straight lines between its settings, starting from no steering); the difference
``other − AMPS`` is positive where AMPS collapses less for the same shift. A method whose curve
never reaches AMPS's shift gets NaN there and its largest shift is listed.

Every table is written as CSV (numbers) and, beside it, as Markdown and LaTeX (mean ± sd over
seeds where there are several).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from amps.io import read_json, read_table, write_table, write_text
from amps.scoring import DIRECTIONS, record_choices

log = logging.getLogger(__name__)

POINT_KEYS = ["model", "method", "direction", "seed", "multiplier", "strength"]
#: Methods in table order; ``none`` is the unsteered reference.
METHOD_ORDER = ["none", "instruction", "mean", "l2s", "amps", "amps_online", "p2s"]
METHOD_LABELS = {
    "none": "no steering",
    "instruction": "prompt instruction",
    "mean": "mean steering",
    "l2s": "Learn-to-Steer",
    "amps": "AMPS",
    "amps_online": "AMPS-online",
    "p2s": "prompt-to-steer (oracle)",
}
#: Methods compared with AMPS at matched shift.
COMPARED = ["mean", "l2s", "amps_online", "p2s"]


# ----------------------------------------------------------------------------- scores


def baseline_as_points(baseline: pd.DataFrame) -> pd.DataFrame:
    """The baseline's uninstructed and agreeing answers as the ``none`` method, listed under both directions."""
    kept = baseline[baseline["condition"].isin(["none", "agreeing"])]
    kept = kept.assign(condition=kept["condition"].replace({"none": "conflict"}), method="none", seed=0,
                       multiplier=1.0, strength=0.0, main=True)
    return pd.concat([kept.assign(direction=direction) for direction in DIRECTIONS], ignore_index=True)


def _conflict_metrics(answers: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: n records, S_vision, S_text, S_other, vision ratio, rate of "A", record-level vision and text shares."""
    pooled = answers.groupby(keys).agg(
        n_answers=("choice", "size"),
        s_vision=("choice", lambda c: (c == "vision").mean()),
        s_text=("choice", lambda c: (c == "text").mean()),
        s_other=("choice", lambda c: (c == "other").mean()),
        rate_a=("letter", lambda l: (l == "A").mean()),
    )
    decided = pooled["s_vision"] + pooled["s_text"]
    pooled["vision_ratio"] = (pooled["s_vision"] / decided).where(decided > 0)
    records = record_choices(answers, keys)
    per_record = records.groupby(keys).agg(
        n_records=("choice", "size"),
        record_vision=("choice", lambda c: (c == "vision").mean()),
        record_text=("choice", lambda c: (c == "text").mean()),
    )
    return pooled.join(per_record).reset_index()


def point_scores(answers: pd.DataFrame) -> pd.DataFrame:
    """Scores of every (model, method, direction, seed, multiplier, strength) per task and overall.

    ``answers`` must include the ``none`` method (:func:`baseline_as_points`); shifts and changes
    are taken against it.
    """
    if "none" not in set(answers["method"]):
        raise ValueError("the answers lack the unsteered reference (method 'none')")
    whole = answers.assign(task="all")
    both = pd.concat([whole, answers], ignore_index=True)
    keys = POINT_KEYS + ["task"]
    conflict = _conflict_metrics(both[both["condition"] == "conflict"], keys)
    agreeing = (
        both[both["condition"] == "agreeing"]
        .groupby(keys)["choice"].apply(lambda c: (c == "vision").mean()).rename("agreeing_accuracy").reset_index()
    )
    scores = conflict.merge(agreeing, on=keys, how="left")
    main = answers.groupby(POINT_KEYS)["main"].first().reset_index()
    scores = scores.merge(main, on=POINT_KEYS, how="left")
    scores["record_target"] = np.where(scores["direction"] == "to_vision", scores["record_vision"], scores["record_text"])
    reference = scores[scores["method"] == "none"].set_index(["model", "direction", "task"])
    ref = reference.reindex(pd.MultiIndex.from_frame(scores[["model", "direction", "task"]]))
    toward = np.where(scores["direction"] == "to_vision", 1.0, -1.0)
    scores["shift"] = scores["record_target"].to_numpy() - ref["record_target"].to_numpy()
    scores["ratio_shift"] = toward * (scores["vision_ratio"].to_numpy() - ref["vision_ratio"].to_numpy())
    scores["collapse"] = scores["s_other"].to_numpy() - ref["s_other"].to_numpy()
    scores["agreeing_change"] = scores["agreeing_accuracy"].to_numpy() - ref["agreeing_accuracy"].to_numpy()
    order = {method: rank for rank, method in enumerate(METHOD_ORDER)}
    scores = scores.sort_values(["model", "direction", "task", "method", "seed", "strength"],
                                key=lambda column: column.map(order) if column.name == "method" else column)
    return scores.reset_index(drop=True)


# ----------------------------------------------------------------------------- tables


def _mean_sd(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and sample sd (0 for a single value) of ``columns`` per group, as ``{column}`` and ``{column}_sd``."""
    grouped = frame.groupby(keys, sort=False)[columns]
    means = grouped.mean()
    spreads = grouped.std(ddof=1).fillna(0.0).add_suffix("_sd")
    counts = grouped.size().rename("seeds")
    return pd.concat([means, spreads, counts], axis=1).reset_index()


def main_points(scores: pd.DataFrame) -> pd.DataFrame:
    """Each method's main setting over all tasks, averaged over seeds (with sd)."""
    main = scores[scores["main"].astype(bool) & (scores["task"] == "all")]
    columns = ["shift", "collapse", "s_other", "ratio_shift", "vision_ratio", "agreeing_accuracy", "agreeing_change", "strength"]
    return _mean_sd(main, ["model", "method", "direction"], columns)


def main_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Methods × models, both directions: shift, collapse and agreeing accuracy at each method's main setting."""
    points = main_points(scores)
    wide = []
    for direction in DIRECTIONS:
        part = points[points["direction"] == direction].drop(columns="direction").set_index(["model", "method"])
        keep = ["shift", "shift_sd", "collapse", "collapse_sd", "s_other", "agreeing_accuracy", "agreeing_accuracy_sd", "strength"]
        wide.append(part[keep].add_prefix(f"{direction}."))
    table = pd.concat(wide, axis=1).reset_index()
    table.insert(2, "label", table["method"].map(METHOD_LABELS))
    table.insert(3, "seeds", points.groupby(["model", "method"])["seeds"].max().reindex(
        pd.MultiIndex.from_frame(table[["model", "method"]])).to_numpy())
    order = {method: rank for rank, method in enumerate(METHOD_ORDER)}
    return table.sort_values(["model", "method"], key=lambda c: c.map(order) if c.name == "method" else c).reset_index(drop=True)


def collapse_at_shift(curve: pd.DataFrame, shift: float) -> float:
    """Collapse at ``shift`` along a strength curve (rows sorted by strength, from (0, 0)); NaN if never reached."""
    if not (math.isfinite(shift) and shift > 0):
        return math.nan
    shifts = np.concatenate([[0.0], curve["shift"].to_numpy(dtype=float)])
    collapses = np.concatenate([[0.0], curve["collapse"].to_numpy(dtype=float)])
    for k in range(1, len(shifts)):
        low, high = shifts[k - 1], shifts[k]
        if min(low, high) <= shift <= max(low, high):
            if high == low:
                return float(min(collapses[k - 1], collapses[k]))
            weight = (shift - low) / (high - low)
            return float(collapses[k - 1] + weight * (collapses[k] - collapses[k - 1]))
    return math.nan


def matched_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model and direction: AMPS's shift and collapse, and each other method's collapse at that shift (mean ± sd over seeds)."""
    whole = scores[scores["task"] == "all"]
    rows = []
    for (model, direction), part in whole.groupby(["model", "direction"], sort=True):
        amps = part[(part["method"] == "amps") & (part["multiplier"] == 1.0)]
        for seed, amps_row in amps.set_index("seed").iterrows():
            row = {"model": model, "direction": direction, "seed": seed,
                   "amps_shift": amps_row["shift"], "amps_collapse": amps_row["collapse"]}
            for method in COMPARED:
                curve = part[part["method"] == method]
                if method in ("l2s",):
                    curve = curve[curve["seed"] == seed]
                curve = curve.sort_values("strength")
                at = collapse_at_shift(curve, amps_row["shift"])
                row[f"{method}_collapse_at_shift"] = at
                row[f"{method}_minus_amps"] = at - amps_row["collapse"]
                row[f"{method}_max_shift"] = float(curve["shift"].max()) if len(curve) else math.nan
            rows.append(row)
    per_seed = pd.DataFrame(rows)
    if per_seed.empty:
        return per_seed
    columns = [column for column in per_seed.columns if column not in ("model", "direction", "seed")]
    table = _mean_sd(per_seed, ["model", "direction"], columns)
    # Means skip seeds whose shift a method never reaches: say over how many seeds each comparison holds.
    reached = per_seed.groupby(["model", "direction"], sort=False)[[f"{method}_minus_amps" for method in COMPARED]].count()
    reached.columns = [f"{method}_seeds_matched" for method in COMPARED]
    return table.merge(reached.reset_index(), on=["model", "direction"])


def scale_table(main: pd.DataFrame, parameters: pd.Series, matched: pd.DataFrame) -> pd.DataFrame:
    """Models by size: per direction, each method's shift and collapse, and AMPS's advantages at matched shift."""
    rows = []
    for model in parameters.sort_values().index:
        for direction in DIRECTIONS:
            row = {"model": model, "parameters": int(parameters[model]), "direction": direction}
            part = main[main["model"] == model].set_index("method")
            for method in ["mean", "l2s", "amps", "amps_online", "p2s"]:
                if method in part.index:
                    row[f"{method}.shift"] = part.loc[method, f"{direction}.shift"]
                    row[f"{method}.collapse"] = part.loc[method, f"{direction}.collapse"]
            matched_row = matched[(matched["model"] == model) & (matched["direction"] == direction)]
            for method in ("mean", "l2s"):
                column = f"{method}_minus_amps"
                row[f"amps_vs_{method}_at_matched_shift"] = matched_row[column].iloc[0] if len(matched_row) else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


SELECTION_COLUMNS = [
    "model", "direction", "method", "layer", "estimator", "strength", "strength_shift", "strength_collapse",
    "strength_within_bound", "sensitivity_correlation", "beta_sign", "amps_strength", "beta_units", "anchor_quantile",
    "beta", "r_anchor", "validation_shift", "validation_collapse", "scaling_within_bound", "records_reacting",
    "records_without_mcr", "train_mcr_sd",
]


def selection_table(selections: dict[str, dict]) -> pd.DataFrame:
    """The validation choices of every model: per direction and family, strength, sensitivity sign, β and r_anchor.

    ``method`` names the family's scaled method: ``amps`` (prompt vectors; its unscaled strength is
    Learn-to-Steer's and prompt-to-steer's) or ``amps_online`` (the mean vector; its unscaled
    strength is mean steering's main setting).
    """
    rows = []
    for model, chosen in sorted(selections.items()):
        for direction in DIRECTIONS:
            for family, method in (("module", "amps"), ("online", "amps_online")):
                choice = chosen[direction][family]
                rows.append({"model": model, "direction": direction, "method": method, "layer": chosen["layer"],
                             "estimator": chosen["estimator"], "train_mcr_sd": chosen["train_mcr_sd"], **choice})
    # An undefined correlation is null in the JSON: a missing number here.
    table = pd.DataFrame(rows).fillna({"sensitivity_correlation": math.nan})
    table["sensitivity_correlation"] = table["sensitivity_correlation"].astype(float)
    return table[SELECTION_COLUMNS]


def ablation_table(ablations: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Shift and collapse of every ablation variant against the same unsteered answers."""
    if ablations.empty:
        return pd.DataFrame()
    direction = ablations["direction"].iloc[0]
    model = ablations["model"].iloc[0]
    baseline = baseline[baseline["model"] == model]
    if baseline.empty:
        raise ValueError(f"no baseline answers of the ablation model {model!r} to take shift and collapse against")
    keys = ["family", "value", "method"]
    metrics = _conflict_metrics(ablations.assign(condition="conflict"), keys)
    unsteered = _conflict_metrics(baseline_as_points(baseline).query("condition == 'conflict' and direction == @direction")
                                  .assign(family="", value="", method="none"), keys).iloc[0]
    target = "record_vision" if direction == "to_vision" else "record_text"
    metrics["shift"] = metrics[target] - unsteered[target]
    metrics["collapse"] = metrics["s_other"] - unsteered["s_other"]
    described = ablations.groupby(keys)[["chosen", "beta", "r_anchor", "strength", "layer", "samples", "mc_seed_offset",
                                         "estimator", "vector", "validation_loss"]].first().reset_index()
    table = metrics.merge(described, on=keys)
    table.insert(0, "model", model)
    table.insert(1, "direction", direction)
    family_order = {name: rank for rank, name in enumerate(["beta", "anchor", "layer", "samples", "estimator", "vector"])}
    table["family_rank"] = table["family"].map(family_order)
    # Numeric values (β units, quantiles, layers) in numeric order; the others as text.
    table["value_number"] = pd.to_numeric(table["value"], errors="coerce")
    table = table.sort_values(["family_rank", "method", "value_number", "value"])
    return table[["model", "direction", "family", "value", "method", "chosen", "shift", "collapse", "s_other", "vision_ratio",
                  "rate_a", "beta", "r_anchor", "strength", "layer", "samples", "mc_seed_offset", "estimator", "vector",
                  "validation_loss", "n_records"]].reset_index(drop=True)


# ----------------------------------------------------------------------------- rendering


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
            cells = [f"{cell} ± {s:.3f}" if cell and isinstance(s, float) and math.isfinite(s) and s > 0 else cell
                     for cell, s in zip(cells, sd)]
        shown[column] = cells
    return shown


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of the display cells."""
    shown = display_frame(frame)
    lines = ["| " + " | ".join(shown.columns) + " |", "| " + " | ".join("---" for _ in shown.columns) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(character, character) for character in text)


def to_latex(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs LaTeX table of the display cells."""
    shown = display_frame(frame)
    header = " & ".join(_latex_escape(column) for column in shown.columns) + r" \\"
    body = [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in shown.itertuples(index=False)]
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{_latex_escape(caption)}}}",
        r"\begin{tabular}{" + "l" * len(shown.columns) + "}", r"\toprule", header, r"\midrule", *body,
        r"\bottomrule", r"\end{tabular}", r"\end{table}",
    ]) + "\n"


def write_report_table(csv_path: str, frame: pd.DataFrame, caption: str) -> None:
    """Write ``frame`` as CSV at ``csv_path`` and as Markdown (.md) and LaTeX (.tex) beside it."""
    path = Path(csv_path)
    write_table(path, frame)
    write_text(path.with_suffix(".md"), f"{caption}\n\n{to_markdown(frame)}")
    write_text(path.with_suffix(".tex"), to_latex(frame, caption))


# ----------------------------------------------------------------------------- CLI


def _paths(value: str) -> list[str]:
    return [path for path in value.split(",") if path]


def summarize_amps(
    settings: dict, answers: str, baselines: str, selections: str, ablations: str,
    scores: str, main: str, scale: str, matched: str, selection: str, ablation: str,
) -> None:
    """CLI step: every AMPS table from the steered answers, baselines, validation choices and ablations.

    ``answers``, ``baselines``, ``selections`` and ``ablations`` are comma-separated paths; the
    selection files follow ``settings["models"]``. Each table path is a CSV; Markdown and LaTeX
    are written beside it.
    """
    run = settings["run_name"]
    baseline = pd.concat([read_table(path) for path in _paths(baselines)], ignore_index=True)
    steered = pd.concat([read_table(path) for path in _paths(answers)], ignore_index=True)
    parameters = steered.groupby("model")["parameters"].first()
    everything = pd.concat([baseline_as_points(baseline), steered.drop(columns=["layer", "parameters"])], ignore_index=True)
    table = point_scores(everything)
    write_table(scores, table.assign(run=run))
    main_frame = main_table(table)
    matched_frame = matched_table(table)
    chosen = {model: read_json(path) for model, path in zip(settings["models"], _paths(selections))}
    ablation_answers = pd.concat([read_table(path) for path in _paths(ablations)], ignore_index=True) if _paths(ablations) else pd.DataFrame()
    ablation_frame = ablation_table(ablation_answers, baseline)
    label = f"({run}, {settings['benchmark_label']})"
    write_report_table(main, main_frame.assign(run=run),
                       f"Shift and collapse at each method's main setting, both directions {label}")
    write_report_table(scale, scale_table(main_frame, parameters, matched_frame).assign(run=run),
                       f"Steering across model scales {label}")
    write_report_table(matched, matched_frame.assign(run=run),
                       f"Collapse of each method at AMPS's shift (other minus AMPS; mean ± sd over seeds) {label}")
    write_report_table(selection, selection_table(chosen).assign(run=run),
                       f"Validation choices: strength, sensitivity correlation, sign of beta, beta and r_anchor {label}")
    write_report_table(ablation, ablation_frame.assign(run=run),
                       f"Ablations on {settings['ablation_model']} {label}")
    log.info("main table:\n%s", to_markdown(main_frame))
    log.info("matched shift:\n%s", to_markdown(matched_frame))
