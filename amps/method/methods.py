"""The steering methods compared, and how each steers at a strength ``s``.

* ``instruction``: MC²'s preference instruction for the target modality in the prompt (no strength);
* ``mean``: the mean contrastive vector, the same for every prompt;
* ``p2s``: prompt-to-steer with each prompt's own contrastive vector (an oracle: at test time it
  needs the prompt's instructed versions);
* ``l2s``: Learn-to-Steer, a module trained on the prompts' own vectors (γ = 0);
* ``amps``: the same module trained on AMPS's target ``c_i·v_i`` (:mod:`amps.method.scaling`);
* ``amps_online``: the mean vector times ``c_i`` with the factor from the MCR of the prompt itself
  (no module; the MCR is measured at test time).

Strength ``s`` is in one unit for all (:mod:`amps.method.vectors`): the mean direction at ``s`` times the
mean hidden-state norm, or the prompt's own, predicted or factor-scaled vector rescaled so that a
typical prompt vector has that length.
The direction ``to_text`` uses the negated vectors (and modules trained on negated targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import numpy as np
import torch

from amps.method.steerer import SteererConfig, learned_steering, load_steerer
from amps.method.vectors import ORDER_INDEX
from amps.models.asking import BatchContext, Question
from amps.models.interface import Batch, MultimodalModel
from amps.steering.hook import steer
from amps.vocabulary import LEARNED


@dataclass
class VectorSteering:
    """Each question's prompt steered by its vector ([orders, records, hidden]) × strength × its record's factor.

    Record indices are positions in the records the questions were built from; ``factors`` (one per
    record, or None for 1) scale the strength per record (AMPS-online).
    """

    model: MultimodalModel
    layer: int
    vectors: torch.Tensor
    positions: str
    factors: np.ndarray | None = None

    def context(self, strength: float) -> BatchContext:
        factors = None if self.factors is None else torch.as_tensor(self.factors, dtype=torch.float32)

        def enter(chunk: list[Question], _batch: Batch) -> ContextManager:
            records = torch.tensor([question.record_index for question in chunk], dtype=torch.long)
            orders = torch.tensor([ORDER_INDEX[question.order] for question in chunk], dtype=torch.long)
            alpha = strength if factors is None else strength * factors[records]
            return steer(self.model, self.layer, self.vectors[orders, records], self.positions, alpha)

        return enter


@dataclass
class ModuleSteering:
    """A learned module's prediction × ``scale`` × strength, read and added in the same forward pass.

    ``scale`` (:attr:`amps.method.vectors.RecordVectors.prompt_scale`) gives a typical predicted vector the
    strength unit's length, as for the prompt vectors it was trained on.
    """

    model: MultimodalModel
    module: torch.nn.Module
    config: SteererConfig
    positions: str
    scale: float

    def context(self, strength: float) -> BatchContext:
        def enter(_chunk: list[Question], _batch: Batch) -> ContextManager:
            return learned_steering(
                self.model, self.module, self.config.input_layer, self.config.steer_layer, strength * self.scale, self.positions
            )

        return enter


def module_name(method: str, direction: str, seed_index: int, scaling_name: str = "b0") -> str:
    """File stem of a trained module: ``l2s-<direction>-seed<k>``, ``amps-<direction>-<scaling>-seed<k>``.

    AMPS with β = 0 (scaling ``b0``) is Learn-to-Steer: it names the Learn-to-Steer module.
    """
    if method == "l2s" or scaling_name == "b0":
        return f"l2s-{direction}-seed{seed_index}"
    if method == "amps":
        return f"amps-{direction}-{scaling_name}-seed{seed_index}"
    raise ValueError(f"{method!r} has no trained module; expected one of {LEARNED}")


def module_steering(model: MultimodalModel, steerers: str | Path, name: str, positions: str, scale: float) -> ModuleSteering:
    """The :class:`ModuleSteering` of the module ``name`` in the folder ``steerers``."""
    module, config = load_steerer(Path(steerers) / f"{name}.safetensors")
    return ModuleSteering(model, module, config, positions, scale)
