"""AMPS's tables: shift and collapse against no steering, seeds, measured strength curves (matched shift, collapse
budgets), validation choices, Markdown and LaTeX."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from amps.method.curves import CurveSettings
from amps.report.amps_scores import baseline_as_points, main_table, point_scores
from amps.report.amps_tables import (
    SELECTION_COLUMNS,
    budget_table,
    crossing,
    curve_of,
    matched_table,
    selection_table,
    within_budget,
)
from amps.report.render import to_latex, to_markdown

# vision_first: A = vision answer; text_first: A = text answer.
LETTER = {
    ("vision", "vision_first"): "A",
    ("text", "vision_first"): "B",
    ("vision", "text_first"): "B",
    ("text", "text_first"): "A",
    ("other", "vision_first"): "",
    ("other", "text_first"): "",
}
CODE = {"V": "vision", "T": "text", "O": "other"}


def _choices(text: str) -> dict[str, tuple[str, str]]:
    """Records r1..r4, each as two letters: the choice with the vision answer first, then with the text answer first."""
    return {f"r{k}": (CODE[pair[0]], CODE[pair[1]]) for k, pair in enumerate(text.split(), start=1)}


def _rows(
    method: str, direction: str, seed: int, strength: float, main: bool, condition: str, choices: dict[str, tuple[str, str]]
) -> list[dict]:
    rows = []
    for record, pair in choices.items():
        for order, choice in zip(("vision_first", "text_first"), pair):
            rows.append(
                {
                    "model": "m",
                    "method": method,
                    "direction": direction,
                    "seed": seed,
                    "strength": strength,
                    "main": main,
                    "condition": condition,
                    "record_id": record,
                    "task": "color",
                    "order": order,
                    "answer": choice,
                    "letter": LETTER[(choice, order)],
                    "choice": choice,
                }
            )
    return rows


#: No steering: r3 follows the image in both orders, r4 names no option once (S_other 1/8).
UNSTEERED = "TT TT VV TO"


def _baseline() -> pd.DataFrame:
    rows = []
    for condition, choices in (("none", UNSTEERED), ("agreeing", "VV VV VV VT"), ("image", "VV VV VV VV")):
        for row in _rows("x", "x", 0, 0.0, True, condition, _choices(choices)):
            rows.append(
                {key: row[key] for key in ("model", "record_id", "task", "condition", "order", "answer", "letter", "choice")}
            )
    return pd.DataFrame(rows)


#: Each method's measured curve toward vision: (seed, strength, main, conflict answers). Comments: (shift, collapse).
CURVES = {
    "amps": [
        (0, 1.0, False, "TT TT VV TO"),  # (0, 0)
        (0, 2.0, True, "VV VT VV TO"),  # (0.25, 0): r2 follows the image in one order only, no shift
        (0, 4.0, False, "VV VV VV OO"),  # (0.5, 0.125)
        (1, 1.0, False, "VV TT VV TO"),  # (0.25, 0)
        (1, 2.0, True, "VV VV VV TO"),  # (0.5, 0)
    ],
    "l2s": [
        (0, 1.0, False, "TT TT VV TO"),  # (0, 0)
        (0, 2.0, True, "VV VV VV OO"),  # (0.5, 0.125)
        (1, 1.0, True, "VV OT VV OO"),  # (0.25, 0.25)
        (1, 2.0, False, "VV VV VV TO"),  # (0.5, 0)
    ],
    "mean": [
        (0, 0.5, False, "TT TO VV TO"),  # (0, 0.125)
        (0, 1.0, True, "VV VO VV OO"),  # (0.25, 0.25)
        (0, 2.0, False, "VV VV VO OO"),  # (0.25, 0.25): never reaches 0.5
    ],
    "amps_online": [
        (0, 1.0, False, "VV OO VV TO"),  # (0.25, 0.25)
        (0, 2.0, True, "VV VV VV OO"),  # (0.5, 0.125)
    ],
    "p2s": [
        (0, 1.0, True, "VV VV VV OO"),  # (0.5, 0.125)
        (0, 2.0, False, "VV VV OO OO"),  # (0.25, 0.375)
    ],
}
#: Agreeing controls, asked at the main setting only.
AGREEING = {("amps", 0): "VV VV VT VV", ("amps", 1): "VV VV VT VV", ("mean", 0): "VV VV VV VV"}


def _steered() -> pd.DataFrame:
    rows = []
    for method, points in CURVES.items():
        for seed, strength, main, choices in points:
            rows += _rows(method, "to_vision", seed, strength, main, "conflict", _choices(choices))
            if main and (method, seed) in AGREEING:
                rows += _rows(method, "to_vision", seed, strength, main, "agreeing", _choices(AGREEING[(method, seed)]))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return point_scores(pd.concat([baseline_as_points(_baseline()), _steered()], ignore_index=True))


def _at(scores, method, seed=0, strength=None, task="all"):
    rows = scores[
        (scores["method"] == method) & (scores["direction"] == "to_vision") & (scores["task"] == task) & (scores["seed"] == seed)
    ]
    return rows if strength is None else rows[rows["strength"] == strength]


# ----------------------------------------------------------------------------- point scores


def test_shift_and_collapse_are_taken_against_no_steering(scores):
    none = _at(scores, "none").iloc[0]
    # One record of four follows the image in both orders; one answer of eight names no option.
    assert (none["record_target"], none["s_other"], none["shift"], none["collapse"]) == (0.25, 0.125, 0.0, 0.0)
    assert none["agreeing_accuracy"] == pytest.approx(7 / 8) and bool(none["main"])
    amps = _at(scores, "amps", 0, 2.0).iloc[0]
    # Record level: r1 and r3 follow the image in both orders; r2 only in one, which is no shift.
    assert amps["record_target"] == pytest.approx(0.5)
    assert amps["shift"] == pytest.approx(0.25) and amps["collapse"] == pytest.approx(0.0)
    # The pooled vision ratio does count r2's one-sided answer: 5/7 against 2/7 unsteered.
    assert amps["ratio_shift"] == pytest.approx(3 / 7)
    assert amps["agreeing_accuracy"] == pytest.approx(7 / 8) and amps["agreeing_change"] == pytest.approx(0.0)
    assert bool(amps["main"]) and not bool(_at(scores, "amps", 0, 4.0).iloc[0]["main"])
    assert _at(scores, "amps", 1, 2.0).iloc[0]["shift"] == pytest.approx(0.5)
    strong = _at(scores, "p2s", 0, 2.0).iloc[0]
    assert strong["shift"] == pytest.approx(0.25) and strong["s_other"] == pytest.approx(4 / 8)
    assert strong["collapse"] == pytest.approx(0.375)
    assert math.isnan(strong["agreeing_accuracy"])  # agreeing control only at the main setting
    assert _at(scores, "mean", 0, 1.0).iloc[0]["agreeing_change"] == pytest.approx(1 / 8)
    # Every measured point is scored, per task and over all tasks.
    assert len(_at(scores, "amps", 0)) == 3 and len(_at(scores, "amps", 0, task="color")) == 3
    assert _at(scores, "l2s", 1, 1.0, task="color").iloc[0]["collapse"] == pytest.approx(0.25)
    # to_text lists the same unsteered answers: two records follow the text in both orders.
    to_text = scores[(scores["method"] == "none") & (scores["direction"] == "to_text") & (scores["task"] == "all")]
    assert to_text["record_target"].iloc[0] == 0.5 and to_text["shift"].iloc[0] == 0.0


def test_point_scores_need_the_unsteered_reference():
    with pytest.raises(ValueError, match="unsteered reference"):
        point_scores(_steered())


def test_main_table_averages_seeds_with_their_spread(scores):
    table = main_table(scores).set_index("method")
    assert list(table.index) == ["none", "mean", "l2s", "amps", "amps_online", "p2s"]
    assert table.loc["amps", "to_vision.shift"] == pytest.approx(0.375)
    assert table.loc["amps", "to_vision.shift_sd"] == pytest.approx(pd.Series([0.25, 0.5]).std())
    assert table.loc["amps", "to_vision.collapse"] == 0.0 and table.loc["amps", "to_vision.collapse_sd"] == 0.0
    assert table.loc["amps", "to_vision.agreeing_accuracy"] == pytest.approx(7 / 8)
    # Learn-to-Steer's seeds chose different strengths: (0.5, 0.125) at 2 and (0.25, 0.25) at 1.
    assert table.loc["l2s", "to_vision.shift"] == pytest.approx(0.375)
    assert table.loc["l2s", "to_vision.collapse"] == pytest.approx(0.1875)
    assert table.loc["l2s", "to_vision.collapse_sd"] == pytest.approx(pd.Series([0.125, 0.25]).std())
    assert table.loc["l2s", "to_vision.strength"] == pytest.approx(1.5)
    assert math.isnan(table.loc["l2s", "to_vision.agreeing_accuracy"])
    assert table.loc["mean", "to_vision.shift"] == pytest.approx(0.25) and table.loc["mean", "to_vision.strength"] == 1.0
    assert table.loc["mean", "to_vision.agreeing_accuracy"] == 1.0
    assert table.loc["p2s", "to_vision.collapse"] == pytest.approx(0.125) and table.loc["p2s", "to_vision.shift_sd"] == 0.0
    assert table.loc["amps_online", "to_vision.strength"] == 2.0
    assert dict(table["seeds"]) == {"none": 1, "mean": 1, "l2s": 2, "amps": 2, "amps_online": 1, "p2s": 1}
    assert table.loc["amps", "label"] == "AMPS"
    # Only the unsteered reference is listed toward the text here.
    assert table.loc["none", "to_text.s_other"] == pytest.approx(0.125) and math.isnan(table.loc["amps", "to_text.shift"])


# ----------------------------------------------------------------------------- curves and crossings


def test_curve_of_starts_at_no_steering_in_strength_order(scores):
    curve = curve_of(_at(scores, "mean", 0))
    assert curve["strength"].tolist() == [0.0, 0.5, 1.0, 2.0]
    assert curve["shift"].tolist() == [0.0, 0.0, 0.25, 0.25]
    assert curve["collapse"].tolist() == [0.0, 0.125, 0.25, 0.25]
    # A measured point at strength 0 (or below) is replaced by the origin.
    extra = pd.DataFrame({"strength": [2.0, 0.0, 1.0], "shift": [0.4, 0.3, 0.2], "collapse": [0.1, 0.3, 0.0]})
    assert curve_of(extra).values.tolist() == [[0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [2.0, 0.4, 0.1]]


#: Non-monotone: the shift rises to 0.6, falls back to 0.4, rises again to 0.8.
CURVE = pd.DataFrame(
    {"strength": [0.0, 1.0, 2.0, 3.0, 4.0], "shift": [0.0, 0.2, 0.6, 0.4, 0.8], "collapse": [0.0, 0.04, 0.2, 0.1, 0.5]}
)


def test_crossing_interpolates_between_the_bracketing_neighbours():
    at = crossing(CURVE, 0.1)  # halfway from no steering to strength 1
    assert at == pytest.approx(
        {"collapse": 0.02, "collapse_low": 0.0, "collapse_high": 0.04, "strength_low": 0.0, "strength_high": 1.0}
    )
    at = crossing(CURVE, 0.3)  # a quarter of the way from 0.2 to 0.6
    assert at == pytest.approx(
        {"collapse": 0.04 + 0.25 * 0.16, "collapse_low": 0.04, "collapse_high": 0.2, "strength_low": 1.0, "strength_high": 2.0}
    )
    at = crossing(CURVE, 0.6)  # exactly a measured point
    assert at["collapse"] == pytest.approx(0.2) and (at["strength_low"], at["strength_high"]) == (1.0, 2.0)


def test_crossing_takes_the_first_crossing_of_a_non_monotone_curve():
    # 0.5 is reached between strengths 1 and 2 (collapse 0.04 + 0.75·0.16 = 0.16), and again between
    # 3 and 4 (0.1 + 0.25·0.4 = 0.2): the first one counts.
    at = crossing(CURVE, 0.5)
    assert at == pytest.approx(
        {"collapse": 0.16, "collapse_low": 0.04, "collapse_high": 0.2, "strength_low": 1.0, "strength_high": 2.0}
    )
    # 0.7 only after the dip: between 0.4 (strength 3) and 0.8 (strength 4).
    at = crossing(CURVE, 0.7)
    assert at == pytest.approx(
        {"collapse": 0.1 + 0.75 * 0.4, "collapse_low": 0.1, "collapse_high": 0.5, "strength_low": 3.0, "strength_high": 4.0}
    )


@pytest.mark.parametrize("shift", [0.9, 0.0, -0.1, math.nan])
def test_crossing_is_nan_when_never_reached_or_nothing_to_match(shift):
    at = crossing(CURVE, shift)
    assert set(at) == {"collapse", "collapse_low", "collapse_high", "strength_low", "strength_high"}
    assert all(math.isnan(value) for value in at.values())


def test_matched_table_reads_each_method_where_its_curve_reaches_amps_shift(scores):
    table = matched_table(scores)
    assert table[["model", "direction"]].values.tolist() == [["m", "to_vision"]]  # no AMPS toward the text here
    row = table.iloc[0]
    # AMPS seed 0: shift 0.25 at collapse 0; seed 1: shift 0.5 at collapse 0.
    assert row["amps_shift"] == pytest.approx(0.375) and row["amps_collapse"] == 0.0 and row["seeds"] == 2
    assert row["amps_shift_sd"] == pytest.approx(pd.Series([0.25, 0.5]).std())
    # Learn-to-Steer seed by seed. Seed 0 (0 at 1, 0.5 at 2): 0.25 halfway, collapse 0.0625 in [0, 0.125].
    # Seed 1 (0.25 at 1, 0.5 at 2): 0.5 at strength 2, collapse 0 in [0.25, 0].
    # (Seeds crossed would read 0.25 and 0.125.)
    assert row["l2s_collapse_at_shift"] == pytest.approx(0.03125)
    assert row["l2s_collapse_at_shift_sd"] == pytest.approx(pd.Series([0.0625, 0.0]).std())
    assert row["l2s_collapse_low"] == pytest.approx(0.125) and row["l2s_collapse_high"] == pytest.approx(0.0625)
    assert row["l2s_minus_amps"] == pytest.approx(0.03125) and row["l2s_max_shift"] == pytest.approx(0.5)
    assert row["l2s_seeds_matched"] == 2
    # Mean steering (one curve): 0.25 between strengths 0.5 (collapse 0.125) and 1 (0.25); never 0.5.
    assert row["mean_collapse_at_shift"] == pytest.approx(0.25) and row["mean_collapse_at_shift_sd"] == 0.0
    assert row["mean_collapse_low"] == pytest.approx(0.125) and row["mean_collapse_high"] == pytest.approx(0.25)
    assert row["mean_minus_amps"] == pytest.approx(0.25)
    assert row["mean_max_shift"] == pytest.approx(0.25) and row["mean_seeds_matched"] == 1
    # AMPS-online against both seeds: 0.25 at strength 1 (collapse 0.25 in [0, 0.25]); 0.5 at strength 2
    # (0.125 in [0.25, 0.125]).
    assert row["amps_online_collapse_at_shift"] == pytest.approx(0.1875)
    assert row["amps_online_collapse_low"] == pytest.approx(0.125)
    assert row["amps_online_collapse_high"] == pytest.approx(0.1875)
    assert row["amps_online_seeds_matched"] == 2
    # The oracle: 0.25 halfway to strength 1 (0.0625), 0.5 at strength 1 (0.125).
    assert row["p2s_collapse_at_shift"] == pytest.approx(0.09375)
    assert row["p2s_collapse_low"] == 0.0 and row["p2s_collapse_high"] == pytest.approx(0.125)
    assert row["p2s_minus_amps"] == pytest.approx(0.09375) and row["p2s_max_shift"] == pytest.approx(0.5)
    assert row["p2s_minus_amps_sd"] == pytest.approx(pd.Series([0.0625, 0.125]).std())


# ----------------------------------------------------------------------------- collapse budgets

SETTINGS = CurveSettings(tolerance=0.25, max_points=10, max_collapse=0.3, min_gap=0.01)
BUDGETS = [0.0, 0.05, 0.1]
#: (method, seed): [(strength, shift, collapse)] over all tasks, measured points only.
BUDGET_CURVES = {
    ("mean", 0): [(1.0, 0.1, 0.0), (2.0, 0.3, 0.05), (3.0, 0.4, 0.2)],
    # A tie at the largest shift within budget 0: the weaker strength.
    ("l2s", 0): [(1.0, 0.2, 0.0), (2.0, 0.2, 0.0), (3.0, 0.4, 0.1)],
    ("l2s", 1): [(1.0, 0.15, 0.02), (2.0, 0.3, 0.04), (4.0, 0.45, 0.12)],
    # The jump beyond strength 4 starts past amps.curve.max_collapse: not read, the curve is resolved.
    ("amps", 0): [(1.0, 0.2, 0.0), (2.0, 0.4, 0.02), (3.0, 0.6, 0.08), (4.0, 0.7, 0.32), (5.0, 0.1, 0.9)],
    ("amps", 1): [(1.0, 0.5, 0.01)],  # a jump of 0.5 from no steering
    ("amps_online", 0): [(2.0, 0.1, 0.05), (1.0, 0.05, 0.0)],
    ("p2s", 0): [(1.0, 0.3, 0.06), (2.0, 0.35, 0.1)],  # jump of 0.3 from no steering; 0.1 is within budget 0.1
}


def _budget_scores() -> pd.DataFrame:
    rows = [
        {
            "model": "m",
            "direction": "to_vision",
            "method": "none",
            "seed": 0,
            "strength": 0.0,
            "shift": 0.0,
            "collapse": 0.0,
            "task": "all",
        },
        # One task's point: the table reads all tasks only.
        {
            "model": "m",
            "direction": "to_vision",
            "method": "mean",
            "seed": 0,
            "strength": 1.5,
            "shift": 0.9,
            "collapse": 0.0,
            "task": "color",
        },
    ]
    for (method, seed), points in BUDGET_CURVES.items():
        rows += [
            {
                "model": "m",
                "direction": "to_vision",
                "method": method,
                "seed": seed,
                "strength": strength,
                "shift": shift,
                "collapse": collapse,
                "task": "all",
            }
            for strength, shift, collapse in points
        ]
    return pd.DataFrame(rows)


def test_within_budget_takes_the_largest_measured_shift_and_its_strength():
    curve = curve_of(pd.DataFrame(BUDGET_CURVES[("amps", 0)], columns=["strength", "shift", "collapse"]))
    assert within_budget(curve, 0.0) == (0.2, 1.0)
    assert within_budget(curve, 0.02) == (0.4, 2.0)  # collapse equal to the budget counts
    assert within_budget(curve, 0.1) == (0.6, 3.0)
    assert within_budget(curve, 1.0) == (0.7, 4.0)
    nothing = curve_of(pd.DataFrame({"strength": [1.0], "shift": [0.3], "collapse": [0.2]}))
    assert within_budget(nothing, 0.1) == (0.0, 0.0)  # only no steering is within the budget


def test_budget_table_reads_each_curve_within_each_budget():
    table = budget_table(_budget_scores(), BUDGETS, SETTINGS).set_index("method")
    assert list(table.index) == ["mean", "l2s", "amps", "amps_online", "p2s"]
    assert table.loc["amps", "label"] == "AMPS"
    expected = {  # method: (shift, strength) per budget 0, 0.05, 0.1
        "mean": [(0.1, 1.0), (0.3, 2.0), (0.3, 2.0)],
        "l2s": [((0.2 + 0.0) / 2, (1.0 + 0.0) / 2), ((0.2 + 0.3) / 2, (1.0 + 2.0) / 2), ((0.4 + 0.3) / 2, (3.0 + 2.0) / 2)],
        "amps": [((0.2 + 0.0) / 2, (1.0 + 0.0) / 2), ((0.4 + 0.5) / 2, (2.0 + 1.0) / 2), ((0.6 + 0.5) / 2, (3.0 + 1.0) / 2)],
        "amps_online": [(0.05, 1.0), (0.1, 2.0), (0.1, 2.0)],
        "p2s": [(0.0, 0.0), (0.0, 0.0), (0.35, 2.0)],
    }
    for method, values in expected.items():
        for budget, (shift, strength) in zip(["0", "0.05", "0.1"], values):
            assert table.loc[method, f"shift_within_{budget}"] == pytest.approx(shift), (method, budget)
            assert table.loc[method, f"strength_within_{budget}"] == pytest.approx(strength), (method, budget)
    assert table.loc["l2s", "shift_within_0_sd"] == pytest.approx(pd.Series([0.2, 0.0]).std())
    assert table.loc["amps", "shift_within_0.1_sd"] == pytest.approx(pd.Series([0.6, 0.5]).std())
    assert dict(table["points"]) == {"mean": 3, "l2s": 3, "amps": 3, "amps_online": 2, "p2s": 2}
    assert table.loc["amps", "points_sd"] == pytest.approx(pd.Series([5, 1]).std())
    assert dict(table["seeds"]) == {"mean": 1, "l2s": 2, "amps": 2, "amps_online": 1, "p2s": 1}
    # Resolved seeds: AMPS seed 1 jumps 0.5, the oracle 0.3 (tolerance 0.25); the others are resolved.
    assert dict(table["curves_resolved"]) == {"mean": 1, "l2s": 2, "amps": 1, "amps_online": 1, "p2s": 0}


# ----------------------------------------------------------------------------- validation choices


def _seed(seed: int, strength: float, shift: float, collapse: float, within: bool = True, edge: bool = False) -> dict:
    return {
        "seed": seed,
        "strength": strength,
        "within_bound": within,
        "shift": shift,
        "collapse": collapse,
        "at_grid_edge": edge,
    }


def _scaling(name: str, beta: float, r_anchor: float, units: float, quantile: float, factor_mean: float) -> dict:
    return {
        "name": name,
        "beta": beta,
        "r_anchor": r_anchor,
        "beta_units": units,
        "anchor_quantile": quantile,
        "max_factor": 3.0,
        "normaliser": 0.8,
        "factor_mean": factor_mean,
        "factor_sd": 0.4,
        "factor_min": 0.0,
        "factor_p10": 0.3,
        "factor_median": 1.0,
        "factor_p90": 1.6,
        "factor_max": 3.0,
        "factor_share_zero": 0.05,
        "factor_share_bound": 0.02,
    }


def _sign(correlation, low, high, sign: int, source: str) -> dict:
    return {
        "correlation": correlation,
        "low": low,
        "high": high,
        "records": 40,
        "sign": sign,
        "significant": sign != 0,
        "source": source,
    }


IDENTITY = {
    "name": "b0",
    "beta": 0.0,
    "r_anchor": 0.0,
    "beta_units": 0.0,
    "anchor_quantile": 0.5,
    "max_factor": 3.0,
    "normaliser": 1.0,
    "factor_mean": 1.0,
    "factor_sd": 0.0,
    "factor_min": 1.0,
    "factor_p10": 1.0,
    "factor_median": 1.0,
    "factor_p90": 1.0,
    "factor_max": 1.0,
    "factor_share_zero": 0.0,
    "factor_share_bound": 0.0,
}
SELECTIONS = {
    "m": {
        "model": "m",
        "layer": 3,
        "estimator": "entropy",
        "max_collapse": 0.05,
        "strengths": [1.0, 2.0, 4.0],
        "train_mcr_sd": 0.4,
        "typical_norm": 12.0,
        "to_vision": {
            "mean": {"seeds": [_seed(0, 2.0, 0.3, 0.04)]},
            "p2s": {"seeds": [_seed(0, 4.0, 0.5, 0.01, edge=True)]},
            "l2s": {"seeds": [_seed(0, 1.0, 0.2, 0.0), _seed(1, 2.0, 0.25, 0.03)]},
            "amps": {
                "scaling": _scaling("b+0.5_q0.75", 1.25, 0.8, 0.5, 0.75, 0.95),
                "sign": _sign(0.42, 0.1, 0.7, 1, "l2s"),
                "skipped": [],
                "seeds": [_seed(0, 2.0, 0.35, 0.02), _seed(1, 4.0, 0.4, 0.06, within=False, edge=True)],
            },
            "amps_online": {
                "scaling": IDENTITY,
                "sign": _sign(-0.05, -0.3, 0.2, 0, "mean"),
                "skipped": [],
                "seeds": [_seed(0, 2.0, 0.3, 0.04)],
            },
        },
        "to_text": {
            "mean": {"seeds": [_seed(0, 1.0, 0.1, 0.0)]},
            "p2s": {"seeds": [_seed(0, 2.0, 0.2, 0.01)]},
            "l2s": {"seeds": [_seed(0, 2.0, 0.15, 0.02), _seed(1, 1.0, 0.1, 0.01)]},
            # No defined correlation (null in the JSON): no link, AMPS stays Learn-to-Steer.
            "amps": {
                "scaling": IDENTITY,
                "sign": _sign(None, None, None, 0, "l2s"),
                "skipped": [],
                "seeds": [_seed(0, 2.0, 0.15, 0.02), _seed(1, 1.0, 0.1, 0.01)],
            },
            "amps_online": {
                "scaling": _scaling("b-0.25_q0.5", -0.625, 1.1, -0.25, 0.5, 1.05),
                "sign": _sign(-0.3, -0.5, -0.1, -1, "mean"),
                "skipped": ["b-0.5_q0.25"],
                "seeds": [_seed(0, 4.0, 0.25, 0.05, edge=True)],
            },
        },
    }
}
FACTOR_COLUMNS = [
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
]


def test_selection_table_has_a_row_per_direction_method_and_seed():
    table = selection_table(SELECTIONS)
    assert list(table.columns) == SELECTION_COLUMNS
    keys = [(row.direction, row.method, row.seed) for row in table.itertuples()]
    expected = []
    for direction in ("to_vision", "to_text"):
        expected += [
            (direction, "mean", 0),
            (direction, "p2s", 0),
            (direction, "l2s", 0),
            (direction, "l2s", 1),
            (direction, "amps", 0),
            (direction, "amps", 1),
            (direction, "amps_online", 0),
        ]
    assert keys == expected
    assert set(table["model"]) == {"m"} and set(table["layer"]) == {3} and set(table["estimator"]) == {"entropy"}
    assert set(table["train_mcr_sd"]) == {0.4}
    indexed = table.set_index(["direction", "method", "seed"])
    amps = indexed.loc[("to_vision", "amps", 1)]
    assert (amps["strength"], amps["validation_shift"], amps["validation_collapse"]) == (4.0, 0.4, 0.06)
    assert not amps["within_bound"] and amps["at_grid_edge"]
    assert indexed.loc[("to_vision", "p2s", 0), "at_grid_edge"] and indexed.loc[("to_text", "l2s", 1), "strength"] == 1.0


def test_selection_table_shows_the_link_and_factors_of_amps_only():
    indexed = selection_table(SELECTIONS).set_index(["direction", "method", "seed"])
    for seed in (0, 1):
        amps = indexed.loc[("to_vision", "amps", seed)]
        assert amps["link"] == "positive link (under Learn-to-Steer)" and amps["beta_sign"] == 1
        assert (amps["scaling"], amps["beta"], amps["r_anchor"], amps["beta_units"], amps["anchor_quantile"]) == (
            "b+0.5_q0.75",
            1.25,
            0.8,
            0.5,
            0.75,
        )
        assert (amps["sensitivity_correlation"], amps["sensitivity_low"], amps["sensitivity_high"]) == (0.42, 0.1, 0.7)
        assert (amps["factor_mean"], amps["factor_p90"], amps["factor_share_zero"], amps["normaliser"]) == (0.95, 1.6, 0.05, 0.8)
    online = indexed.loc[("to_vision", "amps_online", 0)]
    assert online["link"] == "no significant link (under mean steering): beta = 0" and online["beta_sign"] == 0
    assert online["sensitivity_correlation"] == -0.05 and online["scaling"] == "b0" and online["beta"] == 0.0
    text_amps = indexed.loc[("to_text", "amps", 0)]
    assert text_amps["link"] == "no significant link (under Learn-to-Steer): beta = 0" and text_amps["beta_sign"] == 0
    assert math.isnan(text_amps["sensitivity_correlation"]) and math.isnan(text_amps["sensitivity_high"])
    assert text_amps["factor_sd"] == 0.0 and text_amps["factor_mean"] == 1.0
    text_online = indexed.loc[("to_text", "amps_online", 0)]
    assert text_online["link"] == "negative link (under mean steering)" and text_online["beta_sign"] == -1
    assert (text_online["beta"], text_online["beta_units"], text_online["factor_mean"]) == (-0.625, -0.25, 1.05)
    for method in ("mean", "p2s", "l2s"):
        rows = indexed.xs(method, level="method")
        assert rows[FACTOR_COLUMNS].isna().all().all(), method
    scaled = indexed[indexed.index.get_level_values("method").isin(["amps", "amps_online"])]
    assert scaled[[c for c in FACTOR_COLUMNS if not c.startswith("sensitivity")]].notna().all().all()
    assert selection_table(SELECTIONS)["sensitivity_correlation"].dtype == float


# ----------------------------------------------------------------------------- rendering


def test_markdown_and_latex_show_mean_and_sd():
    frame = pd.DataFrame({"method": ["amps_x", "b"], "shift": [0.5, 0.25], "shift_sd": [0.1, 0.0], "ok": [True, False]})
    markdown = to_markdown(frame)
    assert markdown.splitlines()[0] == "| method | shift | ok |"
    assert "| amps_x | 0.500 ± 0.100 | yes |" in markdown and "| b | 0.250 | no |" in markdown
    latex = to_latex(frame, "Shift & collapse")
    assert r"amps\_x & 0.500 $\pm$ 0.100 & yes \\" in latex and r"\caption{Shift \& collapse}" in latex


def test_matched_table_renders_mean_and_sd(scores):
    markdown = to_markdown(matched_table(scores))
    header = markdown.splitlines()[0]
    assert "| l2s_collapse_at_shift |" in header and "_sd" not in header
    row = markdown.splitlines()[2]
    # AMPS's shift over its seeds (0.375 ± 0.177), Learn-to-Steer's collapse at it (0.031 ± 0.044); mean steering one seed.
    assert "| 0.375 ± 0.177 |" in row and "| 0.031 ± 0.044 |" in row and "| 0.250 |" in row
    latex = to_latex(matched_table(scores), "Matched shift")
    assert r"0.375 $\pm$ 0.177" in latex and r"l2s\_collapse\_at\_shift" in latex
