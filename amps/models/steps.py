"""The models stage's step: ``train_toy_model`` trains one toy LLaVA of the offline world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

from amps.core.settings import Step
from amps.data.corpus import Preference
from amps.models.toy_plan import Stage, ToyArchitecture, TrainingPlan

ARCHITECTURE_KEYS = ("text_layers", "text_hidden", "text_heads", "vision_layers", "vision_hidden", "image_size", "patch_size")


@dataclass(frozen=True)
class TrainToyModel(Step):
    """Only what shapes a toy's weights: its architecture, the training plan and the world's tasks (its steering
    layers, batch size and the like never retrain it)."""

    architecture: ToyArchitecture
    plan: TrainingPlan
    tasks: tuple[str, ...]

    READS: ClassVar[tuple[str, ...]] = (
        "seed",
        "threads",
        *(f"models.{{model}}.architecture.{key}" for key in ARCHITECTURE_KEYS),
        "models.{model}.training_steps",
        "models.{model}.learning_rate",
        "toy_training.batch_size",
        "toy_training.learning_rate",
        "toy_training.stages",
        "toy_training.preference.steepness",
        "toy_training.preference.task_bias",
        "toy_training.preference.spread",
        "benchmark.world.tasks",
        "benchmark.world.image_strength",
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> TrainToyModel:
        spec, training, world = config["models"][model], config["toy_training"], config["benchmark"]["world"]
        preference = training["preference"]
        plan = TrainingPlan(
            steps=spec["training_steps"],
            stages=tuple(Stage(stage["name"], stage["share"], dict(stage["mix"])) for stage in training["stages"]),
            batch_size=training["batch_size"],
            learning_rate=spec.get("learning_rate", training["learning_rate"]),
            preference=Preference(
                preference["steepness"], dict(preference["task_bias"]), preference["spread"], tuple(world["image_strength"])
            ),
            threads=config["threads"],
            seed=config["seed"],
        )
        architecture = ToyArchitecture(**{key: spec["architecture"][key] for key in ARCHITECTURE_KEYS})
        return cls(architecture, plan, tuple(world["tasks"]))


def train_toy_model(settings: TrainToyModel, output_dir: str) -> None:
    """Train the toy model and save it with ``save_pretrained`` into ``output_dir``."""
    from amps.models.toy import fit_toy_model  # here: torch and transformers load only in the job

    fit_toy_model(output_dir, settings.architecture, settings.plan, list(settings.tasks))
