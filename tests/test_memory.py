"""Memory formulas: hand-computed numbers on known shapes, measured peaks on a tiny model within them, the toy
shape's bounds, and the MCR's rows per pass from a (faked) GPU's free memory."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from peak_memory import TensorPeak

from amps.core import memory
from amps.data import prompts, world
from amps.mcr import perturb, prefill
from amps.mcr.settings import EstimatorSettings
from amps.models import toy
from amps.models.asking import baseline_questions
from amps.models.interface import MultimodalModel
from amps.models.toy_plan import ToyArchitecture
from amps.steering.activations import last_token_states

#: A small text model whose formulas are worked out by hand below.
SMALL = memory.TextShape(layers=2, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=10)


def test_the_cache_of_llava_13b_rows_is_the_hand_computed_size():
    text = memory.PRETRAINED_SHAPES["llava-hf/llava-1.5-13b-hf"].text
    # 32 rows x 40 layers x (keys, values) x 40 heads x 128 x 576 image positions x 2 bytes (bfloat16).
    assert memory.cache_bytes(text, 32, 576, 2) == 32 * 40 * 2 * 40 * 128 * 576 * 2 == 15_099_494_400


def test_an_mcr_pass_is_its_rows_entries_plus_what_each_row_computes():
    # One row's entries: 2 layers x 2 x 1 head x 4 x 3 positions x 4 bytes = 192; the fed token per layer:
    # (4 x 8 + 3 x 16) x 4 = 320 bytes of states and 2 heads x 10 positions x (2 x 4 + 4) = 240 of attention.
    # With the Fisher term every layer's is kept (2 x 560) and one layer's keys' gradient twice (96).
    assert memory.mcr_pass_bytes(SMALL, 5, 3, 10, 4, fisher=True) == 5 * (192 + 2 * 560 + 96) + 192
    assert memory.mcr_pass_bytes(SMALL, 5, 3, 10, 4, fisher=False) == 5 * (192 + 560) + 192


def test_rows_that_fit_invert_the_pass_formula():
    needed = memory.mcr_pass_bytes(SMALL, 7, 3, 10, 4, fisher=True)
    assert memory.rows_that_fit(SMALL, needed, 3, 10, 4, fisher=True) == 7
    assert memory.rows_that_fit(SMALL, needed - 1, 3, 10, 4, fisher=True) == 6
    assert memory.rows_that_fit(SMALL, 0, 3, 10, 4, fisher=True) == 1  # a pass of one row is always tried


def test_a_generation_is_its_cache_and_the_larger_of_the_vision_and_prefill_activations():
    shape = memory.ModelShape(
        parameters=1000,
        text=SMALL,
        vision_hidden=4,
        vision_intermediate=8,
        vision_positions=5,
        vision_states_kept=2,
        image_tokens=4,
        pixel_values=48,
        prompt_tokens=6,
    )
    assert memory.inputs_bytes(shape, 3, 4) == 3 * (48 * 4 + 10 * 27)
    assert memory.inputs_bytes(shape, 3, 2) == 3 * (48 * 2 + 10 * 27)
    assert memory.vision_bytes(shape, 3, 4) == 3 * 5 * ((2 + 3) * 4 + 2 * 8) * 4
    # Prefill: 10 positions x (3 x 16 + 4 x 8 + 2 x 4) values, 4 image tokens x 2 x 8, 5 tower states x 4, 10 x 10 mask bytes.
    decoder = 3 * (10 * 88 * 4 + 4 * 16 * 4 + 5 * 4 * 4 + 100)
    assert memory.decoder_bytes(shape, 3, 10, 4) == decoder
    assert memory.generation_activations(shape, 3, 4) == decoder + 3 * 10 * 4 * 2


def test_the_toy_shape_counts_the_toy_models_parameters_and_bounds_its_prompts():
    arch = ToyArchitecture(
        text_layers=3, text_hidden=48, text_heads=2, vision_layers=2, vision_hidden=32, image_size=32, patch_size=8
    )
    tokenizer = toy.build_tokenizer(list(world.TASKS))
    model = toy.build_model(tokenizer, arch, seed=0)
    shape = memory.toy_shape(dataclasses.asdict(arch))
    assert len(tokenizer) <= memory.TOY_VOCABULARY
    # Exact but for the vocabulary, which the shape bounds.
    assert shape.parameters - sum(parameter.numel() for parameter in model.parameters()) == (
        (memory.TOY_VOCABULARY - len(tokenizer)) * arch.text_hidden
    )
    assert (shape.image_tokens, shape.vision_positions) == (16, 17)
    records = pd.DataFrame(world.make_records(list(world.TASKS), 10, seed=1))
    wrapped = MultimodalModel(model, toy.build_processor(tokenizer, arch))
    # Every prompt the pipeline asks, rendered by the chat template; less the one image placeholder.
    longest = max(len(tokenizer(wrapped.render(question.prompt))["input_ids"]) - 1 for question in baseline_questions(records))
    assert longest <= memory.TOY_PROMPT_TOKENS


def shape_of_tiny(model, batch) -> memory.ModelShape:
    """The tiny toy model's shape, with the prompt length of ``batch``."""
    config = model.model.config
    vision = config.vision_config
    image_tokens = int(batch.image_mask[0].sum())
    return memory.ModelShape(
        parameters=sum(parameter.numel() for parameter in model.model.parameters()),
        text=memory.text_shape(config.get_text_config()),
        vision_hidden=vision.hidden_size,
        vision_intermediate=vision.intermediate_size,
        vision_positions=image_tokens + 1,
        vision_states_kept=vision.num_hidden_layers + 1,
        image_tokens=image_tokens,
        pixel_values=batch.inputs["pixel_values"][0].numel(),
        prompt_tokens=batch.input_ids.shape[1] - image_tokens,
    )


def conflict_batch(model, rows: int):
    record = world.make_records(["color"], 1, seed=1)[0]
    image = world.render_record_image("color", record["answer_vision"], record["image_id"], 32)
    prompt = prompts.conflict_query(record, "vision_first").prompt
    return model.encode([image] * rows, [prompt] * rows, contexts=[record["context"]] * rows)


@pytest.fixture(scope="module")
def four_layer_model() -> MultimodalModel:
    """A random-weight toy LLaVA with four decoder layers (a state kept by mistake then shows in the peak)."""
    arch = ToyArchitecture(
        text_layers=4, text_hidden=32, text_heads=2, vision_layers=1, vision_hidden=32, image_size=32, patch_size=8
    )
    tokenizer = toy.build_tokenizer(list(world.TASKS))
    return MultimodalModel(toy.build_model(tokenizer, arch, seed=0).eval(), toy.build_processor(tokenizer, arch))


def test_a_forward_and_an_mcr_pass_stay_within_their_formulas(four_layer_model):
    model = four_layer_model
    batch = conflict_batch(model, 4)
    shape = shape_of_tiny(model, batch)
    with torch.no_grad(), TensorPeak() as forward:
        last_token_states(model, batch, list(range(model.num_layers)))
    formula = memory.cache_bytes(shape.text, 4, shape.sequence, 4) + memory.generation_activations(shape, 4, 4)
    # Bounded, and tight: every layer's whole output kept by mistake would exceed it.
    assert 0.9 * formula <= forward.peak <= formula

    state = prefill.prefill(model, conflict_batch(model, 1))
    settings = EstimatorSettings(0.5, 16, "clean", True, "context", seed=3)
    with TensorPeak() as scoring:
        perturb.score_samples(model, state, 0, {"image": torch.Generator().manual_seed(0)}, settings, 16)
    positions, length = len(state.positions["image"]), state.layers[0][0].shape[2] + 1
    formula = memory.mcr_pass_bytes(shape.text, 16, positions, length, 4, fisher=True)
    shared = memory.cache_bytes(shape.text, 1, length - 1 - positions, 4)  # the clean entries the rows share
    assert 0.8 * formula <= scoring.peak - shared <= formula


def fake_cuda_state(layer_devices: list[int], positions: int, length: int) -> SimpleNamespace:
    """A prefilled state whose cache layers sit on the given CUDA devices (shapes only: [1, 1 head, length, 4])."""
    layers = []
    for device in layer_devices:
        keys = SimpleNamespace(device=torch.device("cuda", device), shape=(1, 1, length, 4), element_size=lambda: 2)
        layers.append((keys, keys))
    return SimpleNamespace(layers=layers, positions={"image": torch.arange(positions)})


def test_mcr_rows_per_pass_follow_each_gpus_free_memory(monkeypatch):
    model = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: SMALL_CONFIG)))
    free = {0: 10**6, 1: 10**6}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free[device.index], 8 * 10**9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1000)  # 4000 cached bytes count as free
    text = memory.text_shape(SMALL_CONFIG)
    state = fake_cuda_state([0, 0], positions=3, length=9)
    expected = memory.rows_that_fit(text, (10**6 + 4000) * memory.USABLE_GPU_SHARE, 3, 10, 2, True)
    assert 1 < expected < 10_000
    assert perturb.pass_rows(model, state, "image", True, 10_000) == expected
    assert perturb.pass_rows(model, state, "image", True, 5) == 5  # capped by max_batch
    # Spread over two GPUs, one layer each: the fuller GPU decides, for its own layer.
    free[1] = 10**5
    spread = fake_cuda_state([0, 1], positions=3, length=9)
    one_layer = dataclasses.replace(text, layers=1)
    assert perturb.pass_rows(model, spread, "image", True, 10_000) == memory.rows_that_fit(
        one_layer, (10**5 + 4000) * memory.USABLE_GPU_SHARE, 3, 10, 2, True
    )


#: SMALL as a transformers-like text config.
SMALL_CONFIG = SimpleNamespace(
    num_hidden_layers=2,
    hidden_size=8,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=4,
    intermediate_size=16,
    vocab_size=10,
)


def test_a_text_config_gives_its_shape():
    assert memory.text_shape(SMALL_CONFIG) == SMALL
    # Configs without head_dim split the hidden size over the heads.
    assert memory.text_shape(SimpleNamespace(**{**vars(SMALL_CONFIG), "head_dim": None})) == SMALL
