"""The steering module: the published Learn-to-Steer recipe against a plain reference loop, a tuned
recipe learns a linear target, the best epoch is kept, the recipe is checked, modules save as
safetensors (how they steer: test_steering_module.py)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from amps.core.config import ConfigError
from amps.method.recipe import ModuleRecipe
from amps.method.steerer import (
    SHUFFLE_SEED_OFFSET,
    Steerer,
    SteererConfig,
    load_steerer,
    save_steerer,
    schedule_factor,
    steering_loss,
    train_steerer,
)

from steps import config_with

#: A recipe tuned for the small linear problems below (the published one is meant for thousands of prompts).
FAST = ModuleRecipe(width=8, standardize_inputs=True, learning_rate=0.03, batch_size=100, epochs=100, warmup_epochs=5)


def _linear_problem(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States around an offset, like hidden states, and a rank-3 linear map of them."""
    generator = torch.Generator().manual_seed(0)
    mapping = torch.randn(16, 3, generator=generator) @ torch.randn(3, 16, generator=generator) / 4
    offset = 5 * torch.randn(16, generator=generator)
    states = offset + torch.randn(samples, 16, generator=torch.Generator().manual_seed(seed))
    return states, (states - offset) @ mapping.T


def _config(recipe: ModuleRecipe, **changes) -> SteererConfig:
    values = dict(
        hidden_size=16,
        input_layer=1,
        steer_layer=1,
        kind="amps",
        direction="to_vision",
        vector="per_sample",
        beta=-1.5,
        r_anchor=0.4,
        seed=3,
        recipe=recipe,
    )
    return SteererConfig(**{**values, **changes})


# ----------------------------------------------------------------------------- the published recipe


def _reference_training(x, y, val_x, val_y, recipe: ModuleRecipe, seed: int):
    """The published recipe written out plainly: raw inputs, Linear+bias → tanh → Linear without bias,
    PyTorch's default init, decoder columns from the centred targets' principal directions (by an
    eigendecomposition of their covariance), loss mse + l1 − w·cos with w ramped, Adam with the
    warmup + half-cosine learning rate set by hand at every step, the best validation epoch kept."""
    hidden, width = x.shape[1], recipe.width
    init = torch.Generator().manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed + SHUFFLE_SEED_OFFSET)
    # nn.Linear's default: weights and biases uniform in ±1/sqrt(fan_in), drawn in this order.
    w1 = torch.empty(width, hidden).uniform_(-1 / math.sqrt(hidden), 1 / math.sqrt(hidden), generator=init)
    b1 = torch.empty(width).uniform_(-1 / math.sqrt(hidden), 1 / math.sqrt(hidden), generator=init)
    w2 = torch.empty(hidden, width).uniform_(-1 / math.sqrt(width), 1 / math.sqrt(width), generator=init)
    centred = (y - y.mean(0)).double()
    values, vectors = torch.linalg.eigh(centred.T @ centred)
    k = min(width, int((values > values.max() * 1e-9).sum()))
    top = vectors.flip(1)[:, :k]  # columns, largest eigenvalue first
    top = top * torch.sign(top.gather(0, top.abs().argmax(0, keepdim=True)))  # largest entry positive
    w2[:, :k] = top.float()
    params = [w1.requires_grad_(), b1.requires_grad_(), w2.requires_grad_()]
    optimizer = torch.optim.Adam(params, lr=recipe.learning_rate)

    def predict(states):
        return torch.tanh(states @ w1.T + b1) @ w2.T

    def loss_of(predicted, target, cosine_weight):
        per_sample = ((predicted - target) ** 2).mean(1) + (predicted - target).abs().mean(1)
        # cosine_similarity is 0 for a zero target (its norm is clamped), as in the published code.
        per_sample = per_sample - cosine_weight * torch.nn.functional.cosine_similarity(predicted, target, dim=1)
        return per_sample.mean()

    batches = -(-len(x) // recipe.batch_size)
    warmup, total = recipe.warmup_epochs * batches, recipe.epochs * batches
    step, best, history = 0, None, []
    for epoch in range(recipe.epochs):
        cosine_weight = min(1.0, epoch / recipe.cosine_ramp_epochs) * recipe.cosine_weight
        order = torch.randperm(len(x), generator=shuffle)
        for start in range(0, len(x), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            factor = step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
            optimizer.param_groups[0]["lr"] = recipe.learning_rate * factor
            loss = loss_of(predict(x[rows]), y[rows], cosine_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        with torch.no_grad():
            history.append(float(loss_of(predict(val_x), val_y, recipe.validation_cosine_weight)))
        if best is None or history[-1] < history[best[0]]:
            best = (epoch, [p.detach().clone() for p in params])
    return best[1], best[0] + 1, history


PUBLISHED = ModuleRecipe()
#: The published recipe made to move far from its start: larger steps, short schedule and ramp, small batches.
STRESSED = dataclasses.replace(
    PUBLISHED,
    width=8,
    learning_rate=0.01,
    epochs=12,
    warmup_epochs=3,
    cosine_ramp_epochs=5,
    batch_size=16,
    cosine_weight=0.5,
    validation_cosine_weight=0.3,
)


@pytest.mark.parametrize("recipe", [PUBLISHED, STRESSED], ids=["published", "stressed"])
def test_training_equals_a_plain_reference_loop_of_the_published_recipe(recipe):
    generator = torch.Generator().manual_seed(5)
    x, val_x = 2 + torch.randn(150, 16, generator=generator), 2 + torch.randn(40, 16, generator=generator)
    y, val_y = torch.randn(150, 16, generator=generator), torch.randn(40, 16, generator=generator)
    y[::7] = 0.0  # AMPS scales some targets to zero
    val_y[::5] = 0.0
    module, summary = train_steerer(x, y, val_x, val_y, recipe, seed=11)
    (w1, b1, w2), best_epoch, history = _reference_training(x, y, val_x, val_y, recipe, seed=11)
    assert set(module.state_dict()) == {"encoder.weight", "encoder.bias", "decoder.weight"}
    torch.testing.assert_close(module.encoder.weight, w1, atol=1e-5, rtol=0)
    torch.testing.assert_close(module.encoder.bias, b1, atol=1e-5, rtol=0)
    torch.testing.assert_close(module.decoder.weight, w2, atol=1e-5, rtol=0)
    assert summary["epochs"] == recipe.epochs and summary["best_epoch"] == best_epoch
    assert summary["validation_loss"] == pytest.approx(min(history), abs=1e-5)
    assert summary["final_validation_loss"] == pytest.approx(history[-1], abs=1e-5)
    assert summary["svd_components"] == min(recipe.width, 16)
    # Training moved the weights (the comparison is not of two initialisations).
    untrained = Steerer.from_recipe(16, recipe, torch.Generator().manual_seed(11))
    assert (module.encoder.weight - untrained.encoder.weight).abs().max() > 1e-4
    again, _ = train_steerer(x, y, val_x, val_y, recipe, seed=11)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), module.state_dict().values()))
    other, _ = train_steerer(x, y, val_x, val_y, recipe, seed=12)
    assert not torch.equal(other.encoder.weight, module.encoder.weight)


def test_schedule_is_transformers_cosine_with_warmup():
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=6, num_training_steps=20)
    for step in range(21):
        assert schedule_factor(step, 6, 20) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()
    assert schedule_factor(20, 6, 20) == pytest.approx(0.0, abs=1e-12) and schedule_factor(6, 6, 20) == 1.0


def test_svd_initialisation_puts_the_targets_top_principal_directions_in_the_decoder():
    generator = torch.Generator().manual_seed(2)
    scales = torch.tensor([5.0, 3.0, 1.5])
    directions = torch.linalg.qr(torch.randn(16, 3, generator=generator)).Q  # orthonormal columns
    targets = 4 + (torch.randn(60, 3, generator=generator) * scales) @ directions.T  # rank 3 after centring
    recipe = ModuleRecipe(width=8, epochs=2, warmup_epochs=1)
    module, summary = train_steerer(
        torch.randn(60, 16), targets, torch.randn(5, 16), targets[:5], dataclasses.replace(recipe, learning_rate=1e-12), seed=4
    )
    # Covariance eigenvectors, largest first: the principal directions.
    centred = targets - targets.mean(0)
    _values, vectors = torch.linalg.eigh(centred.T @ centred)
    expected = vectors.flip(1)[:, :3]
    columns = module.decoder.weight[:, :3]
    torch.testing.assert_close((columns * expected).sum(0).abs(), torch.ones(3), atol=1e-4, rtol=0)
    assert summary["svd_components"] == 3
    # The other columns (and the encoder) keep the default initialisation from the same generator.
    default = Steerer.from_recipe(16, dataclasses.replace(recipe, init="default"), torch.Generator().manual_seed(4))
    torch.testing.assert_close(module.decoder.weight[:, 3:], default.decoder.weight[:, 3:], atol=1e-9, rtol=0)
    torch.testing.assert_close(module.encoder.weight, default.encoder.weight, atol=1e-9, rtol=0)
    assert not torch.allclose(module.decoder.weight[:, :3], default.decoder.weight[:, :3])
    plain, plain_summary = train_steerer(
        torch.randn(60, 16),
        targets,
        torch.randn(5, 16),
        targets[:5],
        dataclasses.replace(recipe, init="default", learning_rate=1e-12),
        seed=4,
    )
    torch.testing.assert_close(plain.decoder.weight, default.decoder.weight, atol=1e-9, rtol=0)
    assert plain_summary["svd_components"] == 0


# ----------------------------------------------------------------------------- learning and stopping


def test_a_tuned_recipe_learns_a_linear_target():
    train_x, train_y = _linear_problem(400, 1)
    val_x, val_y = _linear_problem(100, 2)
    test_x, test_y = _linear_problem(200, 3)
    module, summary = train_steerer(train_x, train_y, val_x, val_y, FAST, seed=0)
    with torch.no_grad():
        relative_error = float((module(test_x) - test_y).pow(2).sum() / test_y.pow(2).sum())
    assert relative_error < 0.02, relative_error
    assert summary["validation_cosine"] > 0.99 and summary["validation_norm_ratio"] == pytest.approx(1.0, abs=0.05)
    untrained = Steerer.from_recipe(16, FAST, torch.Generator().manual_seed(0))
    untrained.set_input_statistics(train_x)
    with torch.no_grad():
        assert float((untrained(test_x) - test_y).pow(2).sum() / test_y.pow(2).sum()) > 0.5


def _unrelated_validation():
    """Validation targets unrelated to training: the validation loss soon stops improving."""
    train_x, train_y = _linear_problem(40, 1)
    val_x, val_y = _linear_problem(40, 2)
    return train_x, train_y, val_x, torch.randn(val_y.shape, generator=torch.Generator().manual_seed(9)) * val_y.std()


def test_the_best_validation_epoch_is_kept():
    train_x, train_y, val_x, noise = _unrelated_validation()
    recipe = dataclasses.replace(FAST, epochs=150, batch_size=64, learning_rate=0.01)
    module, summary = train_steerer(train_x, train_y, val_x, noise, recipe, seed=0)
    assert summary["epochs"] == 150 and summary["best_epoch"] < 150
    assert summary["validation_loss"] < summary["final_validation_loss"]
    with torch.no_grad():
        kept = float(steering_loss(module(val_x), noise, recipe.validation_cosine_weight))
    assert kept == pytest.approx(summary["validation_loss"], rel=1e-6)


def test_patience_stops_training_early():
    train_x, train_y, val_x, noise = _unrelated_validation()
    recipe = dataclasses.replace(FAST, epochs=3000, batch_size=64, learning_rate=0.01, patience=30)
    _module, summary = train_steerer(train_x, train_y, val_x, noise, recipe, seed=0)
    assert summary["epochs"] == summary["best_epoch"] + 30 and summary["epochs"] < 3000


# ----------------------------------------------------------------------------- loss and recipe


def test_cosine_term_skips_zero_targets():
    predicted = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    # Sample 1: squared 1/2 + absolute 1/2 − 0.5 · cosine 1 = 0.5. Sample 2 (zero target, no cosine
    # term): squared 4/2 + absolute 2/2 = 3. Batch mean 1.75.
    assert float(steering_loss(predicted, target, 0.5)) == pytest.approx(1.75)
    assert float(steering_loss(predicted, target, 0.5, mse_weight=2.0, l1_weight=0.0)) == pytest.approx((1 - 0.5 + 4) / 2)
    predicted.requires_grad_(True)
    steering_loss(predicted, target, 0.5).backward()
    assert torch.isfinite(predicted.grad).all()
    # All targets zero: no cosine at all, and finite.
    assert float(steering_loss(predicted.detach(), torch.zeros(2, 2), 0.5)) == pytest.approx((0.5 + 0.5 + 2 + 1) / 2)


def test_the_recipe_defaults_are_the_published_ones_and_round_trip():
    recipe = ModuleRecipe.from_config({})
    assert recipe == ModuleRecipe()
    assert (recipe.width, recipe.decoder_bias, recipe.standardize_inputs, recipe.init) == (100, False, False, "svd")
    assert (recipe.mse_weight, recipe.l1_weight, recipe.cosine_weight, recipe.cosine_ramp_epochs) == (1.0, 1.0, 0.1, 100)
    assert (recipe.optimizer, recipe.learning_rate, recipe.weight_decay, recipe.batch_size) == ("adam", 5e-5, 0.0, 64)
    assert (recipe.epochs, recipe.schedule, recipe.warmup_epochs, recipe.patience) == (100, "cosine_warmup", 50, None)
    assert recipe.validation_cosine_weight == 0.1
    assert [recipe.cosine_weight_at(e) for e in (0, 50, 100, 150)] == pytest.approx([0.0, 0.05, 0.1, 0.1])
    assert dataclasses.replace(recipe, cosine_ramp_epochs=0).cosine_weight_at(0) == 0.1
    changed = ModuleRecipe.from_config({"width": 400, "patience": 10, "learning_rate": 1, "optimizer": "adamw"})
    assert changed.width == 400 and changed.learning_rate == 1.0 and isinstance(changed.learning_rate, float)
    assert ModuleRecipe.from_config(json.loads(json.dumps(changed.to_config()))) == changed


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"width": 0}, "width"),
        ({"width": 2.5}, "width"),
        ({"decoder_bias": "yes"}, "decoder_bias"),
        ({"standardize_inputs": 1}, "standardize_inputs"),
        ({"init": "pca"}, "init"),
        ({"mse_weight": -1}, "mse_weight"),
        ({"cosine_weight": -0.1}, "cosine_weight"),
        ({"validation_cosine_weight": "high"}, "validation_cosine_weight"),
        ({"cosine_ramp_epochs": -1}, "cosine_ramp_epochs"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": True}, "epochs"),
        ({"schedule": "linear"}, "schedule"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"epochs": 20, "warmup_epochs": 20}, "warmup_epochs"),  # the warmup must end before the last epoch
        ({"patience": 0}, "patience"),
        ({"max_epochs": 20}, "max_epochs"),  # unknown field
        ({"mse_weight": 0, "l1_weight": 0, "cosine_weight": 0}, "nothing to minimise"),
    ],
)
def test_bad_recipe_values_are_refused_before_any_job_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        config_with(amps={"module": values})


def test_the_other_options_train():
    """Constant schedule (its warmup unused, so the default 50 epochs may exceed epochs), AdamW with
    weight decay, decoder bias, standardised inputs, default initialisation, no cosine ramp."""
    recipe = ModuleRecipe(
        width=8,
        schedule="constant",
        epochs=5,
        optimizer="adamw",
        weight_decay=0.01,
        decoder_bias=True,
        standardize_inputs=True,
        init="default",
        cosine_ramp_epochs=0,
        learning_rate=0.01,
        batch_size=16,
    )
    train_x, train_y = _linear_problem(64, 1)
    val_x, val_y = _linear_problem(16, 2)
    module, summary = train_steerer(train_x, train_y, val_x, val_y, recipe, seed=0)
    assert summary["epochs"] == 5 and summary["svd_components"] == 0 and math.isfinite(summary["validation_loss"])
    torch.testing.assert_close(module.input_mean, train_x.mean(0))
    assert module.decoder.bias is not None and set(module.state_dict()) >= {"decoder.bias", "input_scale"}


def test_bad_training_data_is_refused_before_training():
    x, y = _linear_problem(10, 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        train_steerer(x, y.clone().fill_(float("nan")), x, y, FAST, 0)
    with pytest.raises(ValueError, match="one non-zero length"):
        train_steerer(x, y[:5], x, y, FAST, 0)
    with pytest.raises(TypeError, match="ModuleRecipe"):
        train_steerer(x, y, x, y, {"width": 4}, 0)
    with pytest.raises(ValueError, match="comes before the input layer"):
        _config(FAST, input_layer=2, steer_layer=1)


# ----------------------------------------------------------------------------- storage


@pytest.mark.parametrize(
    "recipe", [PUBLISHED, dataclasses.replace(FAST, decoder_bias=True)], ids=["published", "bias-standardised"]
)
def test_module_round_trips_through_safetensors_and_json(tmp_path, recipe):
    module = Steerer.from_recipe(16, recipe, torch.Generator().manual_seed(0))
    if recipe.standardize_inputs:
        module.set_input_statistics(3 + torch.randn(20, 16))
    config = _config(recipe)
    path = tmp_path / "amps-to_vision-seed0.safetensors"
    save_steerer(path, module, config)
    expected = {"encoder.weight", "encoder.bias", "decoder.weight"}
    if recipe.decoder_bias:
        expected |= {"decoder.bias", "input_mean", "input_scale"}
    assert set(load_file(str(path))) == expected
    stored = json.loads(path.with_suffix(".json").read_text())
    assert stored["beta"] == -1.5 and stored["recipe"] == recipe.to_config()
    loaded, loaded_config = load_steerer(path)
    states = 3 + torch.randn(5, 16)
    with torch.no_grad():
        assert torch.equal(loaded(states), module(states))
    assert loaded_config == config and loaded_config.width == recipe.width
    with pytest.raises(FileNotFoundError, match="train the steering modules first"):
        load_steerer(tmp_path / "missing.safetensors")


def test_saving_refuses_a_module_its_config_does_not_describe_and_old_files(tmp_path):
    module = Steerer.from_recipe(16, FAST)
    with pytest.raises(ValueError, match="do not match"):
        save_steerer(tmp_path / "m.safetensors", module, _config(dataclasses.replace(FAST, width=9)))
    with pytest.raises(ValueError, match="do not match"):
        save_steerer(tmp_path / "m.safetensors", module, _config(dataclasses.replace(FAST, standardize_inputs=False)))
    save_steerer(tmp_path / "m.safetensors", module, _config(FAST))
    stored = json.loads((tmp_path / "m.json").read_text())
    del stored["recipe"]
    (tmp_path / "m.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="without its recipe"):
        load_steerer(tmp_path / "m.safetensors")
