"""The asking engine: batches encoded once, ahead and on the host; answers that are full greedy generation's at less
cost, steered or not, on all three families; greedy whatever the checkpoint's generation config says."""

from __future__ import annotations

import contextlib
import logging

import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.method.steering_module import learned_steering, load_steering_module
from amps.models.asking import FIRST_TOKENS, Question, QuestionBatches, answer, evaluation_questions, greedy_tokens
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.steering.activations import load_mean_vector
from amps.steering.hook import SteeringVector

from tiny_models import TINY_FAMILIES, build_tiny_model, forced_tokens

RECORDS = [
    {"question": "What color is the bus?", "answer_vision": "red", "answer_text": "blue", "context": "A blue bus waits."},
    {"question": "Where is the cat?", "answer_vision": "left", "answer_text": "right", "context": "The cat sits on the right."},
    {"question": "How many dogs are there?", "answer_vision": "two", "answer_text": "three", "context": None},
]
NEW_TOKENS = 6


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family_model(request, tmp_path_factory) -> MultimodalModel:
    folder = build_tiny_model(request.param, tmp_path_factory.mktemp(request.param) / "model")
    return load_model(folder, device="cpu")


def questions_and_batch(model: MultimodalModel, count: int = 12) -> tuple[list[Question], object]:
    """``count`` questions over three records, both orders, three instructions; images of three aspect ratios."""
    questions, images = [], []
    for index in range(count):
        order, instruction = ("vision_first", "text_first")[index % 2], ("none", "image", "text")[(index // 3) % 3]
        query = prompts.conflict_query(RECORDS[index % 3], order, instruction)
        questions.append(Question(index, "conflict", order, query.prompt, query.option_a, query.option_b))
        images.append(Image.effect_noise((32 + 16 * (index % 3), 32), 40 + index).convert("RGB"))
    return questions, model.encode(images, [question.prompt for question in questions])


def letters_then_end(model: MultimodalModel):
    """A rule for :func:`forced_tokens`: by its prompt, a row answers "A" and ends, answers "B" and writes on, ends at
    once, or is left to the random weights; after "A" comes the end token."""
    option_a, option_b = model.option_token_ids()
    end = model.end_tokens()[0]

    def choose(tokens: list[int]) -> dict[int, float]:
        if len(tokens) > 1:
            chosen = (option_a, option_b, end, None)[sum(tokens) % 4]
            return {} if chosen is None else {chosen: 60.0}
        return {end: 60.0} if tokens == [option_a] else {}

    return choose


def generation_calls(model: MultimodalModel, monkeypatch) -> list[tuple[int, int]]:
    """(rows, max_new_tokens) of every generation from here on."""
    calls: list[tuple[int, int]] = []
    generate = model.generate_tokens

    def recorded(batch, max_new_tokens):
        calls.append((batch.rows, max_new_tokens))
        return generate(batch, max_new_tokens)

    monkeypatch.setattr(model, "generate_tokens", recorded)
    return calls


def test_answers_are_full_greedy_generation_and_only_open_rows_generate_on(family_model, monkeypatch):
    questions, batch = questions_and_batch(family_model)
    with forced_tokens(family_model, letters_then_end(family_model)):
        reference = family_model.generate(batch, NEW_TOKENS)
        calls = generation_calls(family_model, monkeypatch)
        ours = family_model.decode(greedy_tokens(family_model, questions, batch, NEW_TOKENS))
    assert ours == reference
    # Both ways were taken: rows answered "A" after the first round, the others were generated on by themselves.
    assert reference.count("A") >= 2 and reference.count("") >= 2
    (first_rows, first_tokens), (open_rows, open_tokens) = calls
    assert (first_rows, first_tokens) == (len(questions), FIRST_TOKENS)
    assert 0 < open_rows <= len(questions) - reference.count("A") - reference.count("") and open_tokens == NEW_TOKENS


def test_steered_answers_are_full_greedy_generation_steered(family_model):
    """Per-row vectors and a learned module act in each round as in one generation of the whole batch."""
    questions, batch = questions_and_batch(family_model)
    generator = torch.Generator().manual_seed(3)
    vectors = 3.0 * torch.randn(len(questions), family_model.hidden_size, generator=generator)
    module = torch.nn.Linear(family_model.hidden_size, family_model.hidden_size)
    steerings = {
        "per-row vectors": lambda chunk, _batch: SteeringVector(
            vectors[[question.record_index for question in chunk]], 1, "all"
        ).apply(family_model, 1.0),
        "learned module": lambda _chunk, _batch: learned_steering(family_model, module, 0, 1, 2.0, "all"),
    }
    with forced_tokens(family_model, letters_then_end(family_model)):
        unsteered = family_model.generate(batch, NEW_TOKENS)
        for name, steering in steerings.items():
            with steering(questions, batch):
                reference = family_model.generate(batch, NEW_TOKENS)
            assert family_model.decode(greedy_tokens(family_model, questions, batch, NEW_TOKENS, steering)) == reference, name
            assert reference != unsteered, f"{name} changed nothing: the test would not see a missing context"


def test_a_checkpoints_generation_settings_do_not_change_greedy_answers(tmp_path, caplog):
    """Saved with a repetition penalty and sampling settings, the model still answers by the argmax of each step."""
    folder = build_tiny_model("qwen2_vl", tmp_path / "qwen")
    hub = AutoModelForImageTextToText.from_pretrained(folder)
    # A penalty strong enough to change this tiny model's greedy tokens (Qwen's own file has 1.05).
    settings = {"repetition_penalty": 2.0, "do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.8}
    hub.generation_config.update(**settings)
    hub.generation_config.save_pretrained(folder)
    with caplog.at_level(logging.INFO, logger="amps.models.interface"):
        model = load_model(folder, device="cpu")
    assert "'repetition_penalty': 2.0" in caplog.text and "'do_sample': True" in caplog.text
    assert model.model.generation_config.repetition_penalty == 2.0  # the model itself is left as it was
    questions, batch = questions_and_batch(model, 6)

    @torch.no_grad()
    def argmax_steps(network) -> torch.Tensor:
        """Greedy by hand: the whole sequence run again at each step, the argmax of its last logits appended."""
        inputs, written = dict(batch.inputs), []
        for _step in range(NEW_TOKENS):
            chosen = network(**inputs).logits[:, -1].argmax(dim=-1, keepdim=True)
            written.append(chosen)
            ones = torch.ones_like(chosen)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], chosen], dim=1)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], ones], dim=1)
            inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], 0 * ones], dim=1)
        return torch.cat(written, dim=1)

    by_hand = argmax_steps(model.model)
    assert torch.equal(model.generate_tokens(batch, NEW_TOKENS), by_hand)
    assert greedy_tokens(model, questions, batch, NEW_TOKENS) == by_hand.tolist()
    # The saved penalty does change greedy tokens where it is applied: without the override the answers would differ.
    penalised = hub.generate(**batch.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)[:, batch.input_ids.shape[1] :]
    assert not torch.equal(penalised, by_hand)


def test_rows_are_taken_with_their_own_images(family_model):
    """A batch's rows alone (Qwen: their slices of the concatenated patches) give the same logits as in the batch."""
    _questions, batch = questions_and_batch(family_model, 5)
    rows = [3, 0, 4]
    with torch.no_grad():
        whole = family_model.forward(batch).logits[rows]
        taken = family_model.forward(batch.select(rows)).logits
    assert torch.allclose(taken, whole, atol=1e-5)
    assert torch.equal(batch.select(rows).input_ids, batch.input_ids[rows])


def test_batches_live_on_the_host_with_images_in_the_models_dtype(tiny_model_dir):
    """A bf16 model's batch holds bf16 images on the CPU, and answers as the float32 images (cast in the model) do."""
    model = load_model(tiny_model_dir, device="cpu", dtype="bfloat16")
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    batch = model.encode([image, image], ["What color is the shape?", "Where is the shape?"])
    assert all(tensor.device.type == "cpu" for tensor in batch.inputs.values())
    assert batch.inputs["pixel_values"].dtype == torch.bfloat16
    pixels = model.processor.image_processor([image, image], return_tensors="pt")["pixel_values"]
    full_precision = dict(batch.inputs, pixel_values=pixels)
    assert full_precision["pixel_values"].dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(model.forward(batch).logits, model.model(**full_precision).logits)


def test_each_batch_is_encoded_once_ahead_and_in_order(tiny_model, tiny_benchmark_dir, monkeypatch):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test")
    questions = evaluation_questions(records, "conflict")
    encoded: list[list[str]] = []
    encode = tiny_model.encode

    def counted(images, texts, *args, **kwargs):
        encoded.append(list(texts))
        return encode(images, texts, *args, **kwargs)

    monkeypatch.setattr(tiny_model, "encode", counted)
    kept = QuestionBatches(tiny_model, benchmark, records, questions, 5, keep=True)
    first = list(kept.head(7))
    assert [len(chunk) for chunk, _batch in first] == [5, 5]  # enough batches for 7 prompts, no more
    passes = [answer(tiny_model, kept, 3, desc="pass") for _ in range(2)]
    assert len(encoded) == len(kept.chunks) and [texts for texts in encoded] == [[q.prompt for q in c] for c in kept.chunks]
    pd.testing.assert_frame_equal(passes[0], passes[1])
    # What the background thread encoded is what encoding each batch in the main thread gives.
    for chunk, batch in kept:
        direct = encode([benchmark.image(records.iloc[q.record_index]["record_id"]) for q in chunk], [q.prompt for q in chunk])
        assert all(torch.equal(batch.inputs[key], direct.inputs[key]) for key in direct.inputs)
    encoded.clear()
    once = QuestionBatches(tiny_model, benchmark, records, questions, 5, keep=False)
    list(once), list(once)
    assert len(encoded) == 2 * len(once.chunks) and once.encoded == []


def test_an_encoding_error_in_the_background_reaches_the_caller(tiny_model, tiny_benchmark_dir):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test").assign(record_id=lambda frame: frame["record_id"].where(frame.index != 3, "missing-record"))
    batches = QuestionBatches(tiny_model, benchmark, records, evaluation_questions(records, "conflict"), 4, keep=True)
    with pytest.raises(KeyError, match="missing-record"):
        list(batches)
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        QuestionBatches(tiny_model, benchmark, records, [], 0, keep=True)


@pytest.mark.parametrize("rows_end", [True, False])
def test_a_pass_where_answers_run_on_generates_its_batches_whole(rows_end, tiny_model, tiny_benchmark_dir, monkeypatch):
    """After a first batch whose rows mostly run on, the next batches skip the first round; the answers stay greedy."""
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test")
    batches = QuestionBatches(tiny_model, benchmark, records, evaluation_questions(records, "conflict"), 4, keep=True)
    option_a, end = tiny_model.option_token_ids()[0], tiny_model.end_tokens()[0]

    def choose(tokens: list[int]) -> dict[int, float]:
        return {option_a: 60.0} if len(tokens) > 1 else {end: 60.0 if rows_end else -60.0}

    with forced_tokens(tiny_model, choose):
        reference = [text for _chunk, batch in batches for text in tiny_model.generate(batch, 4)]
        calls = generation_calls(tiny_model, monkeypatch)
        answers = answer(tiny_model, batches, 4, desc="pass")
    assert answers["answer"].tolist() == reference
    assert all(text == "A" if rows_end else text.startswith("A ") and len(text.split()) == 4 for text in reference)
    if rows_end:
        assert calls == [(4, FIRST_TOKENS)] * len(batches.chunks)
    else:
        assert calls == [(4, FIRST_TOKENS), (4, 4)] + [(4, 4)] * (len(batches.chunks) - 1)


@pytest.mark.slow
@pytest.mark.dag
def test_a_toy_trained_by_the_dag_answers_as_full_generation(slurm_run):
    """The test config's toy (the shared SLURM-profile run), given room for 4 tokens: unsteered, under mean steering and
    under its AMPS module, its answers (some ending at once, some writing on) are one generate of each batch."""
    run = slurm_run.workdir / "results" / "test"
    model = load_model(run / "models" / "toy-xs", device="cpu")
    benchmark = Benchmark(run / "benchmark")
    records = benchmark.split("test")
    batches = QuestionBatches(model, benchmark, records, evaluation_questions(records, "conflict"), 8, keep=True)
    vector = load_mean_vector(run / "activations" / "toy-xs.safetensors", "to_text")
    module = load_steering_module(run / "amps" / "toy-xs", "amps", "to_vision")
    steerings = {
        "unsteered": lambda _chunk, _batch: contextlib.nullcontext(),
        "mean vector, strength 4": lambda _chunk, _batch: vector.apply(model, 4.0),
        "AMPS module": lambda _chunk, _batch: module.apply(model),
    }
    written = []
    for name, steering in steerings.items():
        answers = answer(model, batches, 4, steering, desc=name)["answer"].tolist()
        reference = []
        for chunk, batch in batches:
            with steering(chunk, batch):
                reference += model.generate(batch, 4)
        assert answers == reference, name
        written += answers
    assert "" in written and any(len(text.split()) > 1 for text in written), "both ways should be taken"
