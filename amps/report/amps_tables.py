"""AMPS's comparison tables: scales, matched shift, collapse budgets, validation choices and ablations, from the
point scores of :mod:`amps.report.amps_scores`.

Every comparison reads measured points of each method's strength curve (:mod:`amps.method.curves`):

* matched shift (``amps_matched``): for each AMPS seed, every other method's collapse where its
  curve first reaches AMPS's shift, interpolated between the two measured neighbours that bracket
  it (both are reported); ``other − AMPS`` is positive where AMPS collapses less for the same shift.
  A method whose curve never reaches AMPS's shift gets NaN there and its largest shift is listed;
* collapse budgets (``amps_budget``): the largest measured shift of each method with collapse
  within each budget of ``amps.collapse_budgets``, the strength it took, and whether the curve is
  resolved (neighbours within ``amps.curve.tolerance``) where it is read.
"""

from __future__ import annotations

import math

import pandas as pd

from amps.method.curves import Curve, CurvePoint, CurveSettings
from amps.metrics import conflict_metrics
from amps.report.amps_scores import baseline_as_points, mean_sd
from amps.vocabulary import (
    ABLATION_FAMILIES,
    COMPARED,
    CURVE_METHODS,
    DIRECTIONS,
    LEARNED,
    METHOD_LABELS,
    SELECTED,
    TABLE_METHODS,
)


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
    empty = {
        "collapse": math.nan,
        "collapse_low": math.nan,
        "collapse_high": math.nan,
        "strength_low": math.nan,
        "strength_high": math.nan,
    }
    if not (math.isfinite(shift) and shift > 0):
        return empty
    shifts, collapses, strengths = (curve[column].to_numpy(dtype=float) for column in ("shift", "collapse", "strength"))
    for k in range(1, len(shifts)):
        low, high = shifts[k - 1], shifts[k]
        if low <= shift <= high and high > low:
            weight = (shift - low) / (high - low)
            return {
                "collapse": float(collapses[k - 1] + weight * (collapses[k] - collapses[k - 1])),
                "collapse_low": float(collapses[k - 1]),
                "collapse_high": float(collapses[k]),
                "strength_low": float(strengths[k - 1]),
                "strength_high": float(strengths[k]),
            }
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
            row = {
                "model": model,
                "direction": direction,
                "seed": seed,
                "amps_shift": amps_row["shift"],
                "amps_collapse": amps_row["collapse"],
            }
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
    table = mean_sd(per_seed, ["model", "direction"], columns)
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
        measured = Curve(
            [CurvePoint(*values) for values in curve[["strength", "shift", "collapse"]].itertuples(index=False)], settings
        )
        row = {
            "model": model,
            "direction": direction,
            "method": method,
            "seed": seed,
            "points": measured.measured,
            "resolved": measured.resolved,
        }
        for budget in budgets:
            row[f"shift_within_{budget:g}"], row[f"strength_within_{budget:g}"] = within_budget(curve, budget)
        rows.append(row)
    per_seed = pd.DataFrame(rows)
    columns = [column for column in per_seed.columns if column.startswith(("shift_within", "strength_within"))]
    table = mean_sd(per_seed, ["model", "direction", "method"], columns + ["points"])
    resolved = per_seed.groupby(["model", "direction", "method"], sort=False)["resolved"].sum().rename("curves_resolved")
    table = table.merge(resolved.reset_index(), on=["model", "direction", "method"])
    table.insert(3, "label", table["method"].map(METHOD_LABELS))
    order = {method: rank for rank, method in enumerate(TABLE_METHODS)}
    return table.sort_values(
        ["model", "direction", "method"], key=lambda c: c.map(order) if c.name == "method" else c
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
    "model",
    "direction",
    "method",
    "seed",
    "layer",
    "estimator",
    "strength",
    "validation_shift",
    "validation_collapse",
    "within_bound",
    "at_grid_edge",
    "scaling",
    "link",
    "sensitivity_correlation",
    "sensitivity_low",
    "sensitivity_high",
    "beta_sign",
    "beta_units",
    "anchor_quantile",
    "beta",
    "r_anchor",
    "max_factor",
    "normaliser",
    "factor_mean",
    "factor_sd",
    "factor_min",
    "factor_p10",
    "factor_median",
    "factor_p90",
    "factor_max",
    "factor_share_zero",
    "factor_share_bound",
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
                    extra = {
                        "scaling": scaled["name"],
                        "link": link_text(sign),
                        "sensitivity_correlation": sign["correlation"],
                        "sensitivity_low": sign["low"],
                        "sensitivity_high": sign["high"],
                        "beta_sign": sign["sign"],
                        **{key: scaled[key] for key in SELECTION_COLUMNS if key in scaled},
                    }
                for entry in choice["seeds"]:
                    rows.append(
                        {
                            "model": model,
                            "direction": direction,
                            "method": method,
                            "seed": entry["seed"],
                            "layer": chosen["layer"],
                            "estimator": chosen["estimator"],
                            "train_mcr_sd": chosen["train_mcr_sd"],
                            "strength": entry["strength"],
                            "validation_shift": entry["shift"],
                            "validation_collapse": entry["collapse"],
                            "within_bound": entry["within_bound"],
                            "at_grid_edge": entry["at_grid_edge"],
                            **extra,
                        }
                    )
    # An undefined correlation is null in the JSON: a missing number here.
    table = pd.DataFrame(rows).reindex(columns=SELECTION_COLUMNS)
    for column in ("sensitivity_correlation", "sensitivity_low", "sensitivity_high"):
        table[column] = table[column].astype(float)
    return table


#: What sets an ablation variant apart (beside its family, value and method), in the ablation table's order.
ABLATION_SETTINGS = [
    "beta",
    "r_anchor",
    "strength",
    "layer",
    "samples",
    "mc_seed_offset",
    "estimator",
    "vector",
    "validation_loss",
]


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
    metrics = conflict_metrics(ablations.assign(condition="conflict"), keys)
    unsteered = conflict_metrics(
        baseline_as_points(baseline)
        .query("condition == 'conflict' and direction == @direction")
        .assign(family="", value="", method="none"),
        keys,
    ).iloc[0]
    target = "record_vision" if direction == "to_vision" else "record_text"
    metrics["shift"] = metrics[target] - unsteered[target]
    metrics["collapse"] = metrics["s_other"] - unsteered["s_other"]
    described = ablations.groupby(keys)[["chosen", *ABLATION_SETTINGS]].first().reset_index()
    table = metrics.merge(described, on=keys)
    table.insert(0, "model", model)
    table.insert(1, "direction", direction)
    family_order = {name: rank for rank, name in enumerate(ABLATION_FAMILIES)}
    table["family_rank"] = table["family"].map(family_order)
    # Numeric values (β units, quantiles, layers) in numeric order; the others as text.
    table["value_number"] = pd.to_numeric(table["value"], errors="coerce")
    table = table.sort_values(["family_rank", "method", "value_number", "value"])
    return table[
        [
            "model",
            "direction",
            "family",
            "value",
            "method",
            "chosen",
            "shift",
            "collapse",
            "s_other",
            "vision_ratio",
            "rate_a",
            *ABLATION_SETTINGS,
            "n_records",
        ]
    ].reset_index(drop=True)
