"""The offline conflict world: records, images that show the vision answer, splits, corpus."""

import itertools
import re
from collections import Counter

import datasets
import numpy as np
import pandas as pd
import pytest

from amps.data import corpus, world
from amps.data.benchmark import Benchmark, Splits, assign_splits


def test_records_are_mc2_shaped_conflicts():
    records = world.make_records(list(world.TASKS), 30, seed=1)
    assert len(records) == 150
    assert Counter(r["task"] for r in records) == {name: 30 for name in world.TASKS}
    for record in records:
        assert record["answer_vision"] != record["answer_text"]
        assert record["answer_text"] in record["context"]
        assert record["answer_vision"] in record["context_agreeing"]
        assert len(record["image_id"]) == 12 and record["image_id"].isdigit()
    assert len({r["image_id"] for r in records}) == 150


def test_same_seed_same_records_and_pixels():
    first, second = world.make_records(["color"], 5, 9), world.make_records(["color"], 5, 9)
    assert first == second
    images = [world.render_record_image("color", r["answer_vision"], r["image_id"], 32) for r in (first[0], second[0])]
    assert images[0].tobytes() == images[1].tobytes()


@pytest.mark.parametrize("color", sorted(world.COLORS))
def test_color_images_show_the_vision_answer(color):
    pixels = np.asarray(world.render_record_image("color", color, "000000000001", 32)).reshape(-1, 3)
    foreground = pixels[(pixels != world.BACKGROUND).any(axis=1)]
    assert (foreground == world.COLORS[color]).all(axis=1).mean() > 0.95


@pytest.mark.parametrize("count", ["one", "two", "three", "four"])
def test_counting_images_hold_that_many_objects(count):
    pixels = np.asarray(world.render_record_image("counting", count, "000000000002", 32))
    quadrants = [pixels[y : y + 16, x : x + 16] for y in (0, 16) for x in (0, 16)]
    occupied = sum((quadrant != world.BACKGROUND).any() for quadrant in quadrants)
    assert occupied == ["one", "two", "three", "four"].index(count) + 1


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_position_images_put_the_object_on_that_side(side):
    pixels = np.asarray(world.render_record_image("positional_reasoning", side, "000000000003", 32))
    ys, xs = np.nonzero((pixels != world.BACKGROUND).any(axis=2))
    centre = {"left": xs.mean() < 12, "right": xs.mean() > 20, "top": ys.mean() < 12, "bottom": ys.mean() > 20}
    assert centre[side]


def test_splits_are_disjoint_stratified_and_deterministic():
    records = pd.DataFrame(world.make_records(["color", "counting"], 50, 0))
    fractions = Splits(steer_train=0.4, validation=0.2, test=0.4)
    split = assign_splits(records, fractions, seed=5)
    assert split.equals(assign_splits(records, fractions, seed=5))
    assert not split.equals(assign_splits(records, fractions, seed=6))
    counts = pd.crosstab(records["task"], split)
    assert (counts["steer_train"] == 20).all() and (counts["validation"] == 10).all() and (counts["test"] == 20).all()


def test_prepared_benchmark_folder(tiny_benchmark_dir):
    benchmark = Benchmark(tiny_benchmark_dir)
    assert len(benchmark.records) == 20
    assert set(benchmark.records["split"]) == {"steer_train", "validation", "test"}
    assert benchmark.image(benchmark.records.iloc[0]["record_id"]).size == (32, 32)
    assert not list(tiny_benchmark_dir.parent.glob(".*partial"))
    with pytest.raises(KeyError, match="'nowhere-1' is not in the benchmark"):
        benchmark.image("nowhere-1")
    with pytest.raises(FileNotFoundError, match="holds no prepared benchmark"):
        Benchmark(tiny_benchmark_dir.parent)


def test_the_prepared_benchmark_round_trips_through_load_from_disk(tiny_benchmark_dir):
    """A user's ``load_from_disk`` gets the records every step reads, each with the image that shows its answer."""
    dataset = datasets.load_from_disk(str(tiny_benchmark_dir))
    benchmark = Benchmark(tiny_benchmark_dir)
    assert isinstance(dataset.features["image"], datasets.Image)
    assert dataset.column_names == [*benchmark.records.columns, "image"]
    assert list(benchmark.records.columns[:7]) == [
        "record_id",
        "image_id",
        "task",
        "question",
        "answer_vision",
        "answer_text",
        "context",
    ]
    pd.testing.assert_frame_equal(dataset.remove_columns("image").to_pandas(), benchmark.records)
    for row in (0, 13):
        record = dataset[row]
        shown = world.render_record_image(
            record["task"], record["answer_vision"], record["image_id"], 32, record["image_strength"]
        )
        assert np.array_equal(np.asarray(record["image"].convert("RGB")), np.asarray(shown))
        assert np.array_equal(np.asarray(benchmark.image(record["record_id"])), np.asarray(shown))
        blank = np.asarray(benchmark.image(record["record_id"], blank=True))
        assert (blank == np.array(world.BACKGROUND)).all()


PREFERENCE = corpus.Preference(steepness=6.0, task_bias={"color": -2.0, "counting": 2.0}, spread=0.5, image_strength=(0.3, 1.0))


def test_training_corpus_has_every_kind_and_no_shortcut():
    mix = {kind: 1.0 for kind in corpus.EXAMPLE_KINDS}
    examples = list(itertools.islice(corpus.training_examples(list(world.TASKS), mix, PREFERENCE, 32, 0), 800))
    assert {example.kind for example in examples} == set(corpus.EXAMPLE_KINDS)
    image_instructed_hard = [e for e in examples if e.kind == "hard" and "follow the image" in e.prompt]
    assert image_instructed_hard
    for example in image_instructed_hard:
        # The value the context asserts is not an option: "pick the unmentioned option" cannot solve it.
        lines = example.prompt.split("\n")
        options = {lines[-3][3:], lines[-2][3:]}
        assert not any(f" {option}" in lines[0] for option in options), example.prompt
    # Under an instruction with an agreeing context the answer is the option the context names.
    for example in (e for e in examples if e.kind == "instructed_agreeing"):
        lines = example.prompt.split("\n")
        answer = lines[-3][3:] if example.answer == "A" else lines[-2][3:]
        assert f" {answer}" in lines[0], example.prompt
    assert Counter(example.answer for example in examples if example.kind != "word")["A"] / len(examples) > 0.3


def test_uninstructed_and_blank_instructed_conflicts_have_soft_targets():
    mix = {"uninstructed": 1.0, "blank_instructed": 1.0, "instructed": 1.0}
    examples = list(itertools.islice(corpus.training_examples(list(world.TASKS), mix, PREFERENCE, 32, 0), 600))
    for example in examples:
        lines = example.prompt.split("\n")
        options = {"A": lines[-3][3:], "B": lines[-2][3:]}
        if example.kind == "instructed":
            assert example.alternative is None and example.probability == 1.0
            continue
        # The target letter names the context's value, the alternative the other option; p is P(text).
        assert {example.answer, example.alternative} == {"A", "B"}
        assert f" {options[example.answer]}" in lines[0] and f" {options[example.alternative]}" not in lines[0]
        if example.kind == "blank_instructed":
            assert example.probability == 0.5 and "follow the image" in example.prompt
            assert (np.asarray(example.image) == np.array(world.BACKGROUND)).all()
        else:
            assert 0.0 < example.probability < 1.0
            assert "rely on" not in example.prompt and "follow the image" not in example.prompt
    uninstructed = [e.probability for e in examples if e.kind == "uninstructed"]
    assert len(set(uninstructed)) > 50 and min(uninstructed) < 0.1 and max(uninstructed) > 0.9
    # The image instruction is drawn twice as often as the text instruction.
    instructed = [e for e in examples if e.kind == "instructed"]
    share = sum("follow the image" in e.prompt for e in instructed) / len(instructed)
    assert 0.56 < share < 0.77


def test_preference_follows_the_balance_of_the_evidence_and_the_task():
    values = world.TASKS["color"].values
    strong_text = [PREFERENCE.text_probability("color", a, b, 0.3, 1.0, 0) for a in values for b in values if a != b]
    strong_image = [PREFERENCE.text_probability("color", a, b, 1.0, 0.25, 0) for a in values for b in values if a != b]
    assert min(strong_text) > 0.5 > max(strong_image)
    # At an even balance the task's own lean decides: color to the image, counting to the text.
    assert (
        PREFERENCE.text_probability("color", "red", "blue", 0.5, 0.5, 0)
        < 0.5
        < PREFERENCE.text_probability("counting", "one", "two", 0.5, 0.5, 0)
    )
    # Value pairs vary around the rule (their own fixed draws), the same for the same seed.
    even = [PREFERENCE.text_probability("color", a, b, 0.5, 0.5, 0) for a in values for b in values if a != b]
    assert np.std(even) > 0.01 and even == [
        PREFERENCE.text_probability("color", a, b, 0.5, 0.5, 0) for a in values for b in values if a != b
    ]


def test_records_carry_their_evidence_strengths_and_images_show_them():
    records = world.make_records(["color", "counting"], 40, 3, image_strength=(0.3, 1.0))
    strengths = np.array([record["image_strength"] for record in records])
    assert 0.3 <= strengths.min() < 0.45 and 0.85 < strengths.max() <= 1.0
    assert {record["text_strength"] for record in records} == set(world.TEXT_STRENGTHS)
    for record in records:
        # The agreeing context has the same wording, asserting the vision answer instead.
        assert record["context_agreeing"] == re.sub(rf"\b{record['answer_text']}\b", record["answer_vision"], record["context"])
    hedged = next(record for record in records if record["text_strength"] == 0.25)
    assert "nobody is sure" in hedged["context"]
    certain = next(record for record in records if record["text_strength"] == 1.0)
    assert certain["context"].count(certain["answer_text"]) == 2
    # A faint image: the object's colour is blended toward the background and noise covers the canvas.
    clear = np.asarray(world.render_record_image("color", "red", "000000000009", 32, 1.0), dtype=float)
    faint = np.asarray(world.render_record_image("color", "red", "000000000009", 32, 0.3), dtype=float)
    centre = (slice(12, 20), slice(12, 20))
    assert faint[centre][..., 0].mean() < clear[centre][..., 0].mean() - 80
    corner = (slice(0, 3), slice(0, 3))
    assert np.allclose(clear[corner], world.BACKGROUND) and faint[corner].std() > 5
    with pytest.raises(ValueError, match="image strength"):
        world.degrade(world.blank_image(8), 1.5, __import__("random").Random(0))


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown world task 'shapes'"):
        world.task("shapes")


def test_training_loss_is_the_causal_lm_loss_with_soft_answers(tiny_model):
    import torch

    from amps.models.toy import training_loss

    mix = {"uninstructed": 1.0, "word": 1.0, "hard": 1.0}
    examples = list(itertools.islice(corpus.training_examples(list(world.TASKS), mix, PREFERENCE, 32, 1), 12))
    batch = tiny_model.encode(
        [e.image for e in examples], [e.prompt for e in examples], [e.answer for e in examples], locate_prompt=False
    )
    with torch.no_grad():
        output = tiny_model.model(**batch.inputs, labels=batch.labels)
    ids = tiny_model.tokenizer.convert_tokens_to_ids
    alternatives = torch.tensor([ids(e.alternative or e.answer) for e in examples])
    hard = training_loss(output.logits, batch.labels, alternatives, torch.ones(len(examples)))
    assert torch.allclose(hard, output.loss, atol=1e-5)
    # By hand: a soft row's answer token costs p CE(answer) + (1 - p) CE(alternative).
    probabilities = torch.tensor([e.probability for e in examples])
    assert (probabilities < 1).any() and (probabilities == 1).any()
    log_probs = output.logits[:, :-1].float().log_softmax(-1)
    targets, total, count = batch.labels[:, 1:], 0.0, 0
    for row, example in enumerate(examples):
        positions = (targets[row] != -100).nonzero().flatten().tolist()
        for index, position in enumerate(positions):
            cost = -log_probs[row, position, targets[row, position]]
            if index == 0:
                cost = example.probability * cost - (1 - example.probability) * log_probs[row, position, alternatives[row]]
            total, count = total + cost, count + 1
    assert torch.allclose(training_loss(output.logits, batch.labels, alternatives, probabilities), total / count, atol=1e-5)
