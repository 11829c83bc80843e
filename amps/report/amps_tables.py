"""AMPS's tables: scores of every measured point, the main table, scales, matched shift, collapse budgets, selection, ablations.

Definitions (per model, direction and task; "target" is the direction's modality):

* ``shift``: the share of records that follow the target in both option orders, minus that share
  without steering (the record-level view: a letter pushed to one side never counts as a shift);
* ``ratio_shift``: the pooled vision ratio's change toward the target (sign flipped for ``to_text``);
* ``s_other`` (collapse) and ``collapse``: S_other pooled over both orders, and its increase over
  no steering;
* ``agreeing_accuracy``: the share of agreeing-control answers that name the (true) image answer,
  measured at each method's main (validation-chosen) setting, and ``agreeing_change`` against no
  steering.

Every comparison reads measured points of each method's strength curve (:mod:`amps.method.curves`):

* matched shift (``amps_matched``): for each AMPS seed, every other method's collapse where its
  curve first reaches AMPS's shift, interpolated between the two measured neighbours that bracket
  it (both are reported); ``other − AMPS`` is positive where AMPS collapses less for the same shift.
  A method whose curve never reaches AMPS's shift gets NaN there and its largest shift is listed;
* collapse budgets (``amps_budget``): the largest measured shift of each method with collapse
  within each budget of ``amps.collapse_budgets``, the strength it took, and whether the curve is
  resolved (neighbours within ``amps.curve.tolerance``) where it is read.

Every table is written as CSV (numbers) and, beside it, as Markdown and LaTeX (mean ± sd over
seeds where there are several).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from amps.method.curves import Curve, CurvePoint, CurveSettings
from amps.core.io import read_json, read_table, write_table, write_text
from amps.report.scoring import record_choices
from amps.vocabulary import ABLATION_FAMILIES, COMPARED, CURVE_METHODS, DIRECTIONS, LEARNED, METHOD_LABELS, SELECTED, TABLE_METHODS

log = logging.getLogger(__name__)

POINT_KEYS = ["model", "method", "direction", "seed", "strength"]


# ----------------------------------------------------------------------------- scores


def baseline_as_points(baseline: pd.DataFrame) -> pd.DataFrame:
    """The baseline's uninstructed and agreeing answers as the ``none`` method, listed under both directions."""
    kept = baseline[baseline["condition"].isin(["none", "agreeing"])]
    kept = kept.assign(condition=kept["condition"].replace({"none": "conflict"}), method="none", seed=0,
                       strength=0.0, main=True)
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
    """Scores of every (model, method, direction, seed, strength) per task and overall.

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
    order = {method: rank for rank, method in enumerate(TABLE_METHODS)}
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
    order = {method: rank for rank, method in enumerate(TABLE_METHODS)}
    return table.sort_values(["model", "method"], key=lambda c: c.map(order) if c.name == "method" else c).reset_index(drop=True)


def curve_of(scores: pd.DataFrame) -> pd.DataFrame:
    """One method's measured curve (one seed, all tasks) from its point scores: strength, shift, collapse, from no steering."""
    curve = scores[["strength", "shift", "collapse"]].sort_values("strength")
    origin = pd.DataFrame({"strength": [0.0], "shift": [0.0], "collapse": [0.0]})
    return pd.concat([origin, curve[curve["strength"] > 0]], ignore_index=True)


def crossing(curve: pd.DataFrame, shift: float) -> dict[str, float]:
    """Where a curve first reaches ``shift``: the bracketing measured neighbours and the collapse between them.

    ``curve`` is :func:`curve_of`'s (from no steering, by strength). The collapse is interpolated
    linearly in shift between the two neighbours; NaN everywhere if the curve never reaches it.
    """
    empty = {"collapse": math.nan, "collapse_low": math.nan, "collapse_high": math.nan,
             "strength_low": math.nan, "strength_high": math.nan}
    if not (math.isfinite(shift) and shift > 0):
        return empty
    shifts, collapses, strengths = (curve[column].to_numpy(dtype=float) for column in ("shift", "collapse", "strength"))
    for k in range(1, len(shifts)):
        low, high = shifts[k - 1], shifts[k]
        if low <= shift <= high and high > low:
            weight = (shift - low) / (high - low)
            return {"collapse": float(collapses[k - 1] + weight * (collapses[k] - collapses[k - 1])),
                    "collapse_low": float(collapses[k - 1]), "collapse_high": float(collapses[k]),
                    "strength_low": float(strengths[k - 1]), "strength_high": float(strengths[k])}
    return empty


def matched_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model and direction: AMPS's main shift and collapse, and each other method's collapse at that shift.

    Read between measured neighbours (:func:`crossing`), per AMPS seed against the same seed of the
    seeded methods; mean ± sd over seeds.
    """
    whole = scores[scores["task"] == "all"]
    rows = []
    for (model, direction), part in whole.groupby(["model", "direction"], sort=True):
        amps = part[(part["method"] == "amps") & part["main"].astype(bool)]
        for seed, amps_row in amps.set_index("seed").iterrows():
            row = {"model": model, "direction": direction, "seed": seed,
                   "amps_shift": amps_row["shift"], "amps_collapse": amps_row["collapse"]}
            for method in COMPARED:
                points = part[part["method"] == method]
                if method in LEARNED:
                    points = points[points["seed"] == seed]
                at = crossing(curve_of(points), amps_row["shift"])
                row[f"{method}_collapse_at_shift"] = at["collapse"]
                row[f"{method}_collapse_low"] = at["collapse_low"]
                row[f"{method}_collapse_high"] = at["collapse_high"]
                row[f"{method}_minus_amps"] = at["collapse"] - amps_row["collapse"]
                row[f"{method}_max_shift"] = float(points["shift"].max()) if len(points) else math.nan
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


def within_budget(curve: pd.DataFrame, budget: float) -> tuple[float, float]:
    """The largest measured shift with collapse within ``budget`` along a curve (from no steering), and its strength."""
    allowed = curve[curve["collapse"] <= budget + 1e-12]
    best = allowed.sort_values(["shift", "strength"], ascending=[False, True]).iloc[0]
    return float(best["shift"]), float(best["strength"])


def budget_table(scores: pd.DataFrame, budgets: list[float], settings: CurveSettings) -> pd.DataFrame:
    """Per model, direction and method: the largest measured shift within each collapse budget (mean ± sd over seeds).

    Also each curve's measured points and whether it is resolved (neighbours within the tolerance
    where it is read; fewer than all seeds resolved is shown as the count).
    """
    whole = scores[(scores["task"] == "all") & scores["method"].isin(CURVE_METHODS)]
    rows = []
    for (model, direction, method, seed), points in whole.groupby(["model", "direction", "method", "seed"], sort=True):
        curve = curve_of(points)
        measured = Curve([CurvePoint(*values) for values in curve[["strength", "shift", "collapse"]].itertuples(index=False)],
                         settings)
        row = {"model": model, "direction": direction, "method": method, "seed": seed,
               "points": measured.measured, "resolved": measured.resolved}
        for budget in budgets:
            row[f"shift_within_{budget:g}"], row[f"strength_within_{budget:g}"] = within_budget(curve, budget)
        rows.append(row)
    per_seed = pd.DataFrame(rows)
    columns = [column for column in per_seed.columns if column.startswith(("shift_within", "strength_within"))]
    table = _mean_sd(per_seed, ["model", "direction", "method"], columns + ["points"])
    resolved = per_seed.groupby(["model", "direction", "method"], sort=False)["resolved"].sum().rename("curves_resolved")
    table = table.merge(resolved.reset_index(), on=["model", "direction", "method"])
    table.insert(3, "label", table["method"].map(METHOD_LABELS))
    order = {method: rank for rank, method in enumerate(TABLE_METHODS)}
    return table.sort_values(["model", "direction", "method"], key=lambda c: c.map(order) if c.name == "method" else c
                             ).reset_index(drop=True)


def scale_table(main: pd.DataFrame, parameters: pd.Series, matched: pd.DataFrame) -> pd.DataFrame:
    """Models by size: per direction, each method's shift and collapse, and AMPS's advantages at matched shift."""
    rows = []
    for model in parameters.sort_values().index:
        for direction in DIRECTIONS:
            row = {"model": model, "parameters": int(parameters[model]), "direction": direction}
            part = main[main["model"] == model].set_index("method")
            for method in CURVE_METHODS:
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
    "model", "direction", "method", "seed", "layer", "estimator", "strength", "validation_shift", "validation_collapse",
    "within_bound", "at_grid_edge", "scaling", "link", "sensitivity_correlation", "sensitivity_low", "sensitivity_high",
    "beta_sign", "beta_units", "anchor_quantile", "beta", "r_anchor", "max_factor", "normaliser", "factor_mean", "factor_sd",
    "factor_min", "factor_p10", "factor_median", "factor_p90", "factor_max", "factor_share_zero", "factor_share_bound",
    "train_mcr_sd",
]


def link_text(sign: dict) -> str:
    """The sign test in words: which way the significant link goes, or that there is none."""
    if not sign["significant"]:
        return f"no significant link (under {METHOD_LABELS[sign['source']]}): beta = 0"
    return f"{'positive' if sign['sign'] > 0 else 'negative'} link (under {METHOD_LABELS[sign['source']]})"


def selection_table(selections: dict[str, dict]) -> pd.DataFrame:
    """Every method's validation choice per model, direction and seed: its strength and validation shift and collapse.

    AMPS and AMPS-online add their scaling: the sign test (Spearman's ρ of MCR with the reaction
    strength under the unscaled method, its bootstrap interval, and the link it sets), β, r_anchor,
    their units, and the distribution of the factors over the steering-training records.
    """
    rows = []
    for model, chosen in sorted(selections.items()):
        for direction in DIRECTIONS:
            for method in SELECTED:
                choice = chosen[direction][method]
                extra = {}
                if "scaling" in choice:
                    scaled, sign = choice["scaling"], choice["sign"]
                    extra = {"scaling": scaled["name"], "link": link_text(sign), "sensitivity_correlation": sign["correlation"],
                             "sensitivity_low": sign["low"], "sensitivity_high": sign["high"], "beta_sign": sign["sign"],
                             **{key: scaled[key] for key in SELECTION_COLUMNS if key in scaled}}
                for entry in choice["seeds"]:
                    rows.append({"model": model, "direction": direction, "method": method, "seed": entry["seed"],
                                 "layer": chosen["layer"], "estimator": chosen["estimator"], "train_mcr_sd": chosen["train_mcr_sd"],
                                 "strength": entry["strength"], "validation_shift": entry["shift"],
                                 "validation_collapse": entry["collapse"], "within_bound": entry["within_bound"],
                                 "at_grid_edge": entry["at_grid_edge"], **extra})
    # An undefined correlation is null in the JSON: a missing number here.
    table = pd.DataFrame(rows).reindex(columns=SELECTION_COLUMNS)
    for column in ("sensitivity_correlation", "sensitivity_low", "sensitivity_high"):
        table[column] = table[column].astype(float)
    return table


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
    family_order = {name: rank for rank, name in enumerate(ABLATION_FAMILIES)}
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
    scores: str, main: str, scale: str, matched: str, budget: str, selection: str, ablation: str,
) -> None:
    """CLI step: every AMPS table from the steered answers, baselines, validation choices and ablations.

    ``answers``, ``baselines``, ``selections`` and ``ablations`` are comma-separated paths; the
    selection files follow ``settings["models"]``. Each table path is a CSV; Markdown and LaTeX
    are written beside it. ``settings``: ``run_name``, ``benchmark_label``, ``models``,
    ``ablation_model``, ``collapse_budgets`` and ``curve`` (the config's ``amps.curve``).
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
    curve = CurveSettings.from_config(settings["curve"])
    budget_frame = budget_table(table, settings["collapse_budgets"], curve)
    chosen = {model: read_json(path) for model, path in zip(settings["models"], _paths(selections))}
    ablation_answers = pd.concat([read_table(path) for path in _paths(ablations)], ignore_index=True) if _paths(ablations) else pd.DataFrame()
    ablation_frame = ablation_table(ablation_answers, baseline)
    label = f"({run}, {settings['benchmark_label']})"
    write_report_table(main, main_frame.assign(run=run),
                       f"Shift and collapse at each method's validation-chosen strength, both directions {label}")
    write_report_table(scale, scale_table(main_frame, parameters, matched_frame).assign(run=run),
                       f"Steering across model scales {label}")
    write_report_table(matched, matched_frame.assign(run=run),
                       "Collapse of each method where its measured curve reaches AMPS's shift, between the bracketing "
                       f"measured points (other minus AMPS; mean ± sd over seeds) {label}")
    write_report_table(budget, budget_frame.assign(run=run),
                       f"Largest measured shift of each method with collapse within each budget; curves of at most "
                       f"{curve.max_points} points, resolved where neighbours differ by at most {curve.tolerance:g} "
                       f"(curves_resolved counts the seeds) {label}")
    write_report_table(selection, selection_table(chosen).assign(run=run),
                       f"Validation choices: each method's strength from its own validation outputs; AMPS's link, beta, "
                       f"r_anchor and factors {label}")
    write_report_table(ablation, ablation_frame.assign(run=run),
                       f"Ablations on {settings['ablation_model']} {label}")
    log.info("main table:\n%s", to_markdown(main_frame))
    log.info("matched shift:\n%s", to_markdown(matched_frame))
    log.info("collapse budgets:\n%s", to_markdown(budget_frame))
