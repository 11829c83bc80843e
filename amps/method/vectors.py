"""The inputs of the steering methods: each prompt's vectors and plain states, and each record's MCR.

A prompt (a record in one option order) has its own contrastive vector: its image-instructed minus
its text-instructed state at the steering layer's last position. Its letter part is what separates
this prompt's image answer from its text answer, so it is kept: input-dependent steering has to
predict it from the plain prompt. The mean vector averages both orders of every steering-training
record, so there the letter cancels.

One strength unit serves every method, the sweep's α: the mean norm of the plain prompt's hidden
state at the steering layer (steering-train). Strength ``s`` adds the mean direction at length
``s`` × that norm, or each prompt's own (or predicted, or AMPS-scaled) vector rescaled so that the
typical prompt vector (the mean norm over the steering-training prompts) has that length: one
strength, one typical size of push, whatever the method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from amps.mcr.table import mcr_of
from amps.steering.activations import Activations, mean_direction
from amps.vocabulary import ORDERS

log = logging.getLogger(__name__)

#: Position of each option order in the first axis of prompt vectors ([orders, records, hidden]).
ORDER_INDEX = {order: index for index, order in enumerate(ORDERS)}


def _per_order(activations: Activations, kind: str, layer: int, rows: torch.Tensor) -> torch.Tensor:
    """[orders, records, hidden]: a per-order tensor of the activations file for ``rows``."""
    return torch.stack([activations.get(f"{kind}.{order}", layer)[rows] for order in ORDERS])


@dataclass
class RecordVectors:
    """The steering vectors of a set of records' prompts at one layer, all pointing toward vision.

    ``reference_norm`` is the strength unit (the mean plain hidden-state norm), ``typical_norm`` the
    mean norm of the steering-training prompts' own vectors.
    """

    layer: int
    per_prompt: torch.Tensor
    mean_diff: torch.Tensor
    reference_norm: float
    typical_norm: float

    @property
    def prompt_scale(self) -> float:
        """The factor that gives a typical prompt vector (or a module's prediction of one) the unit's length."""
        return self.reference_norm / self.typical_norm

    def base(self, vector: str) -> torch.Tensor:
        """[orders, records, hidden] at strength 1: each prompt's own vector (``per_sample``) or the mean direction
        (``mean``), both of typical length one unit."""
        if vector == "per_sample":
            return self.per_prompt * self.prompt_scale
        if vector == "mean":
            return mean_direction(self.mean_diff, self.reference_norm).expand_as(self.per_prompt).clone()
        raise ValueError(f"unknown steering vector {vector!r}; expected per_sample or mean")


def record_vectors(activations: Activations, layer: int, record_ids: list[str]) -> RecordVectors:
    """The vectors of the prompts of ``record_ids`` (both orders) at ``layer`` from the activations file."""
    train = _per_order(activations, "diff", layer, activations.split_rows("steer_train"))
    return RecordVectors(
        layer=layer,
        per_prompt=_per_order(activations, "diff", layer, activations.rows(record_ids)),
        mean_diff=activations.get("mean_diff", layer),
        reference_norm=float(activations.get("mean_norm", layer)),
        typical_norm=float(train.norm(dim=-1).mean()),
    )


def plain_states(activations: Activations, layer: int, record_ids: list[str]) -> torch.Tensor:
    """The plain prompts' states of ``record_ids``: [orders × records, hidden], order-major (as ``flatten``)."""
    return _per_order(activations, "plain", layer, activations.rows(record_ids)).flatten(0, 1)


@dataclass
class PromptSet:
    """Plain states, vectors (toward vision) and MCR of a split's prompts, order-major.

    Rows are prompts (every record in the first order, then in the second); a record's MCR is
    repeated for both of its prompts. Records without a finite MCR are left out.
    """

    states: torch.Tensor
    vectors: torch.Tensor
    mcr: np.ndarray


def prompt_set(activations: Activations, layer: int, vector: str, records: pd.DataFrame, mcr: pd.Series) -> PromptSet:
    """The :class:`PromptSet` of ``records`` at ``layer`` (``vector``: per_sample or mean)."""
    values = mcr_of(mcr, records["record_id"].tolist())
    ids = values.index[np.isfinite(values.to_numpy(dtype=np.float64))].tolist()
    if not ids:
        raise ValueError("no records with a finite MCR to train the steering module on")
    if len(ids) < len(values):
        log.warning(
            "%d of %d records have no finite MCR and are left out of module training", len(values) - len(ids), len(values)
        )
    vectors = record_vectors(activations, layer, ids).base(vector).flatten(0, 1)
    record_mcr = mcr.loc[ids].to_numpy(dtype=np.float64)
    return PromptSet(plain_states(activations, layer, ids), vectors, np.tile(record_mcr, len(ORDERS)))
