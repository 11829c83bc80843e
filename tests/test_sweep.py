"""The mean-steering sweep: per-record agreement, sensitivity, letter-bias columns, and the CLI steps."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from amps.core.config import ConfigError, validate_config
from amps.core.io import read_table
from amps.metrics import record_table, sensitivity
from amps.report.figure_steps import PlotSweep, plot_sweep
from amps.report.steps import SummarizeSweep, summarize_sweep
from amps.report.sweep import sweep_scores
from amps.steering.activations import Activations
from amps.steering.steps import CollectActivations, SteeringSweep, collect_activations, steering_sweep
from amps.steering.sweep import sorted_alphas

from conftest import REPO
from steps import TINY_MODEL, build

#: The tiny model steered at layer 1, and the sweep's test settings.
TINY = {"models": {"tiny": {**TINY_MODEL, "steering_layers": [1], "batch_size": 16}}, "evaluation": {"max_new_tokens": 2}}
# (direction, alpha, record, letter in vision_first, letter in text_first); "" = no option named.
# vision_first: A = vision answer; text_first: A = text answer.
SCRIPT = [
    ("to_vision", 0.0, "r1", "B", "A"),  # text in both orders
    ("to_vision", 0.0, "r2", "A", "B"),  # vision in both orders
    ("to_vision", 1.0, "r1", "A", "A"),  # one letter: vision then text
    ("to_vision", 1.0, "r2", "", "B"),  # one answer names no option: collapse
    ("to_vision", 2.0, "r1", "A", "B"),  # flipped to vision
    ("to_vision", 2.0, "r2", "", ""),
    ("to_text", 0.0, "r1", "B", "A"),
    ("to_text", 0.0, "r2", "A", "B"),
    ("to_text", 1.0, "r1", "B", "A"),
    ("to_text", 1.0, "r2", "B", "A"),  # flipped to text
]


def _choice(letter: str, order: str) -> str:
    if not letter:
        return "other"
    return "vision" if (letter == "A") == (order == "vision_first") else "text"


def _answers(script) -> pd.DataFrame:
    rows = []
    for direction, alpha, record, *letters in script:
        for order, letter in zip(("vision_first", "text_first"), letters):
            rows.append(
                {
                    "model": "m",
                    "direction": direction,
                    "alpha": alpha,
                    "record_id": record,
                    "task": "color",
                    "condition": "none",
                    "order": order,
                    "answer": letter or "zzz",
                    "letter": letter,
                    "choice": _choice(letter, order),
                    "layer": 1,
                    "positions": "all",
                    "steer_norm": alpha * 10.0,
                    "reference_norm": 10.0,
                }
            )
    return pd.DataFrame(rows)


def test_record_table_marks_agreement_and_same_letter():
    table = record_table(_answers(SCRIPT)).set_index(["direction", "alpha", "record_id"])
    one_letter = table.loc[("to_vision", 1.0, "r1")]
    assert (one_letter["choice_vision_first"], one_letter["choice_text_first"]) == ("vision", "text")
    assert one_letter["same_letter"] and not one_letter["orders_agree"] and one_letter["record_choice"] == "other"
    flipped = table.loc[("to_vision", 2.0, "r1")]
    assert flipped["orders_agree"] and not flipped["same_letter"] and flipped["record_choice"] == "vision"
    collapsed = table.loc[("to_vision", 2.0, "r2")]
    assert collapsed["any_other"] and not collapsed["orders_agree"] and not collapsed["same_letter"]


def test_sensitivity_gives_the_smallest_flip_and_collapse_strength():
    table = sensitivity(record_table(_answers(SCRIPT))).set_index(["direction", "record_id"])
    assert table.loc[("to_vision", "r1"), "flip_alpha"] == 2.0
    assert math.isnan(table.loc[("to_vision", "r1"), "collapse_alpha"])
    assert table.loc[("to_vision", "r2"), "flip_alpha"] == 0.0  # already follows the image unsteered
    assert table.loc[("to_vision", "r2"), "collapse_alpha"] == 1.0
    assert table.loc[("to_text", "r1"), "flip_alpha"] == 0.0
    assert table.loc[("to_text", "r2"), "flip_alpha"] == 1.0
    assert table.loc[("to_vision", "r1"), "baseline_choice"] == "text"
    assert list(table.reset_index().columns) == [
        "direction",
        "record_id",
        "model",
        "task",
        "baseline_choice",
        "flip_alpha",
        "collapse_alpha",
    ]


def test_scores_carry_letter_bias_beside_the_ratio():
    answers = _answers(SCRIPT)
    table = sweep_scores(answers, record_table(answers))
    whole = table[(table["task"] == "all")].set_index(["direction", "alpha", "view"])
    step = whole.loc[("to_vision", 1.0, "pooled")]
    assert step["rate_a"] == pytest.approx(0.5)  # A, A, "", B
    assert step["s_other"] == pytest.approx(0.25)
    assert step["same_letter"] == pytest.approx(0.5) and step["orders_agree"] == 0.0
    assert step["steer_norm"] == pytest.approx(10.0) and step["layer"] == 1
    assert whole.loc[("to_vision", 2.0, "record"), "s_vision"] == pytest.approx(0.5)


def test_one_letter_model_reads_as_half_vision_pooled_but_no_record_follows_the_image():
    answers = _answers([("to_vision", 4.0, record, "A", "A") for record in ("r1", "r2", "r3")])
    table = sweep_scores(answers, record_table(answers))
    whole = table[table["task"] == "all"].set_index("view")
    assert whole.loc["pooled", "vision_ratio"] == pytest.approx(0.5)
    assert whole.loc["pooled", "rate_a"] == 1.0
    assert whole.loc["record", "s_vision"] == 0.0 and whole.loc["record", "s_other"] == 1.0
    assert whole.loc["record", "same_letter"] == 1.0 and whole.loc["record", "orders_agree"] == 0.0


def test_bad_sweep_settings_are_named_before_any_work(tmp_path):
    assert sorted_alphas([2, 0.5, 2]) == [0.5, 2.0]
    with open(REPO / "config" / "test.yaml") as handle:
        config = yaml.safe_load(handle)
    for alphas, message in (([], r"steering\.alphas': \[\] should be non-empty"), ([0.5, -1], r"steering\.alphas\.1': -1")):
        config["steering"] = {"alphas": alphas}
        with pytest.raises(ConfigError, match=message):
            validate_config(config)
    config["steering"] = {"positions": "middle"}
    with pytest.raises(ConfigError, match=r"steering\.positions': 'middle' is not one of"):
        validate_config(config)
    del config["steering"]
    assert validate_config(config)["steering"] == {"alphas": [0.25, 0.5, 1, 2, 4], "positions": "all"}
    missing = [str(tmp_path / name) for name in ("bench", "model", "act.safetensors", "a.parquet", "r.parquet", "s.parquet")]
    with pytest.raises(FileNotFoundError, match="act.safetensors does not exist"):
        steering_sweep(build(SteeringSweep, TINY, model="tiny"), *missing)


def test_sweep_steps_end_to_end(tiny_model_dir, tiny_benchmark_dir, tmp_path):
    activations = tmp_path / "activations" / "tiny.safetensors"
    collect_activations(
        build(CollectActivations, TINY, model="tiny"),
        str(tiny_benchmark_dir),
        str(tiny_model_dir),
        str(activations),
        str(activations.with_suffix(".json")),
    )
    settings = build(SteeringSweep, {**TINY, "steering": {"alphas": [8.0, 1.0], "positions": "all"}}, model="tiny")
    paths = {name: tmp_path / "sweep" / f"{name}.parquet" for name in ("answers", "records", "sensitivity")}
    steering_sweep(
        settings,
        str(tiny_benchmark_dir),
        str(tiny_model_dir),
        str(activations),
        str(paths["answers"]),
        str(paths["records"]),
        str(paths["sensitivity"]),
    )
    answers = read_table(paths["answers"])
    n_test = 8
    assert len(answers) == 2 * 3 * n_test * 2  # directions x (0 + two alphas) x records x orders
    assert sorted(answers["alpha"].unique()) == [0.0, 1.0, 8.0]
    reference = float(Activations.load(activations).get("mean_norm", 1))
    norms = answers.groupby("alpha")["steer_norm"].first()
    assert norms[8.0] == pytest.approx(8 * reference, rel=1e-5) and norms[0.0] == 0.0
    unsteered = answers[answers["alpha"] == 0.0]
    by_direction = [part["answer"].tolist() for _, part in unsteered.groupby("direction")]
    assert by_direction[0] == by_direction[1]
    strongest = answers[(answers["alpha"] == 8.0) & (answers["direction"] == "to_vision")]["answer"].tolist()
    assert strongest != by_direction[0]
    per_sample = read_table(paths["sensitivity"])
    assert len(per_sample) == n_test * 2
    assert set(per_sample.columns) >= {"record_id", "task", "direction", "flip_alpha", "collapse_alpha"}
    assert set(per_sample["flip_alpha"].dropna()) <= {0.0, 1.0, 8.0}

    scores = tmp_path / "tables" / "sweep_scores.csv"
    summarize_sweep(SummarizeSweep("t"), str(paths["answers"]), str(paths["records"]), str(scores))
    table = read_table(scores)
    required = [
        "run",
        "model",
        "direction",
        "alpha",
        "task",
        "view",
        "n",
        "s_vision",
        "s_text",
        "s_other",
        "vision_ratio",
        "rate_a",
    ]
    assert set(required + ["alpha_unit", "steer_norm", "same_letter", "orders_agree"]) <= set(table.columns)
    assert set(table["view"]) == {"pooled", "vision_first", "text_first", "record"}
    whole = table[(table["task"] == "all") & (table["view"] == "pooled")]
    assert len(whole) == 6 and (whole["n"] == 2 * n_test).all()

    figure = tmp_path / "figures" / "sweep.pdf"
    plot_sweep(PlotSweep("t", "tiny"), str(scores), str(figure))
    assert figure.stat().st_size > 1000 and figure.with_suffix(".png").stat().st_size > 1000
