"""The public API: ``import amps`` stays light, every exported name is documented with an example, the MCR of a
record equals the pipeline's, its settings default to the schema's and are checked by it, and answers score."""

from __future__ import annotations

import dataclasses
import inspect
import math
import subprocess
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

import amps
from amps.core.config import ConfigError, load_schema
from amps.data.benchmark import Benchmark
from amps.mcr.records import estimate_records
from amps.mcr.settings import MAX_BATCH, EstimatorSettings


def test_import_amps_loads_neither_torch_nor_datasets_and_every_name_resolves():
    code = "import sys, amps\nprint(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
    assert sorted(amps.__all__) == sorted(amps._EXPORTS)
    for name in amps.__all__:
        value = getattr(amps, name)
        assert value.__module__.startswith("amps."), name
        assert "Example::" in (inspect.getdoc(value) or ""), f"amps.{name} has no example in its docstring"
    assert set(amps.__all__) <= set(dir(amps))
    with pytest.raises(AttributeError, match="no attribute 'mcr_of'"):
        getattr(amps, "mcr_of")


def test_the_estimator_defaults_are_the_schemas():
    schema = load_schema()["properties"]["mcr"]["properties"]
    defaults = EstimatorSettings()
    for field in dataclasses.fields(EstimatorSettings):
        if field.name in schema:
            assert getattr(defaults, field.name) == schema[field.name]["default"], field.name
    assert MAX_BATCH == schema["max_batch"]["default"]
    signature = inspect.signature(amps.measure_mcr).parameters
    for field in dataclasses.fields(EstimatorSettings):
        assert signature[field.name].default == getattr(defaults, field.name), field.name


def test_the_mcr_of_a_record_of_the_prepared_benchmark_is_the_pipelines(tiny_model, tiny_benchmark_dir):
    """A user's row of ``load_from_disk`` gives the number the pipeline's MCR shard writes for that record."""
    settings = EstimatorSettings(samples=4, seed=11)
    pipeline = estimate_records(tiny_model, Benchmark(tiny_benchmark_dir), range(3), settings, MAX_BATCH, "mcr")
    rows = datasets.load_from_disk(str(tiny_benchmark_dir)).select(range(3))
    one = amps.measure_mcr(tiny_model, rows[1], samples=4, seed=11)
    many = amps.measure_mcr(tiny_model, rows, samples=4, seed=11)
    assert isinstance(one, amps.McrEstimate) and len(many) == 3
    assert one.columns == many[1].columns
    for index, estimate in enumerate(many):
        assert (estimate.mcr, estimate.se) == (pipeline.loc[index, "mcr"], pipeline.loc[index, "mcr_se"])
        assert estimate.mcr_fisher == pipeline.loc[index, "mcr_fisher"] and estimate.problem == ""
        assert 0 <= estimate.mcr <= 1 and estimate.se > 0
    # Another seed draws other noise.
    assert amps.measure_mcr(tiny_model, rows[1], samples=4, seed=12).mcr != one.mcr


def test_a_users_own_record_needs_no_id_and_no_context(tiny_model):
    record = {
        "image": Image.new("RGB", (32, 32), (200, 40, 40)),
        "question": "What color is the shape?",
        "answer_vision": "red",
        "answer_text": "blue",
        "context": "The shape is blue.",
    }
    estimate = amps.measure_mcr(tiny_model, record, samples=3, fisher=False)
    assert 0 <= estimate.mcr <= 1 and math.isnan(estimate.mcr_fisher)
    assert amps.measure_mcr(tiny_model, record, samples=3, fisher=False).columns == estimate.columns
    without = amps.measure_mcr(tiny_model, {**record, "context": None}, samples=3, fisher=False)
    assert without.mcr == 0.0 and without.columns["mcs_text"] == 0.0


def test_bad_settings_and_records_are_named(tiny_model, tiny_benchmark_dir):
    row = datasets.load_from_disk(str(tiny_benchmark_dir))[0]
    for settings, named in (
        ({"answer": "visual"}, "mcr.answer: 'visual' is not one of"),
        ({"samples": 1}, "mcr.samples: 1 is less than the minimum of 2"),
        ({"sigma": 0}, "mcr.sigma: 0 is less than or equal to the minimum of 0"),
        ({"text": "question"}, "mcr.text: 'question' is not one of"),
    ):
        with pytest.raises(ConfigError, match=named):
            amps.measure_mcr(tiny_model, row, **settings)
    with pytest.raises(ValueError, match=r"the MCR record lacks \['answer_text'\]"):
        amps.measure_mcr(tiny_model, {key: value for key, value in row.items() if key != "answer_text"})
    with pytest.raises(TypeError, match="image must be a PIL image, got a str"):
        amps.measure_mcr(tiny_model, {**row, "image": "bus.jpg"})
    with pytest.raises(TypeError, match="an MCR record is a mapping"):
        amps.measure_mcr(tiny_model, ["not a record"])


def test_answers_parse_classify_and_score(tiny_benchmark_dir):
    record = datasets.load_from_disk(str(tiny_benchmark_dir))[0]
    query = amps.conflict_query(record, "text_first")
    assert (query.option_a, query.option_b) == (record["answer_text"], record["answer_vision"])
    assert query.prompt.startswith(f"Text context: {record['context']}")
    answers = ["B", f"The answer is {record['answer_text']}", "A. B.", "b)"]
    letters = [amps.parse_letter(answer, query.option_a, query.option_b) or "" for answer in answers]
    choices = [amps.classify(answer, record, "text_first") for answer in answers]
    assert letters == ["B", "A", "", "B"] and choices == ["vision", "text", "other", "vision"]
    shares = amps.modality_shares(choices, letters)
    assert shares == {"n": 4, "s_vision": 0.5, "s_text": 0.25, "s_other": 0.25, "vision_ratio": 2 / 3, "rate_a": 0.25}
    assert math.isnan(amps.modality_shares(choices)["rate_a"]) and math.isnan(amps.modality_shares([])["s_vision"])
    with pytest.raises(ValueError, match=r"unknown answer choices \['', 'A', 'B'\]"):
        amps.modality_shares(letters)


def test_the_parser_examples_in_the_docstring_hold():
    assert amps.parse_letter("The answer is (B) blue", "red", "blue") == "B"
    assert amps.parse_letter("a blue ball", "red", "blue") == "B"
    assert amps.parse_letter("A. blue", "red", "blue") is None
    assert np.isclose(amps.modality_shares(["vision", "text", "vision", "other"], ["A", "A", "B", ""])["vision_ratio"], 2 / 3)
