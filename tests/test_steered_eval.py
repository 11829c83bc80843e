"""The steered evaluation: an oracle module that returns the true vector matches prompt-to-steer; questions; metrics;
and the AMPS steps end to end on the tiny model (modules, selection, measured curves, ablations, tables, figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from amps.baseline.steps import EvaluateBaseline, evaluate_baseline
from amps.core.io import read_json, read_table, write_table
from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.method.curves import CurveSettings
from amps.method.methods import ModuleSteering, VectorSteering
from amps.method.recipe import ModuleRecipe
from amps.method.steerer import SteererConfig
from amps.method.steering_module import SteeringModule
from amps.method.steps import (
    AblateAmps,
    SelectAmps,
    SteeredEval,
    TrainSteerers,
    ablate_amps,
    select_amps,
    steered_eval,
    train_steerers,
)
from amps.method.vectors import plain_states, record_vectors
from amps.metrics import reaction_table, target_metrics
from amps.models.asking import QuestionBatches, answer, evaluation_questions
from amps.report.figure_steps import PlotExamples, PlotTradeoff, plot_examples, plot_tradeoff
from amps.report.steps import SummarizeAmps, summarize_amps
from amps.steering.activations import Activations
from amps.steering.steps import CollectActivations, collect_activations
from amps.vocabulary import ABLATION_FAMILIES, DIRECTIONS, METHODS, ORDERS

from steps import TINY_MODEL, build, config_with

#: The test config's changes for the tiny model: what the rules would build its steps from (strengths that move the
#: tiny random model).
TINY = {
    "models": {"tiny": TINY_MODEL},
    "evaluation": {"max_new_tokens": 2},
    "seed": 5,
    "steering": {"alphas": [2.0, 8.0], "positions": "all"},
    "mcr": {"sigma": 0.25, "samples": 3, "shards": 1, "bootstrap": 100},
    "amps": {
        "strengths": [1.0, 4.0, 16.0],
        "seeds": 2,
        "curve": {"max_points": 6, "max_collapse": 0.5},
        "ablation": {"model": "tiny", "beta_units": [-1.0, 1.0], "samples": [2], "mc_seeds": 1},
    },
}


@pytest.fixture(scope="module")
def amps_section() -> dict:
    """The amps section of the tiny model's test config (schema defaults filled)."""
    return config_with(**TINY)["amps"]


@pytest.fixture(scope="module")
def activations_path(tiny_model_dir, tiny_benchmark_dir, tmp_path_factory, amps_section):
    output = tmp_path_factory.mktemp("amps-activations") / "tiny.safetensors"
    collect_activations(
        build(CollectActivations, TINY, model="tiny"),
        str(tiny_benchmark_dir),
        str(tiny_model_dir),
        str(output),
        str(output.with_suffix(".json")),
    )
    return output


@pytest.fixture(scope="module")
def mcr_path(tiny_benchmark_dir, tmp_path_factory):
    """A stand-in MCR table (the estimator is tested in test_mcr): spread values, one failed record."""
    records = Benchmark(tiny_benchmark_dir).records
    values = np.linspace(0.1, 0.9, len(records))
    table = pd.DataFrame(
        {
            "record_index": range(len(records)),
            "record_id": records["record_id"],
            "task": records["task"],
            "split": records["split"],
            "mcr": values,
            "mcr_fisher": values[::-1].copy(),
            "problem": [""] * (len(records) - 1) + ["vision_first text: 1 of 3 samples of f non-finite"],
        }
    )
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


def test_oracle_returning_the_true_vector_matches_prompt_to_steer(tiny_model, tiny_benchmark_dir, activations_path):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test")
    ids = records["record_id"].tolist()
    stored = Activations.load(activations_path)
    vectors = record_vectors(stored, 1, ids)
    encoded = QuestionBatches(tiny_model, benchmark, records, evaluation_questions(records, "conflict"), 8, keep=True)
    strength = 8.0
    p2s = answer(tiny_model, encoded, 2, VectorSteering(tiny_model, 1, vectors.base("per_sample"), "all").context(strength))
    oracle = NearestPromptOracle(plain_states(stored, 1, ids), vectors.per_prompt.flatten(0, 1))
    config = SteererConfig(tiny_model.hidden_size, 1, 1, "l2s", "to_vision", "per_sample", 0.0, 0.0, 0, ModuleRecipe())
    steering = ModuleSteering(tiny_model, SteeringModule(oracle, config, vectors.prompt_scale, "all"))
    learned = answer(tiny_model, encoded, 2, steering.context(strength))
    # The module reads, inside generation, the states the activations file holds (up to rounding).
    assert oracle.largest_distance < 1e-5 * float(oracle.states.norm(dim=-1).min())
    pd.testing.assert_frame_equal(p2s, learned)
    unsteered = answer(tiny_model, encoded, 2)
    assert (unsteered["answer"] != p2s["answer"]).any()  # the vectors do move the answers


def test_amps_online_factors_scale_each_record_and_the_mean_vector_is_shared(tiny_model, tiny_benchmark_dir, activations_path):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test")
    vectors = record_vectors(Activations.load(activations_path), 1, records["record_id"].tolist())
    mean = vectors.base("mean")
    assert torch.equal(mean[0, 0], mean[1, -1])
    # Strength 1 is one unit, the mean hidden-state norm, for the mean direction and for a typical prompt vector.
    assert float(mean[0, 0].norm()) == pytest.approx(vectors.reference_norm, rel=1e-5)
    assert float(vectors.base("per_sample").norm(dim=-1).mean()) == pytest.approx(
        vectors.reference_norm * float(vectors.per_prompt.norm(dim=-1).mean()) / vectors.typical_norm, rel=1e-5
    )
    encoded = QuestionBatches(tiny_model, benchmark, records, evaluation_questions(records, "conflict"), 8, keep=True)
    factors = np.linspace(0.0, 2.0, len(records))
    # Factor f at strength s steers like strength s·f: a record with factor 0 answers as unsteered.
    scaled = answer(tiny_model, encoded, 2, VectorSteering(tiny_model, 1, mean, "all", factors).context(8.0))
    plain = answer(tiny_model, encoded, 2)
    first = scaled["record_id"] == records["record_id"].iloc[0]
    pd.testing.assert_frame_equal(scaled[first].reset_index(drop=True), plain[first].reset_index(drop=True))


def test_questions_carry_condition_instruction_and_both_orders(tiny_benchmark_dir):
    records = Benchmark(tiny_benchmark_dir).split("test")
    conflict = evaluation_questions(records, "conflict", "image")
    agreeing = evaluation_questions(records, "agreeing", "text")
    assert len(conflict) == len(agreeing) == 2 * len(records)
    assert {q.condition for q in conflict} == {"conflict"} and {q.condition for q in agreeing} == {"agreeing"}
    assert all(
        prompts.INSTRUCTIONS["image"] in q.prompt and records.iloc[q.record_index]["context"] in q.prompt for q in conflict
    )
    assert all(
        prompts.INSTRUCTIONS["text"] in q.prompt and records.iloc[q.record_index]["context"] not in q.prompt for q in agreeing
    )
    assert [q.order for q in conflict[:2]] == list(ORDERS)
    with pytest.raises(ValueError, match="unknown condition"):
        evaluation_questions(records, "neutral")


def _answer(record: str, strength: float, vision_first: str, text_first: str) -> list[dict]:
    return [
        {"record_id": record, "strength": strength, "order": order, "choice": choice, "point": strength}
        for order, choice in (("vision_first", vision_first), ("text_first", text_first))
    ]


def test_metrics_and_reactions_use_the_record_level_view():
    rows = (
        _answer("r1", 0.0, "text", "text")
        + _answer("r2", 0.0, "vision", "vision")
        + _answer("r1", 1.0, "vision", "text")
        + _answer("r2", 1.0, "other", "vision")
        + _answer("r1", 2.0, "vision", "vision")
        + _answer("r2", 2.0, "other", "other")
    )
    answers = pd.DataFrame(rows)
    metrics = target_metrics(answers, ["point"], "vision").set_index("point")
    assert metrics["record_target"].tolist() == [0.5, 0.0, 0.5]  # a split pair of orders is no shift
    assert metrics["s_other"].tolist() == [0.0, 0.25, 0.5]
    reactions = reaction_table(answers, "vision").set_index("record_id")
    assert reactions.loc["r1", "flip_strength"] == 2.0 and np.isnan(reactions.loc["r1", "collapse_strength"])
    assert reactions.loc["r1", "reaction_strength"] == 2.0
    assert reactions.loc["r2", "flip_strength"] == 0.0 and reactions.loc["r2", "collapse_strength"] == 1.0
    assert reactions.loc["r2", "reaction_strength"] == 0.0


def test_amps_steps_end_to_end(tiny_model_dir, tiny_benchmark_dir, activations_path, mcr_path, tmp_path, amps_section):
    model, bench = str(tiny_model_dir), str(tiny_benchmark_dir)
    steerers = tmp_path / "steerers"
    narrow = {**TINY, "models": {"tiny": {**TINY_MODEL, "module_width": 8}}}
    train_steerers(
        build(TrainSteerers, narrow, model="tiny"),
        bench,
        str(activations_path),
        str(mcr_path),
        str(steerers),
        str(tmp_path / "training.csv"),
    )
    training = read_table(tmp_path / "training.csv")
    # Per direction: Learn-to-Steer and one AMPS candidate of each sign (one unit, one anchor), two seeds each.
    assert len(training) == 2 * 3 * 2 and len(list(steerers.glob("*.safetensors"))) == len(list(steerers.glob("*.json"))) == 12
    assert (training.loc[training["kind"] == "l2s", "beta"] == 0.0).all()
    assert sorted(np.sign(training.loc[training["kind"] == "amps", "beta"]).unique()) == [-1.0, 1.0]

    selection, scan = tmp_path / "selection.json", tmp_path / "scan.csv"
    select_amps(
        build(SelectAmps, TINY, model="tiny"),
        bench,
        model,
        str(activations_path),
        str(mcr_path),
        str(steerers),
        str(selection),
        str(scan),
    )
    chosen = read_json(selection)
    scanned = read_table(scan)
    for direction in DIRECTIONS:
        for method in ("mean", "p2s", "l2s", "amps", "amps_online"):
            seeds = chosen[direction][method]["seeds"]
            assert len(seeds) == (2 if method in ("l2s", "amps") else 1)
            for entry in seeds:
                assert entry["strength"] in amps_section["strengths"]
                # Each strength is chosen on the method's own scan (β = 0: the unscaled method's), a row of the scan table.
                scanned_as, candidate = method, ""
                if method in ("amps", "amps_online"):
                    candidate = chosen[direction][method]["scaling"]["name"]
                    if candidate == "b0":
                        scanned_as, candidate = {"amps": "l2s", "amps_online": "mean"}[method], ""
                rows = scanned[
                    (scanned["direction"] == direction)
                    & (scanned["method"] == scanned_as)
                    & (scanned["candidate"].astype("string").fillna("") == candidate)
                    & (scanned["seed"] == entry["seed"])
                    & (scanned["strength"] == entry["strength"])
                ]
                assert len(rows) == 1 and rows["shift"].iloc[0] == pytest.approx(entry["shift"])
        for method in ("amps", "amps_online"):
            sign = chosen[direction][method]["sign"]
            scaled = chosen[direction][method]["scaling"]
            assert sign["sign"] in (-1, 0, 1) and (scaled["beta"] == 0.0 or np.sign(scaled["beta"]) == sign["sign"])
            assert scaled["factor_mean"] == pytest.approx(1.0) and scaled["factor_max"] <= amps_section["max_factor"]

    steered_eval(
        build(SteeredEval, TINY, model="tiny"),
        bench,
        model,
        str(activations_path),
        str(mcr_path),
        str(selection),
        str(steerers),
        str(tmp_path / "answers"),
    )
    answer_paths = [str(tmp_path / "answers" / f"{method}-{direction}.parquet") for method in METHODS for direction in DIRECTIONS]
    assert sorted(str(path) for path in (tmp_path / "answers").iterdir()) == sorted(answer_paths)
    curve = CurveSettings.from_config(amps_section["curve"])
    for path in answer_paths:
        method, direction = Path(path).stem.split("-")
        written = read_table(path)
        assert set(written["method"]) == {method} and set(written["direction"]) == {direction}
        if method == "instruction":
            continue
        for seed, rows in written.groupby("seed"):
            conflict = rows[rows["condition"] == "conflict"]
            main = chosen[direction][method]["seeds"][seed]["strength"]
            # The curve holds the validation choice (the main point, where the agreeing control is asked too).
            assert set(conflict.loc[conflict["main"], "strength"]) == {main}
            assert set(rows.loc[rows["condition"] == "agreeing", "strength"]) == {main}
            assert conflict["strength"].nunique() <= curve.max_points + 1

    ablate_amps(
        build(AblateAmps, TINY),
        bench,
        model,
        str(activations_path),
        str(mcr_path),
        str(selection),
        str(tmp_path / "ablations"),
        "8",
    )
    ablation_paths = [str(tmp_path / "ablations" / f"{family}.parquet") for family in ABLATION_FAMILIES]
    assert sorted(str(path) for path in (tmp_path / "ablations").iterdir()) == sorted(ablation_paths)
    beta = read_table(ablation_paths[ABLATION_FAMILIES.index("beta")])
    assert set(beta["value"]) >= {"-1", "1"} and set(beta["method"]) == {"amps", "amps_online"}
    samples = read_table(ablation_paths[ABLATION_FAMILIES.index("samples")])
    assert set(samples["samples"]) == {2, 3}

    baseline = tmp_path / "baseline.parquet"
    evaluate_baseline(build(EvaluateBaseline, TINY, model="tiny"), bench, model, str(baseline))
    names = ("main", "scale", "matched", "budget", "selection", "ablation")
    tables = {name: str(tmp_path / "tables" / f"amps_{name}.csv") for name in names}
    summarize_amps(
        SummarizeAmps(
            "unit",
            "tiny",
            ("tiny",),
            "tiny",
            tuple(amps_section["collapse_budgets"]),
            CurveSettings.from_config(amps_section["curve"]),
        ),
        ",".join(answer_paths),
        str(baseline),
        str(selection),
        ",".join(ablation_paths),
        str(tmp_path / "tables" / "amps_scores.csv"),
        **tables,
    )
    main = read_table(tables["main"])
    assert main["method"].tolist() == ["none", "instruction", "mean", "l2s", "amps", "amps_online", "p2s"]
    none = main.set_index("method").loc["none"]
    assert none["to_vision.shift"] == 0.0 and none["to_text.collapse"] == 0.0
    assert main.set_index("method").loc["amps", "seeds"] == 2
    budget = read_table(tables["budget"])
    assert len(budget) == 2 * 5 and (budget["shift_within_0.05"] >= 0).all()
    assert len(read_table(tables["selection"])) == 2 * (1 + 1 + 2 + 2 + 1)
    for name in tables.values():
        assert Path(name).with_suffix(".md").is_file() and Path(name).with_suffix(".tex").is_file()
    assert "\\begin{tabular}" in (tmp_path / "tables" / "amps_main.tex").read_text()

    plot_tradeoff(PlotTradeoff("unit", "tiny"), str(tmp_path / "tables" / "amps_scores.csv"), str(tmp_path / "tradeoff.pdf"))
    plot_examples(
        PlotExamples("unit", "tiny", "tiny", "to_vision", examples=2),
        str(tmp_path / "answers" / "mean-to_vision.parquet"),
        str(tmp_path / "answers" / "amps-to_vision.parquet"),
        bench,
        str(tmp_path / "examples.pdf"),
    )
    for figure in ("tradeoff.png", "examples.png"):
        assert (tmp_path / figure).stat().st_size > 5000
