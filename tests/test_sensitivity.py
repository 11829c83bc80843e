"""MCR against per-sample steering sensitivity: ranks with records beyond the grid, bootstrap intervals,
the CLI table and the two figures, on synthetic tables in the sweep's format."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from amps import statistics
from amps.core.io import read_table, write_table
from amps.report import mcr_sensitivity as sensitivity
from amps.report.figure_steps import PlotMcrSensitivity, plot_mcr_sensitivity
from amps.report.steps import McrSensitivity, mcr_sensitivity

GRID = [0.0, 0.5, 1.0, 2.0, 4.0]


def synthetic(records: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MCR rows and sensitivity rows in which text-reliant records (high MCR) resist steering to the image."""
    rng = np.random.default_rng(seed)
    mcr_values = rng.uniform(0, 1, records)
    ids = [f"color-{i}" if i % 2 else f"count-{i}" for i in range(records)]
    tasks = [name.split("-")[0] for name in ids]
    mcr = pd.DataFrame({"record_id": ids, "task": tasks, "split": "test", "mcr": mcr_values, "mcr_fisher": mcr_values**2})
    rows = []
    for record_id, task, value in zip(ids, tasks, mcr_values):
        level = int(value * 6)  # 0..5; 5 = beyond the grid
        to_vision = GRID[level] if level < len(GRID) else np.nan
        to_text = GRID[len(GRID) - 1 - min(level, len(GRID) - 1)]
        rows.append(
            {
                "model": "m",
                "record_id": record_id,
                "task": task,
                "direction": "to_vision",
                "baseline_choice": "text",
                "flip_alpha": to_vision,
                "collapse_alpha": np.nan,
            }
        )
        rows.append(
            {
                "model": "m",
                "record_id": record_id,
                "task": task,
                "direction": "to_text",
                "baseline_choice": "text",
                "flip_alpha": to_text,
                "collapse_alpha": 4.0,
            }
        )
    return mcr, pd.DataFrame(rows)


def test_beyond_the_grid_ranks_above_every_finite_score():
    ranks = statistics.beyond_grid_ranks(np.array([2.0, np.nan, 0.5, np.nan]))
    assert ranks.tolist() == [2.0, 3.5, 1.0, 3.5]


def test_spearman_equals_scipy_on_finite_scores_and_counts_beyond_grid_as_least_sensitive():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert statistics.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    # Monotone once NaN is read as "beyond the largest α".
    assert statistics.spearman(np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.5, 1.0, 4.0, np.nan])) == pytest.approx(1.0)
    assert math.isnan(statistics.spearman(np.array([0.1, 0.2, 0.3]), np.array([np.nan] * 3)))  # all beyond: no ranks
    assert math.isnan(statistics.spearman(np.array([0.1, 0.2]), np.array([1.0, 2.0])))  # too few records


def test_bootstrap_interval_covers_the_estimate_and_is_reproducible():
    mcr, scores = synthetic()
    part = scores[scores["direction"] == "to_vision"].merge(mcr, on="record_id")
    values, flips = part["mcr"].to_numpy(), part["flip_alpha"].to_numpy()
    rho = statistics.spearman(values, flips)
    low, high, defined = statistics.bootstrap_interval(values, flips, 500, seed=3)
    assert low <= rho <= high and high - low < 0.2 and defined == 500
    assert statistics.bootstrap_interval(values, flips, 500, seed=3) == (low, high, defined)


def test_correlations_per_task_and_direction_have_the_expected_signs():
    mcr, scores = synthetic()
    mcr.loc[0, "mcr"] = np.nan  # a record whose Monte Carlo value failed: left out and counted
    table = sensitivity.correlations(mcr, scores, "m", resamples=200, seed=0)
    flips = table[(table["score"] == "flip_alpha") & (table["estimator"] == "entropy")].set_index(["task", "direction"])
    assert flips.loc[("all", "to_vision"), "spearman"] > 0.9
    assert flips.loc[("all", "to_text"), "spearman"] < -0.9
    assert flips.loc[("all", "to_vision"), "n_mcr_nan"] == 1 and flips.loc[("all", "to_vision"), "n"] == 39
    kept = scores[(scores["direction"] == "to_vision") & (scores["record_id"] != mcr.loc[0, "record_id"])]
    assert flips.loc[("all", "to_vision"), "n_beyond_grid"] == kept["flip_alpha"].isna().sum() > 0
    assert set(table["task"]) == {"all", "color", "count"}
    collapse = table[(table["score"] == "collapse_alpha") & (table["direction"] == "to_vision")]
    assert collapse["spearman"].isna().all()  # every record beyond the grid: no correlation, said as NaN


def test_records_without_an_mcr_row_or_with_unknown_directions_are_errors():
    mcr, scores = synthetic(records=6)
    with pytest.raises(ValueError, match="have no MCR row"):
        sensitivity.correlations(mcr.iloc[1:], scores, "m", 100, 0)
    with pytest.raises(ValueError, match="unknown directions"):
        sensitivity.correlations(mcr, scores.replace({"direction": {"to_text": "sideways"}}), "m", 100, 0)
    with pytest.raises(ValueError, match="lacks columns"):
        sensitivity.correlations(mcr, scores.drop(columns="flip_alpha"), "m", 100, 0)


def test_cli_writes_the_table_and_both_figures(tmp_path):
    paths = {}
    for model, seed in (("m1", 0), ("m2", 1)):
        mcr, scores = synthetic(seed=seed)
        paths[model] = (tmp_path / f"{model}.parquet", tmp_path / f"{model}-sensitivity.parquet")
        write_table(paths[model][0], mcr)
        write_table(paths[model][1], scores.assign(model=model))
    mcr_list = ",".join(str(paths[m][0]) for m in paths)
    sensitivity_list = ",".join(str(paths[m][1]) for m in paths)
    table_path = tmp_path / "mcr_sensitivity.csv"
    mcr_sensitivity(McrSensitivity("t", ("m1", "m2"), bootstrap=100, seed=0), mcr_list, sensitivity_list, str(table_path))
    table = read_table(table_path)
    assert set(table["model"]) == {"m1", "m2"} and (table["run"] == "t").all()
    plot_mcr_sensitivity(
        PlotMcrSensitivity("t", "synthetic", ("m1", "m2")),
        mcr_list,
        sensitivity_list,
        str(table_path),
        str(tmp_path / "sensitivity.pdf"),
        str(tmp_path / "scatter.pdf"),
    )
    for name in ("sensitivity", "scatter"):
        assert (tmp_path / f"{name}.pdf").stat().st_size > 1000 and (tmp_path / f"{name}.png").stat().st_size > 1000
