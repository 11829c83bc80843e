"""The learnable steering module of Learn-to-Steer and AMPS, its training, storage and use.

The module is a small MLP, ``hidden → width → hidden`` with a tanh in between, that reads the plain
prompt's hidden state at the input layer (last prompt token) and predicts the steering vector to
add at the steering layer. Inputs are standardised with the steering-training mean and spread
(stored in the module), so one learning rate suits every model. Learn-to-Steer trains it on the
prompts' own contrastive vectors; AMPS on the same vectors scaled by ``max(0, 1 + γ_i)``
(:mod:`amps.scaling`).

Training minimises the squared error to the target, plus an optional cosine term that weighs the
direction on its own (targets scaled to zero are left out of that term, as they have none), with
full-batch Adam and early stopping on the validation loss (the best epoch's weights are kept).

At inference :func:`learned_steering` reads the hidden state in the same forward pass that it
steers: a hook on the input layer takes the last prompt position during generation's prefill and
predicts each row's vector, and a hook on the steering layer (the same or a later layer) adds it.
No extra forward pass, no Monte Carlo. A module is saved as safetensors (weights and input
statistics) with a JSON file of its configuration beside it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch

from amps.io import read_json, read_tensors, write_json, write_tensors
from amps.models import MultimodalModel
from amps.steering import POSITIONS, add_at_positions, check_steering_args

log = logging.getLogger(__name__)

#: What a module was trained to predict: the plain contrastive vector (Learn-to-Steer) or AMPS's target.
KINDS = ("l2s", "amps")


@dataclass(frozen=True)
class SteererConfig:
    """Everything needed to rebuild a module, and where its target came from."""

    hidden_size: int
    width: int
    input_layer: int
    steer_layer: int
    kind: str
    direction: str
    vector: str
    beta: float
    r_anchor: float
    seed: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown steering module kind {self.kind!r}; expected one of {KINDS}")
        if self.width < 1 or self.hidden_size < 1:
            raise ValueError(f"module sizes must be positive, got hidden {self.hidden_size}, width {self.width}")
        if self.steer_layer < self.input_layer:
            raise ValueError(
                f"the steering layer ({self.steer_layer}) comes before the input layer ({self.input_layer}): "
                "the module could not read its input in the pass it steers"
            )


@dataclass(frozen=True)
class TrainingSettings:
    """How a module is trained (the config's ``amps.module`` section)."""

    learning_rate: float
    max_epochs: int
    patience: int
    cosine_weight: float
    weight_decay: float

    @classmethod
    def from_config(cls, section: dict) -> "TrainingSettings":
        return cls(
            section["learning_rate"], section["max_epochs"], section["patience"], section["cosine_weight"], section["weight_decay"]
        )


class Steerer(torch.nn.Module):
    """``hidden → width → hidden`` MLP with tanh, on standardised inputs."""

    def __init__(self, hidden_size: int, width: int):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(hidden_size))
        self.register_buffer("input_scale", torch.ones(hidden_size))
        self.hidden = torch.nn.Linear(hidden_size, width)
        self.output = torch.nn.Linear(width, hidden_size)

    def set_input_statistics(self, inputs: torch.Tensor) -> None:
        """Standardise with the mean and spread of ``inputs`` (the training states)."""
        self.input_mean.copy_(inputs.mean(0))
        self.input_scale.copy_(inputs.std(0).clamp(min=1e-6))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.output(torch.tanh(self.hidden((states - self.input_mean) / self.input_scale)))


def steering_loss(predicted: torch.Tensor, target: torch.Tensor, cosine_weight: float) -> torch.Tensor:
    """Mean squared distance to the targets plus ``cosine_weight`` × mean (1 − cosine) over non-zero targets."""
    loss = (predicted - target).pow(2).sum(-1).mean()
    if cosine_weight > 0:
        nonzero = target.norm(dim=-1) > 0
        if nonzero.any():
            cosine = torch.nn.functional.cosine_similarity(predicted[nonzero], target[nonzero], dim=-1)
            loss = loss + cosine_weight * (1.0 - cosine).mean()
    return loss


def _check_pairs(name: str, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    if inputs.dim() != 2 or targets.dim() != 2 or len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"{name}: need inputs and targets [samples, hidden] of one non-zero length, got "
                         f"{list(inputs.shape)} and {list(targets.shape)}")
    if not (torch.isfinite(inputs).all() and torch.isfinite(targets).all()):
        raise ValueError(f"{name}: inputs or targets contain NaN or infinite values")


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's weights (cheaper than deep-copying the state dict at every better epoch)."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def train_steerer(
    train_inputs: torch.Tensor,
    train_targets: torch.Tensor,
    validation_inputs: torch.Tensor,
    validation_targets: torch.Tensor,
    width: int,
    settings: TrainingSettings,
    seed: int,
) -> tuple[Steerer, dict]:
    """Fit a module to map inputs to targets; early stopping on the validation loss.

    Returns the module with the best validation epoch's weights and a summary (epochs run, best
    epoch, train and validation losses, the validation targets' mean squared norm for scale).
    """
    _check_pairs("steering training set", train_inputs, train_targets)
    _check_pairs("steering validation set", validation_inputs, validation_targets)
    if train_inputs.shape[1] != validation_inputs.shape[1] or train_targets.shape[1] != train_inputs.shape[1]:
        raise ValueError("inputs and targets must share one hidden size across training and validation")
    torch.manual_seed(seed)
    module = Steerer(train_inputs.shape[1], width)
    module.set_input_statistics(train_inputs.float())
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    best_loss, best_epoch, best_state = float("inf"), -1, _snapshot(module)
    epoch = 0
    for epoch in range(settings.max_epochs):
        module.train()
        loss = steering_loss(module(train_inputs), train_targets, settings.cosine_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.eval()
        with torch.no_grad():
            validation_loss = float(steering_loss(module(validation_inputs), validation_targets, settings.cosine_weight))
        if validation_loss < best_loss:
            best_loss, best_epoch, best_state = validation_loss, epoch, _snapshot(module)
        elif epoch - best_epoch >= settings.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    with torch.no_grad():
        train_loss = float(steering_loss(module(train_inputs), train_targets, settings.cosine_weight))
    summary = {
        "epochs": epoch + 1,
        "best_epoch": best_epoch + 1,
        "train_loss": train_loss,
        "validation_loss": best_loss,
        "validation_target_sq_norm": float(validation_targets.pow(2).sum(-1).mean()),
    }
    return module, summary


def save_steerer(path: str | Path, module: Steerer, config: SteererConfig) -> None:
    """Write ``path`` (.safetensors: weights and input statistics) and its JSON configuration beside it."""
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError(f"a steering module is saved as .safetensors, got {target}")
    write_tensors(target, module.state_dict(), metadata={"kind": config.kind, "direction": config.direction})
    write_json(target.with_suffix(".json"), asdict(config))


def load_steerer(path: str | Path) -> tuple[Steerer, SteererConfig]:
    """Load a module saved by :func:`save_steerer` (never pickle)."""
    target = Path(path)
    config_path = target.with_suffix(".json")
    for required in (target, config_path):
        if not required.is_file():
            raise FileNotFoundError(f"{required} does not exist: train the steering modules first")
    config = SteererConfig(**read_json(config_path))
    module = Steerer(config.hidden_size, config.width)
    module.load_state_dict(read_tensors(target))
    return module.eval(), config


@contextlib.contextmanager
def learned_steering(
    model: MultimodalModel,
    module: torch.nn.Module,
    input_layer: int,
    steer_layer: int,
    strength: float = 1.0,
    positions: str = "all",
) -> Iterator[None]:
    """Steer with ``strength × module(h)`` inside the block, ``h`` read in the same forward pass.

    During the prefill (a pass over more than one position) the input layer's output at the last
    prompt position is taken for every row and the module predicts that row's vector; the steering
    layer adds it at ``positions`` (as :func:`amps.steering.steer` does) in that pass and, for
    ``all``/``generated``, in every generation step after it. ``module`` is any map from
    [batch, hidden] states to [batch, hidden] vectors.
    """
    if positions not in POSITIONS:
        raise ValueError(f"unknown steering positions {positions!r}; expected one of {POSITIONS}")
    check_steering_args(model, steer_layer, torch.zeros(model.hidden_size), positions)
    if not 0 <= input_layer <= steer_layer:
        raise ValueError(f"input layer {input_layer} must lie between 0 and the steering layer {steer_layer}")
    weight = next(model.decoder_layers[steer_layer].parameters())
    module = module.to(weight.device)
    predicted: dict[str, torch.Tensor] = {}

    def read_state(_module, _args, output):
        if output.shape[1] > 1:
            with torch.no_grad():
                vectors = strength * module(output[:, -1, :].float())
            predicted["delta"] = vectors.to(weight.dtype).unsqueeze(1)

    def add_vector(_module, _args, output):
        if "delta" not in predicted:
            raise RuntimeError("the steering layer ran before the module read the prompt's state")
        return add_at_positions(output, predicted["delta"], positions)

    # The reading hook is registered first: on a shared layer it sees the output before steering.
    handles = [model.decoder_layers[input_layer].register_forward_hook(read_state)]
    handles.append(model.decoder_layers[steer_layer].register_forward_hook(add_vector))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
