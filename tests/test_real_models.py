"""Tiny random-weight LLaVA-1.5, Qwen2-VL and Qwen2.5-VL, saved and reloaded, through the model interface.

The same code that runs the real checkpoints runs here: folders written with ``save_pretrained``,
loaded by :func:`load_model`, inputs built with each family's chat template and left
padding, and the baseline evaluation end to end on an MC²-format benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import LlavaProcessor

from amps.baseline.steps import EvaluateBaseline, evaluate_baseline
from amps.data import prompts
from amps.data.benchmark import Mc2Source, Splits
from amps.data.steps import PrepareBenchmark, prepare_benchmark
from amps.metrics import score
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model, load_processor
from amps.models.qwen import ImageOnlyQwenProcessor, is_qwen_folder
from amps.vocabulary import BASELINE_CONDITIONS, ORDERS

from fake_mc2 import IMAGE_SIZES, synthetic_records, write_coco_folder, write_records
from steps import TINY_MODEL, build
from tiny_models import TEXT_HIDDEN, TEXT_LAYERS, TINY_FAMILIES, build_tiny_model

RECORD = {
    "question": "What colour is the bus?",
    "answer_vision": "red",
    "answer_text": "blue",
    "context": "A blue bus waits at the corner.",
}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny checkpoint per family."""
    root = tmp_path_factory.mktemp("tiny-real")
    return {family: build_tiny_model(family, root / family) for family in TINY_FAMILIES}


@pytest.fixture(scope="module")
def models(model_dirs) -> dict[str, MultimodalModel]:
    return {family: load_model(folder, device="cpu") for family, folder in model_dirs.items()}


def sample_batch() -> tuple[list[Image.Image], list[str]]:
    """Three images of different aspect ratios with prompts of different lengths (so rows need padding)."""
    images = [Image.effect_noise(size, 40).convert("RGB") for size in IMAGE_SIZES[:3]]
    settings = (("vision_first", "none"), ("text_first", "text"), ("vision_first", "image"))
    texts = [prompts.conflict_query(RECORD, order, instruction).prompt for order, instruction in settings]
    return images, texts


def fingerprint(tensor: torch.Tensor) -> tuple:
    return tuple(tensor.shape), round(float(tensor.double().sum()), 6), round(float(tensor.double().abs().sum()), 6)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_saved_folder_reloads_with_its_structure(family, model_dirs, models):
    folder, model = model_dirs[family], models[family]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    assert model.family == family
    assert model.num_layers == TEXT_LAYERS == len(model.decoder_layers)
    assert model.hidden_size == TEXT_HIDDEN
    # Saving renames tensors to the hub checkpoints' layout: compare them by shape and content.
    saved = load_file(folder / "model.safetensors").values()
    loaded = model.model.state_dict().values()
    assert sorted(fingerprint(t) for t in saved) == sorted(fingerprint(t) for t in loaded)
    assert all(parameter.dtype == torch.float32 for parameter in model.model.parameters())
    expected_processor = LlavaProcessor if family == "llava" else ImageOnlyQwenProcessor
    assert type(model.processor) is expected_processor
    assert is_qwen_folder(folder) == (family != "llava")


def test_dtype_comes_from_the_config(model_dirs):
    model = load_model(model_dirs["qwen2_5_vl"], device="cpu", dtype="bfloat16")
    assert {parameter.dtype for parameter in model.model.parameters()} == {torch.bfloat16}
    assert model.device == torch.device("cpu")


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_image_positions_match_the_processors_own_count(family, models):
    model = models[family]
    images, texts = sample_batch()
    batch = model.encode(images, texts)
    sizes = [(image.height, image.width) for image in images]
    expected = model.processor._get_num_multimodal_tokens(image_sizes=sizes)["num_image_tokens"]
    assert batch.image_mask.sum(dim=1).tolist() == expected
    if family == "llava":
        assert expected == [16, 16, 16]  # every image is cropped to 32x32, patch 8
    else:
        assert len(set(expected)) == 3  # aspect ratio decides the count; rows differ
        assert batch.inputs["image_grid_thw"].prod(dim=1).div(4).tolist() == expected
        assert torch.equal(batch.inputs["mm_token_type_ids"].bool(), batch.image_mask)
    tokenizer = model.tokenizer
    for row in range(len(images)):
        positions = batch.image_mask[row].nonzero().flatten()
        assert torch.equal(positions, torch.arange(positions[0], positions[0] + len(positions)))  # one run
        before, after = batch.input_ids[row, positions[0] - 1].item(), batch.input_ids[row, positions[-1] + 1].item()
        if family == "llava":
            assert tokenizer.decode([after]).strip() == ""  # "<image>\n": the newline follows the image
        else:
            assert tokenizer.convert_ids_to_tokens([before, after]) == ["<|vision_start|>", "<|vision_end|>"]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_text_mask_is_exactly_the_prompt_and_padding_is_on_the_left(family, models):
    model = models[family]
    images, texts = sample_batch()
    batch = model.encode(images, texts)
    assert not (batch.text_mask & batch.image_mask).any()
    for row, text in enumerate(texts):
        assert model.tokenizer.decode(batch.input_ids[row][batch.text_mask[row]]).strip() == text
        attention = batch.attention_mask[row]
        first_real = int(attention.nonzero()[0])
        assert attention[first_real:].all() and not attention[:first_real].any()
    assert batch.attention_mask[:, 0].sum() < len(texts)  # rows of different lengths were padded
    rendered = model.render("PROMPT")
    if family == "llava":
        assert rendered == "USER: <image>\nPROMPT ASSISTANT:"
    else:
        user_turn = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>PROMPT<|im_end|>\n"
        assert rendered.endswith(user_turn + "<|im_start|>assistant\n")


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_batched_rows_equal_single_runs(family, models):
    """Left padding with correct positions: a row's logits and greedy answer do not depend on its batch."""
    model = models[family]
    images, texts = sample_batch()
    batch = model.encode(images, texts)
    with torch.no_grad():
        batched = model.forward(batch).logits[:, -1]
        single = torch.cat([model.forward(model.encode([i], [t])).logits[:, -1] for i, t in zip(images, texts)])
    assert torch.allclose(batched, single, atol=1e-4)
    answers = model.generate(batch, max_new_tokens=4)
    assert answers == [model.generate(model.encode([i], [t]), max_new_tokens=4)[0] for i, t in zip(images, texts)]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_decoder_layers_are_the_ones_the_forward_runs(family, models):
    """A forward hook on a listed decoder layer changes the logits (what steering relies on)."""
    model = models[family]
    images, texts = sample_batch()
    batch = model.encode(images[:1], texts[:1])
    with torch.no_grad():
        plain = model.forward(batch).logits
        handle = model.decoder_layers[1].register_forward_hook(lambda module, args, output: output + 1.0)
        try:
            shifted = model.forward(batch).logits
        finally:
            handle.remove()
        again = model.forward(batch).logits
    assert not torch.allclose(plain, shifted, atol=1e-3)
    assert torch.equal(plain, again)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_targets_become_labels_on_the_target_tokens_only(family, models):
    model = models[family]
    images, texts = sample_batch()
    batch = model.encode(images, texts, targets=["A", "B", "A"])
    target_lengths = [len(model.tokenizer.encode(letter, add_special_tokens=False)) + 1 for letter in "ABA"]
    assert (batch.labels != -100).sum(dim=1).tolist() == target_lengths
    assert batch.labels[:, -1].tolist() == [model.tokenizer.eos_token_id] * 3
    loss = model.forward(batch, labels=batch.labels).loss
    assert torch.isfinite(loss) and loss > 0


def test_image_only_qwen_processor_round_trip(model_dirs, tmp_path):
    """The stand-in loads, saves without a class name of its own, and reloads to identical outputs."""
    folder = model_dirs["qwen2_vl"]
    processor = load_processor(folder)
    assert isinstance(processor, ImageOnlyQwenProcessor)
    processor.save_pretrained(tmp_path / "copy")
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert "processor_class" not in json.loads((tmp_path / "copy" / name).read_text())
    reloaded = ImageOnlyQwenProcessor.from_pretrained(tmp_path / "copy")
    images, texts = sample_batch()
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}] for t in texts]
    chat = [processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False) for turn in messages]
    first = processor(text=chat, images=images, padding=True, return_tensors="pt")
    second = reloaded(text=chat, images=images, padding=True, return_tensors="pt")
    assert set(first) == {"input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids"}
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not is_qwen_folder(tmp_path / "missing")


@pytest.fixture(scope="module")
def mc2_benchmark(tmp_path_factory) -> Path:
    """A prepared benchmark from MC²-format records and a placeholder COCO folder (2 tasks x 5 records)."""
    root = tmp_path_factory.mktemp("mc2-bench")
    records = synthetic_records(["color", "counting"], per_task=5)
    write_coco_folder(root / "coco", records)
    output = root / "benchmark"
    source = Mc2Source(
        str(write_records(root / "records.json", records)),
        "271754echo/MC2",
        "evaluate_final.json",
        str(root / "coco"),
        "error",
        None,
    )
    prepare_benchmark(PrepareBenchmark("mc2", None, source, Splits(0.4, 0.2, 0.4), seed=3), str(output))
    return output


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_baseline_evaluation_end_to_end(family, model_dirs, mc2_benchmark, tmp_path):
    name = f"tiny-{family}"
    settings = build(
        EvaluateBaseline,
        {"models": {name: {**TINY_MODEL, "dtype": "auto", "batch_size": 6}}, "evaluation": {"max_new_tokens": 3}},
        model=name,
    )
    output = tmp_path / "answers.parquet"
    evaluate_baseline(settings, str(mc2_benchmark), str(model_dirs[family]), str(output))
    answers = pd.read_parquet(output)
    test_records = 4  # 2 tasks x 5 records x 0.4
    assert len(answers) == test_records * len(BASELINE_CONDITIONS) * len(ORDERS)
    assert set(answers["model"]) == {f"tiny-{family}"}
    assert set(answers["choice"]) <= {"vision", "text", "other"}
    assert answers.groupby(["condition", "order"]).size().eq(test_records).all()
    scores = score(answers, ["model", "condition"])
    pooled = scores[(scores["task"] == "all") & (scores["view"] == "pooled")]
    assert pooled["n"].eq(2 * test_records).all()
    assert pooled[["s_vision", "s_text", "s_other"]].sum(axis=1).round(9).eq(1.0).all()
