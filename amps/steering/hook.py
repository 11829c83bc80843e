"""Activation steering: add a vector to one decoder layer's output while a block runs.

:class:`SteeringVector` is a vector for one layer that :meth:`~SteeringVector.apply` adds while a block
runs (``with vector.apply(model): model.generate(...)``). :func:`steer` is the one hook every steering
method uses. It adds ``alpha * vector`` to the
residual stream that a decoder layer outputs, with either one vector for the whole batch or one
vector per batch row (so per-sample vectors work inside batched ``generate``), at the positions
chosen by ``positions``, and removes itself on exit even when the block raises.

Which positions are "prompt" and which are "generated" follows from how generation runs with a
KV cache: the first forward pass (prefill) covers the whole prompt, every later pass covers the one
new token. A pass over more than one position is therefore taken as the prompt, a pass over one
position as a generation step. A plain forward (no generation) is all prompt.

Strength unit used by the pipeline (see :func:`scaled_direction`): a steering direction is
normalised to unit length and multiplied by ``alpha * reference_norm``, where the reference norm is
the mean norm of the plain prompt's hidden state at the steering layer (last prompt token, steering
training records). ``alpha = 1`` thus adds a vector as long as a typical hidden state there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Iterator

import torch
from transformers import PreTrainedModel

from amps.models.interface import MultimodalModel, decoder_layers, hidden_size
from amps.vocabulary import POSITIONS

#: What the steering hooks steer: an amps model, or a transformers image-text model used directly.
SteerableModel = MultimodalModel | PreTrainedModel


def check_steering_args(model: SteerableModel, layer: int, vectors: torch.Tensor, positions: str) -> None:
    """Raise a clear error for a layer out of range, a vector of the wrong size, or unknown positions."""
    if positions not in POSITIONS:
        raise ValueError(f"unknown steering positions {positions!r}; expected one of {POSITIONS}")
    layers, width = len(decoder_layers(model)), hidden_size(model)
    if not 0 <= layer < layers:
        raise ValueError(f"steering layer {layer} is out of range: the model has {layers} decoder layers")
    if vectors.dim() not in (1, 2) or vectors.shape[-1] != width:
        raise ValueError(f"steering vectors must have shape [{width}] or [batch, {width}], got {list(vectors.shape)}")
    if not torch.isfinite(vectors).all():
        raise ValueError("steering vectors contain NaN or infinite values")


def add_at_positions(output: torch.Tensor, delta: torch.Tensor, positions: str) -> torch.Tensor:
    """``output`` with ``delta`` added at ``positions`` (see :data:`POSITIONS`).

    A pass over more than one position is the prompt (prefill), a pass over one position a
    generated token.
    """
    prefill = output.shape[1] > 1
    if positions == "all" or (positions == "prompt" and prefill) or (positions == "generated" and not prefill):
        return output + delta
    if positions == "last" and prefill:
        steered = output.clone()
        steered[:, -1:, :] += delta
        return steered
    return output


@contextlib.contextmanager
def steer(
    model: SteerableModel,
    layer: int,
    vectors: torch.Tensor,
    positions: str = "all",
    alpha: float | torch.Tensor = 1.0,
) -> Iterator[None]:
    """Add ``alpha * vectors`` to the output of decoder layer ``layer`` inside the ``with`` block.

    ``vectors`` is ``[hidden]`` (the same vector for every row) or ``[batch, hidden]`` (row ``i``
    of every forward pass gets ``vectors[i]``; the batch size must then match). ``alpha`` is a
    number or a ``[batch]`` tensor of per-row strengths. ``model`` is an amps model or the transformers
    model itself. The hook is removed on exit, also on error.
    """
    vectors = torch.as_tensor(vectors)
    check_steering_args(model, layer, vectors, positions)
    layer_module = decoder_layers(model)[layer]
    # The layer's own weights say where its output lives (layers may sit on different GPUs when sharded).
    weight = next(layer_module.parameters())
    strengths = torch.as_tensor(alpha).to(device=weight.device, dtype=torch.float32)
    if strengths.dim() > 1 or (strengths.dim() == 1 and (vectors.dim() != 2 or len(strengths) != len(vectors))):
        raise ValueError(f"alpha must be a number or one strength per vector row, got shape {list(strengths.shape)}")
    # Scaled in float32, then cast once to the layer's dtype; gradients reach learned vectors and strengths.
    scaled = vectors.to(device=weight.device, dtype=torch.float32) * (
        strengths.unsqueeze(-1) if strengths.dim() == 1 else strengths
    )
    # [1 or batch, 1, hidden]: broadcasts over positions.
    delta = (scaled if scaled.dim() == 2 else scaled.unsqueeze(0)).unsqueeze(1).to(weight.dtype)

    def add_vector(_module, _args, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"decoder layer {layer} returned {type(output).__name__}, expected a hidden-state tensor")
        if delta.shape[0] != 1 and delta.shape[0] != output.shape[0]:
            raise ValueError(f"{delta.shape[0]} steering vectors for a batch of {output.shape[0]} rows")
        return add_at_positions(output, delta, positions)

    handle = layer_module.register_forward_hook(add_vector)
    try:
        yield
    finally:
        handle.remove()


def scaled_direction(direction: torch.Tensor, alpha: float, reference_norm: float) -> torch.Tensor:
    """``alpha * reference_norm`` times the unit vector of ``direction`` (the pipeline's α unit)."""
    norm = float(direction.norm())
    if norm == 0.0:
        raise ValueError("cannot scale a zero steering direction")
    return direction * (alpha * reference_norm / norm)


@dataclass(frozen=True)
class SteeringVector:
    """A steering vector for one decoder layer: ``strength × vector`` is added to that layer's output.

    ``vector`` is ``[hidden]`` (every row) or ``[batch, hidden]`` (one per row of the batch being steered),
    at strength 1; ``positions`` says where it is added (:data:`amps.vocabulary.POSITIONS`). :meth:`apply`
    steers any forward pass or ``generate`` call inside its ``with`` block.

    Example::

        vector = amps.load_mean_vector("results/offline-default/activations/toy-s.safetensors", "to_vision")
        with vector.apply(model.model, strength=0.5):
            output = model.model.generate(**inputs, max_new_tokens=8)
    """

    vector: torch.Tensor
    layer: int
    positions: str = "all"

    def apply(self, model: SteerableModel, strength: float | torch.Tensor = 1.0) -> ContextManager[None]:
        """Steer ``model`` (an amps model or the transformers model) inside the block; the hook goes on exit, also on
        error. ``strength`` is a number or one per vector row."""
        return steer(model, self.layer, self.vector, self.positions, strength)
