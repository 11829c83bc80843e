"""The input ablation (the reference the MCR is set against): against the models' own full forward, on every
tiny family, and its ratio's edge cases; the answer-position ablation against the model's own cached forward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import amps
from amps.data import prompts, world
from amps.mcr import ablation
from amps.mcr import table as mcr_tables
from amps.models.loading import load_model
from amps.vocabulary import ORDERS

from tiny_models import TINY_FAMILIES, build_tiny_model


def reference_text_probability(model, record, order, image, context) -> float:
    """P(text option) among (A, B) from the model's own logits over the whole vocabulary (no amps shortcut)."""
    query = prompts.conflict_query({**record, "context": context}, order)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query.prompt}]}]
    text = model.processor.apply_chat_template(chat, add_generation_prompt=True)
    inputs = model.processor(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        logits = model.model(**inputs).logits[0, -1, list(model.option_token_ids())].float()
    return float(logits.softmax(-1)[0 if query.option_a == record["answer_text"] else 1])


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_the_ablation_equals_the_models_own_forward_without_each_modality(family, tmp_path):
    model = load_model(build_tiny_model(family, tmp_path / family), device="cpu", dtype="float32")
    record = world.make_records(["color"], 1, seed=1)[0]
    record["image"] = world.render_record_image("color", record["answer_vision"], record["image_id"], 32)
    clean = {order: ablation.option_logits(model, record, order, record["image"], record["context"]) for order in ORDERS}
    columns = ablation.input_ablation(model, record, clean)
    assert list(columns) == mcr_tables.INPUT_ABLATION_COLUMNS
    empty = ablation.empty_like(record["image"])
    expected = {
        "p_text_clean": (record["image"], record["context"]),
        "p_text_no_image": (empty, record["context"]),
        "p_text_no_context": (record["image"], None),
    }
    for column, (image, context) in expected.items():
        reference = np.mean([reference_text_probability(model, record, order, image, context) for order in ORDERS])
        assert columns[column] == pytest.approx(reference, abs=1e-5), column
    # Random weights still read both inputs: taking either away moves the answer.
    assert columns["p_text_no_image"] != pytest.approx(columns["p_text_clean"], abs=1e-6)
    assert columns["p_text_no_context"] != pytest.approx(columns["p_text_clean"], abs=1e-6)


def test_a_record_without_context_has_no_text_pull(tiny_model):
    record = world.make_records(["counting"], 1, seed=2)[0]
    record["image"] = world.render_record_image("counting", record["answer_vision"], record["image_id"], 32)
    record["context"] = None
    clean = {order: ablation.option_logits(tiny_model, record, order, record["image"], None) for order in ORDERS}
    columns = ablation.input_ablation(tiny_model, record, clean)
    assert columns["p_text_no_context"] == columns["p_text_clean"]
    # No text pull: the ratio is 0 where the image pulls, undefined where nothing does.
    image_pulls = columns["p_text_no_image"] > columns["p_text_clean"]
    assert columns["ablation_ratio"] == 0.0 if image_pulls else math.isnan(columns["ablation_ratio"])


def test_the_ratio_is_the_texts_share_of_the_two_pulls_toward_their_own_answers():
    # The context raises P(text) by 0.3, the image lowers it by 0.1: three quarters of the pull is the text's.
    assert ablation.ablation_ratio(clean=0.5, no_image=0.6, no_context=0.2) == pytest.approx(0.75)
    # A modality pulling away from its own answer counts as no pull.
    assert ablation.ablation_ratio(clean=0.5, no_image=0.4, no_context=0.2) == 1.0
    assert ablation.ablation_ratio(clean=0.5, no_image=0.9, no_context=0.7) == 0.0
    assert math.isnan(ablation.ablation_ratio(clean=0.5, no_image=0.5, no_context=0.5))


def test_the_empty_image_keeps_the_size_and_shows_nothing():
    image = world.render_record_image("color", "red", "000001000001", 48)
    empty = ablation.empty_like(image.resize((48, 30)))
    assert empty.size == (48, 30) and empty.getcolors() == [(48 * 30, world.BACKGROUND)]


def test_the_mcr_does_not_depend_on_the_ablation_beside_it(tiny_model, tiny_benchmark_dir):
    from amps.data.benchmark import Benchmark

    benchmark = Benchmark(tiny_benchmark_dir)
    record = {**benchmark.records.iloc[0], "image": benchmark.image(benchmark.records.iloc[0]["record_id"])}
    with_ablation = amps.measure_mcr(tiny_model, record, samples=4, seed=5).columns
    without = amps.measure_mcr(tiny_model, record, samples=4, seed=5, ablation=False).columns
    assert all(math.isnan(without[column]) for column in mcr_tables.ABLATION_COLUMNS)
    assert all(np.isfinite(with_ablation[column]) for column in mcr_tables.ABLATION_COLUMNS if not column.endswith("ratio"))
    assert {key: value for key, value in without.items() if key not in mcr_tables.ABLATION_COLUMNS} == {
        key: value for key, value in with_ablation.items() if key not in mcr_tables.ABLATION_COLUMNS
    }


def reference_answer_probability(model, record, order, hide: str | None) -> float:
    """P(text option) after the model's own cached forward: the prompt but its last token prefilled, then the last
    token fed with ``hide``'s positions masked out of its attention (transformers' padding mask, no amps shortcut)."""
    query = prompts.conflict_query(record, order)
    batch = model.encode([record["image"]], [query.prompt], contexts=[record["context"]])
    inputs = batch.inputs
    mask = inputs["attention_mask"].clone()
    if hide is not None:
        mask[0, {"image": batch.image_mask, "text": batch.context_mask}[hide][0]] = 0
    with torch.no_grad():
        prefix = {
            key: value[:, :-1] if key in ("input_ids", "attention_mask", "position_ids") else value
            for key, value in inputs.items()
        }
        cache = model.model(**prefix, use_cache=True).cache
        output = model.model(
            input_ids=inputs["input_ids"][:, -1:], attention_mask=mask, position_ids=inputs["position_ids"][:, -1:], cache=cache
        )
    logits = output.logits[0, -1, list(model.option_token_ids())].float()
    return float(logits.softmax(-1)[0 if query.option_a == record["answer_text"] else 1])


def test_the_answer_position_ablation_hides_a_modality_from_the_last_token_only(tmp_path):
    model = load_model(build_tiny_model("llava", tmp_path / "llava"), device="cpu", dtype="float32")
    record = world.make_records(["color"], 1, seed=3)[0]
    record["image"] = world.render_record_image("color", record["answer_vision"], record["image_id"], 32)
    columns = amps.measure_mcr(model, record, samples=2, seed=0).columns
    clean = np.mean([reference_answer_probability(model, record, order, None) for order in ORDERS])
    assert columns["p_text_clean"] == pytest.approx(clean, abs=1e-6)
    for column, hide in (("p_text_answer_no_image", "image"), ("p_text_answer_no_context", "text")):
        reference = np.mean([reference_answer_probability(model, record, order, hide) for order in ORDERS])
        # Random weights move the answer by about 1e-4; the two ways agree to float32 rounding.
        assert abs(reference - clean) > 2e-5, column
        assert columns[column] - columns["p_text_clean"] == pytest.approx(reference - clean, abs=1e-6), column
    # Hiding a modality from the answer alone is not taking it away: the other positions still read it.
    assert abs(columns["p_text_answer_no_image"] - columns["p_text_no_image"]) > 2e-5
    assert abs(columns["p_text_answer_no_context"] - columns["p_text_no_context"]) > 2e-5
    expected = ablation.ablation_ratio(
        columns["p_text_clean"], columns["p_text_answer_no_image"], columns["p_text_answer_no_context"]
    )
    assert columns["answer_ablation_ratio"] == pytest.approx(expected, nan_ok=True)
    # Without a context there is no text to hide.
    alone = amps.measure_mcr(model, {**record, "context": None}, samples=2, seed=0).columns
    assert alone["p_text_answer_no_context"] == alone["p_text_clean"]
