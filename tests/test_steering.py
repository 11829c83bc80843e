"""The steering hook: exact effect on logits, clean removal, per-row vectors, positions, bad input."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.steering.hook import scaled_direction, steer

from conftest import forward_hooks
from tiny_models import TINY_FAMILIES, build_tiny_model

PROMPTS = [
    "Text context: The shape is blue.\nWhat color is the shape?\nA. red\nB. blue\n"
    "Answer the question by selecting the correct answer A or B.",
    "What color is the shape?\nA. blue\nB. red",
    "Text context: The square is on the left.\nWhere is the square?\nA. left\nB. right",
]
COLORS = [(220, 30, 30), (40, 70, 230), (30, 190, 40)]


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family_model(request, tmp_path_factory) -> MultimodalModel:
    """A tiny random-weight model of each family of the model interface, loaded through the public path."""
    folder = build_tiny_model(request.param, tmp_path_factory.mktemp(request.param) / "model")
    return load_model(folder, device="cpu")


def _batch(model: MultimodalModel, rows: list[int]):
    images = [Image.new("RGB", (32, 32), COLORS[row]) for row in rows]
    return model.encode(images, [PROMPTS[row] for row in rows])


def _logits(model: MultimodalModel, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.forward(batch).logits


def _vector(model: MultimodalModel, seed: int, scale: float = 4.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(model.hidden_size, generator=generator)


class AddAfter(torch.nn.Module):
    """Reference steering without hooks: a layer wrapped so that its output gets ``vector`` added."""

    def __init__(self, layer: torch.nn.Module, vector: torch.Tensor):
        super().__init__()
        self.layer = layer
        self.vector = vector

    def forward(self, *args, **kwargs):
        return self.layer(*args, **kwargs) + self.vector


def _reference_logits(model: MultimodalModel, batch, layer: int, vector: torch.Tensor) -> torch.Tensor:
    layers = model.decoder_layers
    original = layers[layer]
    layers[layer] = AddAfter(original, vector)
    try:
        return _logits(model, batch)
    finally:
        layers[layer] = original


def test_hook_equals_adding_the_vector_by_hand_at_the_last_layer(tiny_model):
    """At the last layer the rest of the forward is final norm + LM head: compute it by hand."""
    batch = _batch(tiny_model, [0, 1])
    last = tiny_model.num_layers - 1
    vector = _vector(tiny_model, 0)
    captured = {}
    handle = tiny_model.decoder_layers[last].register_forward_hook(lambda _m, _a, output: captured.update(h=output))
    try:
        plain = _logits(tiny_model, batch)
    finally:
        handle.remove()
    decoder = tiny_model.model.get_decoder()
    with torch.no_grad():
        expected = tiny_model.model.get_output_embeddings()(decoder.norm(captured["h"] + vector))
    with steer(tiny_model, last, vector):
        steered = _logits(tiny_model, batch)
    assert (steered - plain).abs().max() > 0.1
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)


def test_hook_equals_a_wrapped_layer_on_every_family(family_model):
    batch = _batch(family_model, [0, 2])
    vector = _vector(family_model, 1)
    for layer in range(family_model.num_layers):
        expected = _reference_logits(family_model, batch, layer, 2.5 * vector)
        with steer(family_model, layer, vector, alpha=2.5):
            steered = _logits(family_model, batch)
        torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    assert (steered - _logits(family_model, batch)).abs().max() > 0.1


def test_model_is_unchanged_after_exit_even_on_error(tiny_model):
    batch = _batch(tiny_model, [0, 1])
    before = _logits(tiny_model, batch)
    hooks = forward_hooks(tiny_model)
    with steer(tiny_model, 0, _vector(tiny_model, 2)):
        assert not torch.equal(_logits(tiny_model, batch), before)
    assert torch.equal(_logits(tiny_model, batch), before)
    with pytest.raises(RuntimeError, match="inside the block"):
        with steer(tiny_model, 1, _vector(tiny_model, 3)):
            raise RuntimeError("inside the block")
    assert forward_hooks(tiny_model) == hooks
    assert torch.equal(_logits(tiny_model, batch), before)


def test_per_row_vectors_match_rows_run_alone(family_model):
    rows = [0, 1, 2]
    vectors = torch.stack([_vector(family_model, 10 + row, scale=3.0) for row in rows])
    strengths = torch.tensor([1.0, 0.5, 2.0])
    batch = _batch(family_model, rows)
    with steer(family_model, 1, vectors, alpha=strengths):
        batched_logits = _logits(family_model, batch)[:, -1]
        batched_answers = family_model.generate(batch, max_new_tokens=5)
    for position, row in enumerate(rows):
        alone = _batch(family_model, [row])
        with steer(family_model, 1, vectors[position], alpha=float(strengths[position])):
            torch.testing.assert_close(_logits(family_model, alone)[0, -1], batched_logits[position], atol=1e-4, rtol=1e-4)
            assert family_model.generate(alone, max_new_tokens=5) == [batched_answers[position]]
    # The rows really got different vectors: swapping them changes the output.
    with steer(family_model, 1, vectors.flip(0), alpha=strengths.flip(0)):
        assert not torch.allclose(_logits(family_model, batch)[:, -1], batched_logits, atol=1e-3)


@pytest.mark.parametrize(
    ("positions", "prefill_steered", "last_only", "steps_steered"),
    [("all", True, False, True), ("prompt", True, False, False), ("generated", False, False, True), ("last", True, True, False)],
)
def test_positions_select_where_the_vector_is_added(tiny_model, positions, prefill_steered, last_only, steps_steered):
    """Hooks before and after the steering hook see each pass's output without and with the vector."""
    batch = _batch(tiny_model, [0, 1])
    vector = _vector(tiny_model, 4)
    layer = tiny_model.decoder_layers[1]
    seen: dict[str, list[torch.Tensor]] = {"before": [], "after": []}
    first = layer.register_forward_hook(lambda _m, _a, output: seen["before"].append(output.clone()))
    try:
        with steer(tiny_model, 1, vector, positions=positions):
            second = layer.register_forward_hook(lambda _m, _a, output: seen["after"].append(output.clone()))
            try:
                tiny_model.model.generate(**batch.inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
            finally:
                second.remove()
    finally:
        first.remove()
    added = [after - before for before, after in zip(seen["before"], seen["after"])]
    assert len(added) == 3 and added[0].shape[1] == batch.input_ids.shape[1] and added[1].shape[1] == 1
    prefill = added[0]
    if not prefill_steered:
        assert torch.equal(prefill, torch.zeros_like(prefill))
    elif last_only:
        torch.testing.assert_close(prefill[:, -1], vector.expand(2, -1), atol=1e-5, rtol=0)
        assert torch.equal(prefill[:, :-1], torch.zeros_like(prefill[:, :-1]))
    else:
        torch.testing.assert_close(prefill, vector.expand_as(prefill), atol=1e-5, rtol=0)
    for step in added[1:]:
        expected = vector.expand_as(step) if steps_steered else torch.zeros_like(step)
        torch.testing.assert_close(step, expected, atol=1e-5, rtol=0)


def test_bad_arguments_are_named_before_any_forward(tiny_model):
    hidden = tiny_model.hidden_size
    hooks = forward_hooks(tiny_model)
    with pytest.raises(ValueError, match=rf"shape \[{hidden}\] or \[batch, {hidden}\], got \[7\]"):
        with steer(tiny_model, 0, torch.zeros(7)):
            pass
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        with steer(tiny_model, 9, torch.zeros(hidden)):
            pass
    with pytest.raises(ValueError, match="unknown steering positions 'middle'"):
        with steer(tiny_model, 0, torch.zeros(hidden), positions="middle"):
            pass
    with pytest.raises(ValueError, match="NaN or infinite"):
        with steer(tiny_model, 0, torch.full((hidden,), float("nan"))):
            pass
    with pytest.raises(ValueError, match="one strength per vector row"):
        with steer(tiny_model, 0, torch.zeros(3, hidden), alpha=torch.ones(2)):
            pass
    batch = _batch(tiny_model, [0, 1])
    with pytest.raises(ValueError, match="3 steering vectors for a batch of 2 rows"):
        with steer(tiny_model, 0, torch.zeros(3, hidden)):
            _logits(tiny_model, batch)
    assert forward_hooks(tiny_model) == hooks


def test_scaled_direction_has_alpha_times_the_reference_norm():
    direction = torch.tensor([3.0, 4.0])
    scaled = scaled_direction(direction, alpha=0.5, reference_norm=40.0)
    torch.testing.assert_close(scaled, torch.tensor([12.0, 16.0]))
    with pytest.raises(ValueError, match="zero steering direction"):
        scaled_direction(torch.zeros(2), 1.0, 1.0)


def test_gradients_reach_learned_vectors_and_strengths(tiny_model):
    """Input-dependent methods learn the vector or its strength through the hook."""
    batch = _batch(tiny_model, [0, 1])
    vectors = torch.zeros(2, tiny_model.hidden_size, requires_grad=True)
    strengths = torch.ones(2, requires_grad=True)
    with steer(tiny_model, 0, vectors + _vector(tiny_model, 5), alpha=strengths, positions="last"):
        tiny_model.forward(batch).logits[:, -1].logsumexp(-1).sum().backward()
    tiny_model.model.zero_grad(set_to_none=True)  # the model is shared by other tests
    assert vectors.grad.abs().sum() > 0 and strengths.grad.abs().sum() > 0
