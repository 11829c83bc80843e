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

from amps.method.steerer import load_steerer
from amps.method.steering_module import SteeringModule
from amps.method.vectors import ORDER_INDEX
from amps.models.asking import BatchContext, Question
from amps.models.batch import Batch
from amps.models.interface import MultimodalModel
from amps.steering.hook import SteeringVector


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
            return SteeringVector(self.vectors[orders, records], self.layer, self.positions).apply(self.model, alpha)

        return enter


@dataclass
class ModuleSteering:
    """A trained module steering every batch at the strength of the scan point: its prediction × scale × strength,
    read and added in the same forward pass (:class:`amps.method.steering_module.SteeringModule`)."""

    model: MultimodalModel
    steering: SteeringModule

    def context(self, strength: float) -> BatchContext:
        def enter(_chunk: list[Question], _batch: Batch) -> ContextManager:
            return self.steering.apply(self.model, strength)

        return enter


def module_steering(model: MultimodalModel, steerers: str | Path, name: str, positions: str, scale: float) -> ModuleSteering:
    """The :class:`ModuleSteering` of the module ``name`` in the folder ``steerers``.

    ``scale`` (:attr:`amps.method.vectors.RecordVectors.prompt_scale`) gives a typical predicted vector the
    strength unit's length, as for the prompt vectors it was trained on.
    """
    module, config = load_steerer(Path(steerers) / f"{name}.safetensors")
    return ModuleSteering(model, SteeringModule(module, config, scale, positions))
