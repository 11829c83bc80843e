"""What a toy model is and how it is trained: its architecture and its training plan (the curriculum).

Torch-free, so that the Snakefile can build :class:`amps.models.steps.TrainToyModel` from the config.
"""

from __future__ import annotations

from dataclasses import dataclass

from amps.data.corpus import Preference


@dataclass(frozen=True)
class ToyArchitecture:
    """Sizes of one toy scale."""

    text_layers: int
    text_hidden: int
    text_heads: int
    vision_layers: int
    vision_hidden: int
    image_size: int
    patch_size: int


@dataclass(frozen=True)
class Stage:
    """One stage of the curriculum: a mix of example kinds for a share of the steps."""

    name: str
    share: float
    mix: dict[str, float]


@dataclass(frozen=True)
class TrainingPlan:
    """How a toy model is trained (all from the config)."""

    steps: int
    stages: tuple[Stage, ...]
    batch_size: int
    learning_rate: float
    preference: Preference
    threads: int
    seed: int

    def stage_steps(self) -> list[int]:
        """Steps per stage: shares of ``steps``, the last stage taking the rounding remainder."""
        total_share = sum(stage.share for stage in self.stages)
        counts = [round(self.steps * stage.share / total_share) for stage in self.stages[:-1]]
        return counts + [self.steps - sum(counts)]
