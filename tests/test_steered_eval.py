"""The steered evaluation: an oracle module that returns the true vector matches prompt-to-steer; questions; metrics;
and the AMPS steps end to end on the tiny model (selection, modules, every method, ablations, tables, figures)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from amps import prompts
from amps.ablation import FAMILIES, run_ablations
from amps.activations import Activations, collect_activations
from amps.data import Benchmark
from amps.figures import plot_examples, plot_tradeoff
from amps.evaluation import evaluate_baseline
from amps.io import read_json, read_table, write_table
from amps.reporting import summarize_amps
from amps.scoring import DIRECTIONS
from amps.steered_eval import (
    METHODS,
    MethodInputs,
    Point,
    evaluate_points,
    evaluation_questions,
    method_points,
    module_steering,
    plain_states,
    reaction_table,
    record_vectors,
    select_scaling,
    steered_evaluation,
    target_metrics,
    train_modules,
)
from amps.steerer import SteererConfig

MODEL_SPEC = {"steering_layers": [1, 0], "batch_size": 8, "device": "cpu", "dtype": "float32", "device_map": None,
              "trust_remote_code": False, "gpus": 0}
AMPS_SETTINGS = {
    "vector": "per_sample", "estimator": "entropy", "beta": None, "r_anchor": None, "beta_units": [1.0],
    "anchor_quantiles": [0.5], "strengths": [20.0, 80.0], "max_collapse": 0.05, "multipliers": [0.5, 1.0], "seeds": 2,
    "module": {"width": 8, "learning_rate": 0.01, "max_epochs": 30, "patience": 10, "cosine_weight": 0.1, "weight_decay": 0.0},
    "examples": 2,
    "ablation": {"model": "tiny", "direction": "to_vision", "beta_units": [-1.0, 1.0], "samples": [2], "mc_seeds": 1},
}
MCR_SETTINGS = {"sigma": 0.25, "samples": 3, "max_batch": 8, "answer": "clean", "fisher": True, "shards": 1, "bootstrap": 100}


def _settings(**extra) -> dict:
    return {"model_name": "tiny", "model": MODEL_SPEC, "amps": AMPS_SETTINGS, "steering": {"alphas": [2.0, 8.0], "positions": "all"},
            "evaluation": {"max_new_tokens": 2}, "threads": 1, "seed": 5, "mcr": MCR_SETTINGS, **extra}


@pytest.fixture(scope="module")
def activations_path(tiny_model_dir, tiny_benchmark_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("amps-activations") / "tiny.safetensors"
    collect_activations(_settings(), str(tiny_benchmark_dir), str(tiny_model_dir), str(output), str(output.with_suffix(".json")))
    return output


@pytest.fixture(scope="module")
def mcr_path(tiny_benchmark_dir, tmp_path_factory):
    """A stand-in MCR table (the estimator is issue 4's and tested there): spread values, one failed record."""
    records = Benchmark(tiny_benchmark_dir).records
    values = np.linspace(0.1, 0.9, len(records))
    table = pd.DataFrame({"record_index": range(len(records)), "record_id": records["record_id"], "task": records["task"],
                          "split": records["split"], "mcr": values, "mcr_fisher": values[::-1].copy(),
                          "problem": [""] * (len(records) - 1) + ["vision_first text: 1 of 3 samples of f non-finite"]})
    table.loc[len(records) - 1, "mcr"] = np.nan
    path = tmp_path_factory.mktemp("amps-mcr") / "tiny.parquet"
    write_table(path, table)
    return path


class NearestPromptOracle(torch.nn.Module):
    """Returns the true vector of the prompt whose stored plain state is nearest to the input."""

    def __init__(self, states: torch.Tensor, vectors: torch.Tensor):
        super().__init__()
        self.states, self.vectors = states, vectors
        self.largest_distance = 0.0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(hidden, self.states)
        nearest = distances.argmin(dim=1)
        self.largest_distance = max(self.largest_distance, float(distances.min(dim=1).values.max()))
        return self.vectors[nearest]


def test_oracle_returning_the_true_vector_matches_prompt_to_steer(tiny_model, tiny_benchmark_dir, activations_path, mcr_path):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test")
    ids = records["record_id"].tolist()
    stored = Activations.load(activations_path)
    vectors = record_vectors(stored, 1, ids)
    strength = 40.0
    selection = {"to_vision": {"module": {"strength": strength}, "online": {"strength": 1.0}}}
    inputs = MethodInputs(vectors, pd.Series(dtype=float), selection, tiny_benchmark_dir, [1.0],
                          {**AMPS_SETTINGS, "multipliers": [1.0]}, "all")
    p2s = evaluate_points(tiny_model, benchmark, records, method_points(tiny_model, "p2s", "to_vision", inputs), 8, 2, "p2s")
    oracle = NearestPromptOracle(plain_states(stored, 1, ids), vectors.per_prompt.flatten(0, 1))
    config = SteererConfig(tiny_model.hidden_size, 8, 1, 1, "l2s", "to_vision", "per_sample", 0.0, 0.0, 0)
    # Conflict prompts only: the oracle knows the conflict prompts' states, not the agreeing controls'.
    point = Point(0, 1.0, strength, False, module_steering(tiny_model, oracle, config, strength, "all"))
    learned = evaluate_points(tiny_model, benchmark, records, [point], 8, 2, "oracle")
    # The module reads, inside generation, the states the activations file holds (up to rounding).
    assert oracle.largest_distance < 1e-5 * float(oracle.states.norm(dim=-1).min())
    conflict = [frame[frame["condition"] == "conflict"].drop(columns="main").reset_index(drop=True) for frame in (p2s, learned)]
    pd.testing.assert_frame_equal(conflict[0], conflict[1])
    unsteered = evaluate_points(tiny_model, benchmark, records, [Point(0, 1.0, 0.0, False, None)], 8, 2, "plain")
    assert (unsteered["answer"] != conflict[0]["answer"]).any()  # the vectors do move the answers


def test_questions_carry_condition_instruction_and_both_orders(tiny_benchmark_dir):
    records = Benchmark(tiny_benchmark_dir).split("test")
    conflict = evaluation_questions(records, "conflict", "image")
    agreeing = evaluation_questions(records, "agreeing", "text")
    assert len(conflict) == len(agreeing) == 2 * len(records)
    assert {q.condition for q in conflict} == {"conflict"} and {q.condition for q in agreeing} == {"agreeing"}
    assert all(prompts.INSTRUCTIONS["image"] in q.prompt and records.iloc[q.record_index]["context"] in q.prompt for q in conflict)
    assert all(prompts.INSTRUCTIONS["text"] in q.prompt and records.iloc[q.record_index]["context"] not in q.prompt for q in agreeing)
    assert [q.order for q in conflict[:2]] == list(prompts.ORDERS)
    with pytest.raises(ValueError, match="unknown condition"):
        evaluation_questions(records, "neutral")


def _answer(record: str, strength: float, vision_first: str, text_first: str) -> list[dict]:
    return [{"record_id": record, "strength": strength, "order": order, "choice": choice, "point": strength}
            for order, choice in (("vision_first", vision_first), ("text_first", text_first))]


def test_metrics_and_reactions_use_the_record_level_view():
    rows = (_answer("r1", 0.0, "text", "text") + _answer("r2", 0.0, "vision", "vision")
            + _answer("r1", 1.0, "vision", "text") + _answer("r2", 1.0, "other", "vision")
            + _answer("r1", 2.0, "vision", "vision") + _answer("r2", 2.0, "other", "other"))
    answers = pd.DataFrame(rows)
    metrics = target_metrics(answers, ["point"], "vision").set_index("point")
    assert metrics["record_target"].tolist() == [0.5, 0.0, 0.5]  # a split pair of orders is no shift
    assert metrics["s_other"].tolist() == [0.0, 0.25, 0.5]
    reactions = reaction_table(answers, "vision").set_index("record_id")
    assert reactions.loc["r1", "flip_strength"] == 2.0 and np.isnan(reactions.loc["r1", "collapse_strength"])
    assert reactions.loc["r1", "reaction_strength"] == 2.0
    assert reactions.loc["r2", "flip_strength"] == 0.0 and reactions.loc["r2", "collapse_strength"] == 1.0
    assert reactions.loc["r2", "reaction_strength"] == 0.0


def test_amps_steps_end_to_end(tiny_model_dir, tiny_benchmark_dir, activations_path, mcr_path, tmp_path):
    model, bench = str(tiny_model_dir), str(tiny_benchmark_dir)
    selection, scan = tmp_path / "selection.json", tmp_path / "scan.csv"
    select_scaling(_settings(), bench, model, str(activations_path), str(mcr_path), str(selection), str(scan))
    chosen = read_json(selection)
    for direction in ("to_vision", "to_text"):
        module, online = chosen[direction]["module"], chosen[direction]["online"]
        assert module["strength"] in AMPS_SETTINGS["strengths"] and online["strength"] in (2.0, 8.0)
        assert module["beta_sign"] in (-1, 0, 1) and (module["beta"] == 0.0 or np.sign(module["beta"]) == module["beta_sign"])
        assert module["records_without_mcr"] == 0  # the failed record is not in the validation split
    scanned = read_table(scan)
    assert set(scanned["method"]) == {"amps", "amps_online"}
    for (direction, method), rows in scanned.groupby(["direction", "method"]):
        choice = chosen[direction]["module" if method == "amps" else "online"]
        assert (rows["stage"] == "strength").sum() == 2
        # The (β, r) grid (one unit, one anchor) runs at the chosen strength and the next one, where the data give β a sign.
        expected = (2 if choice["strength"] == min(rows["strength"]) else 1) if choice["beta_sign"] else 0
        assert (rows["stage"] == "scaling").sum() == expected

    steerers = tmp_path / "steerers"
    train_modules({**_settings(), "steering_layer": 1}, bench, str(activations_path), str(mcr_path), str(selection),
                  str(steerers), str(tmp_path / "training.csv"))
    assert len(list(steerers.glob("*.safetensors"))) == len(list(steerers.glob("*.json"))) == 2 * 2 * 2
    training = read_table(tmp_path / "training.csv")
    assert (training.loc[training["kind"] == "l2s", "beta"] == 0.0).all()

    steered_evaluation(_settings(), bench, model, str(activations_path), str(mcr_path), str(selection), str(steerers),
                       str(tmp_path / "answers"))
    answer_paths = [str(tmp_path / "answers" / f"{method}-{direction}.parquet") for method in METHODS for direction in ("to_vision", "to_text")]
    assert sorted(str(path) for path in (tmp_path / "answers").iterdir()) == sorted(answer_paths)
    for path in answer_paths:
        method, direction = Path(path).stem.split("-")
        written = read_table(path)
        assert set(written["method"]) == {method} and set(written["direction"]) == {direction}
    amps_answers = read_table(tmp_path / "answers" / "amps-to_vision.parquet")
    conflict = amps_answers[amps_answers["condition"] == "conflict"]
    assert sorted(conflict.groupby(["seed", "multiplier"]).size().index.tolist()) == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]
    assert set(amps_answers.loc[amps_answers["condition"] == "agreeing", "multiplier"]) == {1.0}
    mean_answers = read_table(tmp_path / "answers" / "mean-to_vision.parquet")
    assert sorted(mean_answers["strength"].unique()) == [2.0, 8.0]

    run_ablations(_settings(), bench, model, str(activations_path), str(mcr_path), str(selection), str(tmp_path / "ablations"))
    ablation_paths = [str(tmp_path / "ablations" / f"{family}.parquet") for family in FAMILIES]
    assert sorted(str(path) for path in (tmp_path / "ablations").iterdir()) == sorted(ablation_paths)
    beta = read_table(ablation_paths[FAMILIES.index("beta")])
    assert set(beta["value"]) >= {"-1", "1"} and set(beta["method"]) == {"amps", "amps_online"}
    samples = read_table(ablation_paths[FAMILIES.index("samples")])
    assert set(samples["samples"]) == {2, 3}

    baseline = tmp_path / "baseline.parquet"
    evaluate_baseline({"model_name": "tiny", "model": MODEL_SPEC, "evaluation": {"max_new_tokens": 2}, "threads": 1},
                      bench, model, str(baseline))
    tables = {name: str(tmp_path / "tables" / f"amps_{name}.csv") for name in ("main", "scale", "matched", "selection", "ablation")}
    summarize_amps({"run_name": "unit", "benchmark_label": "tiny", "models": ["tiny"], "ablation_model": "tiny"},
                   ",".join(answer_paths), str(baseline), str(selection), ",".join(ablation_paths),
                   str(tmp_path / "tables" / "amps_scores.csv"), **tables)
    main = read_table(tables["main"])
    assert main["method"].tolist() == ["none", "instruction", "mean", "l2s", "amps", "amps_online", "p2s"]
    none = main.set_index("method").loc["none"]
    assert none["to_vision.shift"] == 0.0 and none["to_text.collapse"] == 0.0
    assert main.set_index("method").loc["amps", "seeds"] == 2
    for name in tables.values():
        assert Path(name).with_suffix(".md").is_file() and Path(name).with_suffix(".tex").is_file()
    assert "\\begin{tabular}" in (tmp_path / "tables" / "amps_main.tex").read_text()
    assert (tmp_path / "tables" / "amps_main.md").read_text().count("\n| ") >= 7

    plot_tradeoff({"run_name": "unit", "benchmark_label": "tiny"}, str(tmp_path / "tables" / "amps_scores.csv"),
                  str(tmp_path / "tradeoff.pdf"))
    plot_examples({"run_name": "unit", "benchmark_label": "tiny", "model_name": "tiny", "direction": "to_vision", "examples": 2},
                  str(tmp_path / "answers" / "mean-to_vision.parquet"), str(tmp_path / "answers" / "amps-to_vision.parquet"),
                  bench, str(tmp_path / "examples.pdf"))
    for figure in ("tradeoff.png", "examples.png"):
        assert (tmp_path / figure).stat().st_size > 5000


def _scripted_scan(flip: dict[str, float], collapse: dict[str, float]):
    """A stand-in for the model: a record follows the image once its strength reaches ``flip`` and
    answers no option once it reaches ``collapse`` (both orders alike)."""

    def scan_point(_scan, _vectors, strength, _desc):
        rows = []
        for index, record in enumerate(flip):
            value = float(strength[index]) if isinstance(strength, torch.Tensor) else float(strength)
            choice = "other" if value >= collapse[record] else "vision" if value >= flip[record] else "text"
            rows += [{"record_id": record, "order": order, "choice": choice} for order in prompts.ORDERS]
        return pd.DataFrame(rows)

    return scan_point


@pytest.mark.parametrize("sensitive_mcr", ["low", "high"])
def test_selection_takes_the_sign_of_beta_from_the_data_and_can_steer_harder(monkeypatch, sensitive_mcr):
    """Four sensitive records (flip at 0.5, collapse at 2) and four tolerant ones (flip at 2, never collapse).
    Unscaled steering must stop at strength 1 (half flip); AMPS weakens the sensitive records and
    strengthens the others at base 2, so all flip without collapse, whichever end of the MCR they sit at."""
    from amps import steered_eval

    records = [f"r{index}" for index in range(8)]
    low = [0.1, 0.2, 0.3, 0.4]
    high = [0.6, 0.7, 0.8, 0.9]
    values = low + high if sensitive_mcr == "low" else high + low
    mcr = pd.Series(values, index=records)
    flip = {record: 0.5 if index < 4 else 2.0 for index, record in enumerate(records)}
    collapse = {record: 2.0 if index < 4 else math.inf for index, record in enumerate(records)}
    monkeypatch.setattr(steered_eval, "scan_point", _scripted_scan(flip, collapse))
    unsteered = pd.DataFrame([{"record_id": record, "order": order, "choice": "text"} for record in records for order in prompts.ORDERS])
    scan = steered_eval.ScanContext(None, None, unsteered, 1, "all", 2)
    settings = {**AMPS_SETTINGS, "beta_units": [0.5, 1.0], "anchor_quantiles": [0.5]}
    choice, table = steered_eval.select_family(scan, torch.zeros(2, 8, 4), [1.0, 2.0], mcr, np.array(values), "to_vision", "per_sample", settings)
    assert choice["strength"] == 1.0 and choice["strength_shift"] == 0.5 and choice["strength_collapse"] == 0.0
    assert choice["beta_sign"] == (1 if sensitive_mcr == "low" else -1)
    assert choice["amps_strength"] == 2.0 and np.sign(choice["beta"]) == choice["beta_sign"]
    assert (choice["validation_shift"], choice["validation_collapse"]) == (1.0, 0.0) and choice["scaling_within_bound"]
    assert table.loc[table["stage"] == "strength", "collapse"].tolist() == [0.0, 0.5]

    fixed = {**settings, "beta": -1.0 * choice["beta_sign"], "r_anchor": 0.5}  # the wrong sign, imposed by the config
    choice, table = steered_eval.select_family(scan, torch.zeros(2, 8, 4), [1.0, 2.0], mcr, np.array(values), "to_vision", "per_sample", fixed)
    assert choice["beta"] == fixed["beta"] and (table["stage"] == "scaling").sum() == 2
    assert choice["validation_shift"] < 1.0


def test_the_workflow_expects_the_tables_the_package_writes():
    """The rules name every method and ablation family (they must not import torch to know them)."""
    import ast
    import re

    from conftest import REPO

    rules = (REPO / "workflow" / "rules" / "amps.smk").read_text()

    def listed(name: str) -> tuple[str, ...]:
        return tuple(ast.literal_eval(re.search(rf"^{name} = (\[.*\])$", rules, re.MULTILINE).group(1)))

    assert listed("AMPS_METHODS") == METHODS
    assert listed("ABLATION_FAMILIES") == FAMILIES
    assert listed("AMPS_DIRECTIONS") == tuple(DIRECTIONS)
