"""The steering module: it learns a linear target, stops early, saves as safetensors, and steers in the same pass."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from amps.activations import last_token_states
from amps.steerer import (
    Steerer,
    SteererConfig,
    TrainingSettings,
    learned_steering,
    load_steerer,
    save_steerer,
    steering_loss,
    train_steerer,
)
from amps.steering import steer
from conftest import forward_hooks

SETTINGS = TrainingSettings(learning_rate=0.02, max_epochs=1000, patience=200, cosine_weight=0.0, weight_decay=0.0)
PROMPTS = [
    "Text context: The shape is blue.\nWhat color is the shape?\nA. red\nB. blue\nAnswer the question by selecting the correct answer A or B.",
    "Text context: The square is on the left.\nWhere is the square?\nA. left\nB. right",
]


def _linear_problem(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States around an offset, like hidden states, and a rank-3 linear map of them."""
    generator = torch.Generator().manual_seed(0)
    mapping = torch.randn(16, 3, generator=generator) @ torch.randn(3, 16, generator=generator) / 4
    offset = 5 * torch.randn(16, generator=generator)
    states = offset + torch.randn(samples, 16, generator=torch.Generator().manual_seed(seed))
    return states, (states - offset) @ mapping.T


def test_module_trained_on_a_linear_target_recovers_it():
    train_x, train_y = _linear_problem(400, 1)
    val_x, val_y = _linear_problem(100, 2)
    test_x, test_y = _linear_problem(200, 3)
    module, summary = train_steerer(train_x, train_y, val_x, val_y, width=8, settings=SETTINGS, seed=0)
    with torch.no_grad():
        relative_error = float((module(test_x) - test_y).pow(2).sum() / test_y.pow(2).sum())
    assert relative_error < 0.02, relative_error
    assert summary["validation_loss"] < 0.02 * summary["validation_target_sq_norm"]
    untrained = Steerer(16, 8)
    untrained.set_input_statistics(train_x)
    with torch.no_grad():
        assert float((untrained(test_x) - test_y).pow(2).sum() / test_y.pow(2).sum()) > 0.5


def test_early_stopping_keeps_the_best_validation_epoch():
    train_x, train_y = _linear_problem(40, 1)
    val_x, val_y = _linear_problem(40, 2)
    # Validation targets unrelated to training: the validation loss soon rises, training goes on less than patience more.
    noise = torch.randn(val_y.shape, generator=torch.Generator().manual_seed(9)) * val_y.std()
    settings = TrainingSettings(learning_rate=0.01, max_epochs=5000, patience=50, cosine_weight=0.0, weight_decay=0.0)
    module, summary = train_steerer(train_x, train_y, val_x, noise, width=8, settings=settings, seed=0)
    assert summary["epochs"] == summary["best_epoch"] + 50 and summary["epochs"] < 5000
    with torch.no_grad():
        assert float(steering_loss(module(val_x), noise, 0.0)) == pytest.approx(summary["validation_loss"], rel=1e-6)


def test_cosine_term_skips_zero_targets():
    predicted = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    # Squared error (1 + 4) / 2 and cosine 1 on the only non-zero target.
    assert float(steering_loss(predicted, target, 0.5)) == pytest.approx(2.5)


def test_bad_training_data_is_refused_before_training():
    x, y = _linear_problem(10, 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        train_steerer(x, y.clone().fill_(float("nan")), x, y, 4, SETTINGS, 0)
    with pytest.raises(ValueError, match="one non-zero length"):
        train_steerer(x, y[:5], x, y, 4, SETTINGS, 0)
    with pytest.raises(ValueError, match="comes before the input layer"):
        SteererConfig(16, 8, input_layer=2, steer_layer=1, kind="amps", direction="to_vision", vector="per_sample",
                      beta=1.0, r_anchor=0.5, seed=0)


def test_module_round_trips_through_safetensors_and_json(tmp_path):
    module = Steerer(16, 8)
    module.set_input_statistics(torch.randn(20, 16))
    config = SteererConfig(16, 8, 1, 1, "amps", "to_vision", "per_sample", beta=-1.5, r_anchor=0.4, seed=3)
    path = tmp_path / "amps-to_vision-seed0.safetensors"
    save_steerer(path, module, config)
    assert set(load_file(str(path))) == {"input_mean", "input_scale", "hidden.weight", "hidden.bias", "output.weight", "output.bias"}
    assert json.loads(path.with_suffix(".json").read_text())["beta"] == -1.5
    loaded, loaded_config = load_steerer(path)
    states = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.equal(loaded(states), module(states))
    assert loaded_config == config
    with pytest.raises(FileNotFoundError, match="train the steering modules first"):
        load_steerer(tmp_path / "missing.safetensors")


def _batch(model):
    images = [Image.new("RGB", (32, 32), color) for color in ((220, 30, 30), (40, 70, 230))]
    return model.encode(images, PROMPTS)


def _random_module(model, seed: int) -> Steerer:
    torch.manual_seed(seed)
    module = Steerer(model.hidden_size, 8)
    with torch.no_grad():
        module.output.weight.mul_(20.0)  # large enough to change the logits
    return module.eval()


@pytest.mark.parametrize("input_layer", [0, 1])
def test_learned_steering_equals_steering_with_the_predicted_vectors(tiny_model, input_layer):
    """The module reads the prompt's state in the steered pass itself: same logits as steering with
    vectors predicted from a separate unsteered pass (the input layer comes before the steering)."""
    batch = _batch(tiny_model)
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
    batch = _batch(tiny_model)
    hooks = forward_hooks(tiny_model)
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
    assert forward_hooks(tiny_model) == hooks


def test_learned_steering_refuses_bad_layers(tiny_model):
    module = _random_module(tiny_model, 0)
    with pytest.raises(ValueError, match="between 0 and the steering layer"):
        with learned_steering(tiny_model, module, 1, 0):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with learned_steering(tiny_model, module, 0, 5):
            pass
