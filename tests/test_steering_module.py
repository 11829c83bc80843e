"""Steering modules and vectors as context managers: the module reads the prompt in the pass it steers, plain
``generate`` on the user's own processor output is steered as the pipeline steers it, right padding and bad
layers are refused, hooks go on exit and on error, and a run's module and mean vector load as the run used them."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from amps.core.io import write_json
from amps.method.recipe import ModuleRecipe
from amps.method.steerer import Steerer, SteererConfig, save_steerer
from amps.method.steering_module import SteeringModule, learned_steering, load_steering_module
from amps.method.vectors import record_vectors
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model, load_processor
from amps.steering.activations import Activations, last_token_states, load_mean_vector
from amps.steering.hook import SteeringVector, steer
from amps.steering.steps import CollectActivations, collect_activations

from conftest import forward_hooks
from steps import TINY_MODEL, build
from tiny_models import TINY_FAMILIES, build_tiny_model

PROMPTS = [
    "Text context: The shape is blue.\nWhat color is the shape?\nA. red\nB. blue\n"
    "Answer the question by selecting the correct answer A or B.",
    "Text context: The square is on the left.\nWhere is the square?\nA. left\nB. right",
]
COLORS = [(220, 30, 30), (40, 70, 230)]


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), color) for color in COLORS]


def _random_module(model, seed: int) -> Steerer:
    module = Steerer(model.hidden_size, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        module.decoder.weight.mul_(20.0)  # large enough to change the logits
    return module.eval()


def _steering_module(model, seed: int, input_layer: int = 1, steer_layer: int = 1, strength: float = 1.0) -> SteeringModule:
    config = SteererConfig(
        model.hidden_size, input_layer, steer_layer, "l2s", "to_vision", "per_sample", 0.0, 0.5, seed, ModuleRecipe(width=8)
    )
    return SteeringModule(_random_module(model, seed), config, scale=1.0, strength=strength)


def _model_hooks(model: MultimodalModel) -> tuple[list[set[int]], set[int]]:
    """The forward hooks of every decoder layer and the forward pre-hooks of the transformers model."""
    return forward_hooks(model), set(model.model._forward_pre_hooks)


@pytest.mark.parametrize("input_layer", [0, 1])
def test_learned_steering_equals_steering_with_the_predicted_vectors(tiny_model, input_layer):
    """The module reads the prompt's state in the steered pass itself: same logits as steering with
    vectors predicted from a separate unsteered pass (the input layer comes before the steering)."""
    batch = tiny_model.encode(_images(), PROMPTS)
    module = _random_module(tiny_model, 0)
    states = last_token_states(tiny_model, batch, [input_layer])[input_layer]
    with torch.no_grad():
        vectors = 1.5 * module(states)
        with steer(tiny_model, 1, vectors, "all"):
            expected = tiny_model.forward(batch).logits
        with learned_steering(tiny_model, module, input_layer, 1, strength=1.5, positions="all"):
            steered = tiny_model.forward(batch).logits
        plain = tiny_model.forward(batch).logits
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    assert (steered - plain).abs().max() > 1e-2


def test_learned_steering_adds_no_forward_pass_and_is_removed(tiny_model):
    batch = tiny_model.encode(_images(), PROMPTS)
    hooks = _model_hooks(tiny_model)
    calls = []
    handle = tiny_model.decoder_layers[0].register_forward_hook(lambda _m, _a, output: calls.append(output.shape[1]))
    try:
        tiny_model.generate(batch, max_new_tokens=3)
        plain_calls = list(calls)
        calls.clear()
        with learned_steering(tiny_model, _random_module(tiny_model, 1), 1, 1, strength=1.0, positions="all"):
            tiny_model.generate(batch, max_new_tokens=3)
    finally:
        handle.remove()
    assert calls == plain_calls and len(calls) >= 1 and calls[0] > 1
    assert _model_hooks(tiny_model) == hooks


def test_learned_steering_refuses_bad_layers(tiny_model):
    module = _random_module(tiny_model, 0)
    with pytest.raises(ValueError, match="between 0 and the steering layer"):
        with learned_steering(tiny_model, module, 1, 0):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with learned_steering(tiny_model, module, 0, 5):
            pass


def _users_inputs(processor, prompts: list[str], images: list[Image.Image]) -> dict:
    """What a user's own code gives ``generate``: the processor's output on the chat-template texts."""
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for prompt in prompts
    ]
    return dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_plain_generate_on_the_users_processor_output_is_steered_as_the_pipeline_steers(family, tmp_path):
    """The transformers model and its own processor (rows of different lengths, left padded): ``with
    module.apply(model): model.generate(**inputs)`` gives the pipeline's steered answers, not the unsteered ones."""
    folder = build_tiny_model(family, tmp_path / family)
    model = load_model(folder, device="cpu")
    processor = load_processor(folder)
    processor.tokenizer.padding_side = "left"
    module = _steering_module(model, seed=3, input_layer=0, steer_layer=1)
    inputs = _users_inputs(processor, PROMPTS, _images())
    assert (inputs["attention_mask"] == 0).any(), "the rows should differ in length, so that padding matters"

    def answers(tokens: torch.Tensor) -> list[str]:
        return [
            text.strip()
            for text in processor.tokenizer.batch_decode(tokens[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        ]

    hooks = _model_hooks(model)
    with torch.no_grad():
        unsteered = answers(model.model.generate(**inputs, max_new_tokens=4, do_sample=False))
        with module.apply(model.model):
            steered = answers(model.model.generate(**inputs, max_new_tokens=4, do_sample=False))
    with module.apply(model):
        pipeline = model.generate(model.encode(_images(), PROMPTS), max_new_tokens=4)
    assert steered == pipeline
    assert steered != unsteered
    assert _model_hooks(model) == hooks


def test_right_padding_is_refused_and_the_hooks_go(tiny_model, tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    processor.tokenizer.padding_side = "right"
    inputs = _users_inputs(processor, PROMPTS, _images())
    module = _steering_module(tiny_model, seed=0)
    hooks = _model_hooks(tiny_model)
    with pytest.raises(ValueError, match="padded on the right"):
        with module.apply(tiny_model.model):
            tiny_model.model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert _model_hooks(tiny_model) == hooks


def test_hooks_go_when_the_block_raises(tiny_model):
    hooks = _model_hooks(tiny_model)
    vector = SteeringVector(torch.ones(tiny_model.hidden_size), layer=1)
    for steering in (vector, _steering_module(tiny_model, seed=0)):
        with pytest.raises(RuntimeError, match="inside the block"):
            with steering.apply(tiny_model):
                raise RuntimeError("inside the block")
        assert _model_hooks(tiny_model) == hooks


def test_a_module_steers_at_its_own_strength_unless_told(tiny_model):
    batch = tiny_model.encode(_images(), PROMPTS)
    module = _steering_module(tiny_model, seed=2, strength=0.5)
    doubled = SteeringModule(module.module, module.config, scale=2.0, strength=0.25)
    with torch.no_grad():
        with module.apply(tiny_model):
            own = tiny_model.forward(batch).logits
        with module.apply(tiny_model, strength=0.5):
            told = tiny_model.forward(batch).logits
        with doubled.apply(tiny_model):
            rescaled = tiny_model.forward(batch).logits
    assert torch.equal(own, told)
    torch.testing.assert_close(rescaled, own)


def _write_run_folder(folder, model: MultimodalModel) -> dict:
    """A run's amps/<model> folder: an l2s module for seeds 0 and 1, an AMPS candidate, and the selection."""
    modules = {}
    for name, kind, seed in (
        ("l2s-to_vision-seed0", "l2s", 0),
        ("l2s-to_vision-seed1", "l2s", 1),
        ("amps-to_vision-b+1q0.5-seed0", "amps", 0),
    ):
        module = _random_module(model, seed + (10 if kind == "amps" else 0))
        config = SteererConfig(model.hidden_size, 1, 1, kind, "to_vision", "per_sample", 0.0, 0.5, seed, ModuleRecipe(width=8))
        save_steerer(folder / "steerers" / f"{name}.safetensors", module, config)
        modules[name] = module
    seeds = [{"seed": 0, "strength": 2.0}, {"seed": 1, "strength": 4.0}]
    write_json(
        folder / "selection.json",
        {
            "reference_norm": 3.0,
            "typical_norm": 1.5,
            "positions": "generated",
            "to_vision": {"l2s": {"seeds": seeds}, "amps": {"scaling": {"name": "b+1q0.5"}, "seeds": seeds[:1]}},
        },
    )
    return modules


def test_a_runs_module_loads_with_its_strength_unit_and_positions(tiny_model, tmp_path):
    modules = _write_run_folder(tmp_path, tiny_model)
    l2s = load_steering_module(tmp_path, "l2s", "to_vision", seed=1)
    assert (l2s.strength, l2s.scale, l2s.positions) == (4.0, 2.0, "generated")
    assert torch.equal(l2s.module.decoder.weight, modules["l2s-to_vision-seed1"].decoder.weight)
    chosen = load_steering_module(tmp_path, "amps", "to_vision")
    assert chosen.strength == 2.0 and chosen.config.kind == "amps"
    assert torch.equal(chosen.module.decoder.weight, modules["amps-to_vision-b+1q0.5-seed0"].decoder.weight)
    with pytest.raises(ValueError, match="seeds \\[0\\], not of seed 1"):
        load_steering_module(tmp_path, "amps", "to_vision", seed=1)
    with pytest.raises(ValueError, match="'mean' has no trained module"):
        load_steering_module(tmp_path, "mean", "to_vision")
    with pytest.raises(ValueError, match="unknown steering direction 'vision'"):
        load_steering_module(tmp_path, "l2s", "vision")
    with pytest.raises(FileNotFoundError, match="selection.json does not exist"):
        load_steering_module(tmp_path / "steerers", "l2s", "to_vision")


def test_the_mean_vector_of_a_run_steers_as_the_pipelines_mean_steering(tiny_model, tiny_model_dir, tiny_benchmark_dir, tmp_path):
    output = tmp_path / "tiny.safetensors"
    settings = build(CollectActivations, {"models": {"tiny": {**TINY_MODEL, "steering_layers": [1]}}}, model="tiny")
    collect_activations(settings, str(tiny_benchmark_dir), str(tiny_model_dir), str(output), str(output.with_suffix(".json")))
    stored = Activations.load(output)
    batch = tiny_model.encode(_images(), PROMPTS)
    for direction, sign in (("to_vision", 1.0), ("to_text", -1.0)):
        vector = load_mean_vector(output, direction)
        assert vector.layer == 1 and vector.positions == "all"
        pipeline = sign * record_vectors(stored, 1, stored.record_ids[:1]).base("mean")
        assert torch.equal(vector.vector, pipeline[0, 0])
        with torch.no_grad():
            with vector.apply(tiny_model, strength=2.0):
                steered = tiny_model.forward(batch).logits
            with steer(tiny_model, 1, pipeline[0, 0].expand(2, -1), "all", alpha=2.0):
                expected = tiny_model.forward(batch).logits
        torch.testing.assert_close(steered, expected)
    with pytest.raises(ValueError, match="unknown steering direction"):
        load_mean_vector(output, "sideways")
