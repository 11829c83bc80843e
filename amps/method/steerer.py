"""The learnable steering module of Learn-to-Steer and AMPS, its training, storage and use.

The module is a small MLP, ``hidden → width → hidden`` (encoder with bias, tanh, decoder), that
reads the plain prompt's hidden state at the input layer (last prompt token) and predicts the
steering vector to add at the steering layer. Learn-to-Steer trains it on the prompts' own
contrastive vectors; AMPS on the same vectors scaled by ``max(0, 1 + γ_i)`` (:mod:`amps.method.scaling`).

How it is built and trained is a :class:`ModuleRecipe` (the config's ``amps.module`` section).
Its defaults are the published Learn-to-Steer recipe (Parekh et al., NeurIPS 2025): raw inputs,
decoder without bias whose columns start at the top principal directions of the centred targets,
loss ``mse + l1 − w·cosine`` per sample with ``w`` ramped linearly to 0.1 over 100 epochs, Adam at
5e-5, batches of 64, 100 epochs, cosine learning-rate schedule with linear warmup over the first 50
epochs, and the epoch with the best validation loss kept. Targets scaled to zero (AMPS) have no
direction: they count in the squared and absolute terms but not in the cosine term.

At inference the module reads the hidden state in the same forward pass that it steers
(:mod:`amps.method.steering_module`). A module is saved as safetensors (weights, and input statistics when
it standardises) with a JSON file of its configuration and recipe beside it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from amps.core.io import read_json, read_tensors, write_json, write_tensors
from amps.method.recipe import ModuleRecipe
from amps.vocabulary import LEARNED

log = logging.getLogger(__name__)

#: Added to the seed for the shuffling generator (the initialisation generator takes the seed itself).
SHUFFLE_SEED_OFFSET = 2**32


@dataclass(frozen=True)
class SteererConfig:
    """Everything needed to rebuild a module (its recipe included), and where its target came from."""

    hidden_size: int
    input_layer: int
    steer_layer: int
    kind: str
    direction: str
    vector: str
    beta: float
    r_anchor: float
    seed: int
    recipe: ModuleRecipe

    def __post_init__(self) -> None:
        if self.kind not in LEARNED:
            raise ValueError(f"unknown steering module kind {self.kind!r}; expected one of {LEARNED}")
        if not isinstance(self.recipe, ModuleRecipe):
            raise TypeError(f"a steering module's recipe must be a ModuleRecipe, got {type(self.recipe).__name__}")
        if self.hidden_size < 1:
            raise ValueError(f"module sizes must be positive, got hidden {self.hidden_size}")
        if self.steer_layer < self.input_layer:
            raise ValueError(
                f"the steering layer ({self.steer_layer}) comes before the input layer ({self.input_layer}): "
                "the module could not read its input in the pass it steers"
            )

    @property
    def width(self) -> int:
        return self.recipe.width

    def to_dict(self) -> dict:
        """A JSON-ready dict (the recipe as a nested dict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SteererConfig":
        values = dict(values)
        if "recipe" not in values:
            raise ValueError("this steering module was saved without its recipe (an older format): train the modules again")
        return cls(**{**values, "recipe": ModuleRecipe.from_config(values["recipe"])})


class Steerer(torch.nn.Module):
    """``hidden → width → hidden``: encoder (with bias), tanh, decoder (bias optional); inputs raw or standardised."""

    def __init__(
        self,
        hidden_size: int,
        width: int,
        decoder_bias: bool = False,
        standardize_inputs: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.standardize_inputs = standardize_inputs
        if standardize_inputs:
            self.register_buffer("input_mean", torch.zeros(hidden_size))
            self.register_buffer("input_scale", torch.ones(hidden_size))
        self.encoder = torch.nn.Linear(hidden_size, width, bias=True)
        self.decoder = torch.nn.Linear(width, hidden_size, bias=decoder_bias)
        self.reset_parameters(generator)

    @classmethod
    def from_recipe(cls, hidden_size: int, recipe: ModuleRecipe, generator: torch.Generator | None = None) -> "Steerer":
        return cls(hidden_size, recipe.width, recipe.decoder_bias, recipe.standardize_inputs, generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default ``Linear`` initialisation, drawn from ``generator`` (the global RNG if None).

        Drawn in order: encoder weight, encoder bias, decoder weight, decoder bias (if any).
        """
        for layer in (self.encoder, self.decoder):
            torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1.0 / math.sqrt(layer.in_features)
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    def set_input_statistics(self, inputs: torch.Tensor) -> None:
        """Standardise with the mean and spread of ``inputs`` (the training states)."""
        if not self.standardize_inputs:
            raise ValueError("this module does not standardise its inputs (standardize_inputs is false)")
        self.input_mean.copy_(inputs.mean(0))
        self.input_scale.copy_(inputs.std(0).clamp(min=1e-6))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if self.standardize_inputs:
            states = (states - self.input_mean) / self.input_scale
        return self.decoder(torch.tanh(self.encoder(states)))


def principal_directions(targets: torch.Tensor, count: int) -> torch.Tensor:
    """The top ``min(count, rank)`` right-singular vectors of the centred ``targets``, as rows.

    Signs follow scikit-learn's ``svd_flip`` on the components: each row's largest-magnitude entry is positive.
    """
    centred = targets.double() - targets.double().mean(0)
    _u, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    if len(singular) == 0 or singular[0] == 0:
        return targets.new_zeros(0, targets.shape[1])
    tolerance = singular[0] * max(centred.shape) * torch.finfo(targets.dtype).eps
    rank = int((singular > tolerance).sum())
    components = vh[: min(count, rank)]
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    return (components * signs).to(targets.dtype)


@torch.no_grad()
def svd_initialise(module: Steerer, targets: torch.Tensor) -> int:
    """Set the decoder's first columns to the targets' top principal directions; returns how many were set."""
    components = principal_directions(targets.float(), module.decoder.in_features)
    module.decoder.weight[:, : len(components)] = components.T.to(module.decoder.weight)
    return len(components)


def steering_loss(
    predicted: torch.Tensor, target: torch.Tensor, cosine_weight: float, mse_weight: float = 1.0, l1_weight: float = 1.0
) -> torch.Tensor:
    """Batch mean of the per-sample ``mse_weight·mean((p−t)²) + l1_weight·mean|p−t| − cosine_weight·cos(p, t)``.

    Means are over the hidden dimensions. A zero target has no direction: its cosine is taken as 0
    (it still counts in the squared and absolute terms and in the batch mean).
    """
    error = predicted - target
    loss = mse_weight * error.pow(2).mean(-1) + l1_weight * error.abs().mean(-1)
    if cosine_weight != 0:
        nonzero = target.norm(dim=-1) > 0
        cosine = torch.zeros_like(loss)
        cosine[nonzero] = torch.nn.functional.cosine_similarity(predicted[nonzero], target[nonzero], dim=-1)
        loss = loss - cosine_weight * cosine
    return loss.mean()


def schedule_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """``transformers.get_cosine_schedule_with_warmup``'s factor: linear warmup to 1, then half-cosine to 0 at ``total_steps``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _check_pairs(name: str, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    if inputs.dim() != 2 or targets.dim() != 2 or len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(
            f"{name}: need inputs and targets [samples, hidden] of one non-zero length, got "
            f"{list(inputs.shape)} and {list(targets.shape)}"
        )
    if not (torch.isfinite(inputs).all() and torch.isfinite(targets).all()):
        raise ValueError(f"{name}: inputs or targets contain NaN or infinite values")


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's weights (cheaper than deep-copying the state dict at every better epoch)."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _validation_metrics(module: Steerer, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
    with torch.no_grad():
        predicted = module(inputs)
        nonzero = targets.norm(dim=-1) > 0
        cosine = torch.nn.functional.cosine_similarity(predicted[nonzero], targets[nonzero], dim=-1)
        target_norm = float(targets.norm(dim=-1).mean())
        return {
            "validation_cosine": float(cosine.mean()) if nonzero.any() else float("nan"),
            "validation_norm_ratio": float(predicted.norm(dim=-1).mean()) / target_norm if target_norm > 0 else float("nan"),
            "validation_target_sq_norm": float(targets.pow(2).sum(-1).mean()),
        }


def train_steerer(
    train_inputs: torch.Tensor,
    train_targets: torch.Tensor,
    validation_inputs: torch.Tensor,
    validation_targets: torch.Tensor,
    recipe: ModuleRecipe,
    seed: int,
) -> tuple[Steerer, dict]:
    """Fit a module to map inputs to targets following ``recipe``; the best validation epoch's weights are kept.

    Deterministic for a seed: the initialisation (encoder, encoder bias, decoder, decoder bias, as
    :meth:`Steerer.reset_parameters` draws them) comes from ``torch.Generator().manual_seed(seed)``,
    the per-epoch shuffles (``torch.randperm``) from one seeded with ``seed + SHUFFLE_SEED_OFFSET``.
    Every epoch trains on shuffled minibatches (one optimiser and schedule step each), then
    evaluates the validation loss on the whole validation set.

    Returns the module (eval mode) and a summary: ``epochs`` run, ``best_epoch`` (both counted from
    1), ``train_loss`` and ``validation_loss`` of the kept weights (both with the validation cosine
    weight), ``final_validation_loss`` (the last epoch's), ``validation_cosine`` (mean cosine of the
    predictions to the non-zero validation targets), ``validation_norm_ratio`` (mean prediction norm
    over mean target norm), ``validation_target_sq_norm`` (for scale) and ``svd_components``
    (decoder columns set from the targets' principal directions).
    """
    if not isinstance(recipe, ModuleRecipe):
        raise TypeError(f"train_steerer needs a ModuleRecipe, got {type(recipe).__name__}")
    _check_pairs("steering training set", train_inputs, train_targets)
    _check_pairs("steering validation set", validation_inputs, validation_targets)
    if train_inputs.shape[1] != validation_inputs.shape[1] or {train_targets.shape[1], validation_targets.shape[1]} != {
        train_inputs.shape[1]
    }:
        raise ValueError("inputs and targets must share one hidden size across training and validation")
    device = train_inputs.device
    train_inputs, train_targets = train_inputs.float(), train_targets.float()
    validation_inputs, validation_targets = validation_inputs.float().to(device), validation_targets.float().to(device)
    init_generator = torch.Generator().manual_seed(seed)
    shuffle_generator = torch.Generator().manual_seed(seed + SHUFFLE_SEED_OFFSET)

    module = Steerer.from_recipe(train_inputs.shape[1], recipe, init_generator)
    if recipe.standardize_inputs:
        module.set_input_statistics(train_inputs.cpu())
    svd_components = svd_initialise(module, train_targets.cpu()) if recipe.init == "svd" else 0
    module.to(device)
    optimizer_class = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    optimizer = optimizer_class(module.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    samples = len(train_inputs)
    steps_per_epoch = math.ceil(samples / recipe.batch_size)
    scheduler = None
    if recipe.schedule == "cosine_warmup":
        warmup_steps, total_steps = recipe.warmup_epochs * steps_per_epoch, recipe.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule_factor(step, warmup_steps, total_steps))

    def loss_of(predicted: torch.Tensor, targets: torch.Tensor, cosine_weight: float) -> torch.Tensor:
        return steering_loss(predicted, targets, cosine_weight, recipe.mse_weight, recipe.l1_weight)

    best_loss, best_epoch, best_state = float("inf"), -1, _snapshot(module)
    epoch = validation_loss = 0
    for epoch in range(recipe.epochs):
        module.train()
        cosine_weight = recipe.cosine_weight_at(epoch)
        order = torch.randperm(samples, generator=shuffle_generator).to(device)
        for start in range(0, samples, recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            loss = loss_of(module(train_inputs[batch]), train_targets[batch], cosine_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        module.eval()
        with torch.no_grad():
            validation_loss = float(loss_of(module(validation_inputs), validation_targets, recipe.validation_cosine_weight))
        if not math.isfinite(validation_loss):
            raise FloatingPointError(
                f"steering module training diverged in epoch {epoch + 1} (validation loss "
                f"{validation_loss}): lower the recipe's learning_rate"
            )
        if validation_loss < best_loss:
            best_loss, best_epoch, best_state = validation_loss, epoch, _snapshot(module)
        elif recipe.patience is not None and epoch - best_epoch >= recipe.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    with torch.no_grad():
        train_loss = float(loss_of(module(train_inputs), train_targets, recipe.validation_cosine_weight))
    summary = {
        "epochs": epoch + 1,
        "best_epoch": best_epoch + 1,
        "train_loss": train_loss,
        "validation_loss": best_loss,
        "final_validation_loss": validation_loss,
        **_validation_metrics(module, validation_inputs, validation_targets),
        "svd_components": svd_components,
    }
    return module, summary


def save_steerer(path: str | Path, module: Steerer, config: SteererConfig) -> None:
    """Write ``path`` (.safetensors: weights, input statistics if any) and its JSON configuration beside it.

    The module must be the one ``config`` rebuilds (same sizes, decoder bias and standardisation).
    """
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError(f"a steering module is saved as .safetensors, got {target}")
    state = module.state_dict()
    expected = Steerer.from_recipe(config.hidden_size, config.recipe).state_dict()
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    if shapes != {name: tuple(tensor.shape) for name, tensor in expected.items()}:
        raise ValueError(
            f"the module's weights {shapes} do not match the one its configuration describes "
            f"(hidden {config.hidden_size}, recipe {config.recipe})"
        )
    write_tensors(target, state, metadata={"kind": config.kind, "direction": config.direction})
    write_json(target.with_suffix(".json"), config.to_dict())


def load_steerer(path: str | Path) -> tuple[Steerer, SteererConfig]:
    """Load a module saved by :func:`save_steerer` (never pickle), rebuilt from its stored recipe."""
    target = Path(path)
    config_path = target.with_suffix(".json")
    for required in (target, config_path):
        if not required.is_file():
            raise FileNotFoundError(f"{required} does not exist: train the steering modules first")
    config = SteererConfig.from_dict(read_json(config_path))
    module = Steerer.from_recipe(config.hidden_size, config.recipe)
    module.load_state_dict(read_tensors(target))
    return module.eval(), config
