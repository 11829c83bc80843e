"""Typed settings of the pipeline's steps, built from the validated config and passed to each job as JSON.

Every step (a rule, its ``amps`` subcommand and its function share one name) has a frozen dataclass of
exactly what it reads, named after it (rule ``select_amps`` → :class:`SelectAmps`). The class declares the
config keys it reads (``READS``, with ``{model}`` for the rule's own model and ``*`` for every model) and
builds itself from the config (``from_config``). A rule's ``params:`` holds the settings as canonical JSON
(:meth:`Step.to_params`), so an edited key reruns exactly the steps that read it and the jobs downstream of
them; the step's function receives the same object back (:meth:`Step.from_params`). Settings classes never
import torch: the Snakefile builds them in every Snakemake process.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, TypeVar

T = TypeVar("T")


def settings_json(value: Any) -> str:
    """Canonical JSON of a settings object (sorted keys, no spaces): what a rule's params hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _typed(hint: Any, value: Any) -> Any:
    """``value`` (read from JSON) as the annotated type ``hint``: dataclasses field by field, tuples from lists."""
    if value is None:
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        arguments = typing.get_args(hint)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_typed(arguments[0], item) for item in value)
        return tuple(_typed(argument, item) for argument, item in zip(arguments, value))
    return value


def from_json(cls: type[T], values: Mapping[str, Any]) -> T:
    """An instance of the dataclass ``cls`` from the dict that :func:`dataclasses.asdict` made of one."""
    hints = typing.get_type_hints(cls)
    return cls(**{field.name: _typed(hints[field.name], values[field.name]) for field in dataclasses.fields(cls) if field.init})


@dataclass(frozen=True)
class Step:
    """Base of every step's settings: the JSON round trip of a rule's params."""

    #: The config keys the step reads, as dotted paths (``models.{model}.batch_size``, ``models.*.source``).
    READS: ClassVar[tuple[str, ...]] = ()

    def to_params(self) -> str:
        """The settings as a rule's params: canonical JSON."""
        return settings_json(dataclasses.asdict(self))

    @classmethod
    def from_params(cls: type[T], values: Mapping[str, Any]) -> T:
        """The settings back from the JSON object of a rule's params."""
        return from_json(cls, values)


@dataclass(frozen=True)
class ModelSpec:
    """How a step loads its model (``models.<name>``): device, dtype, sharding, remote code, image preprocessing and its GPUs.

    A step's settings hold it under ``model``: each job claims that many GPUs before it imports torch
    (:func:`amps.core.devices.job_devices`).
    """

    device: str
    dtype: str
    device_map: str | None
    trust_remote_code: bool
    gpus: int
    pad_to_square: bool = False
    min_pixels: int | None = None
    max_pixels: int | None = None

    READS: ClassVar[tuple[str, ...]] = tuple(
        f"models.{{model}}.{key}"
        for key in ("device", "dtype", "device_map", "trust_remote_code", "gpus", "pad_to_square", "min_pixels", "max_pixels")
    )

    @classmethod
    def from_config(cls, config: Mapping, model: str) -> ModelSpec:
        spec = config["models"][model]
        return cls(
            spec["device"],
            spec["dtype"],
            spec["device_map"],
            spec["trust_remote_code"],
            spec["gpus"],
            spec["pad_to_square"],
            spec["min_pixels"],
            spec["max_pixels"],
        )

    @property
    def load_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`amps.models.loading.load_model` (the GPUs are claimed before loading)."""
        return {
            "device": self.device,
            "dtype": self.dtype,
            "device_map": self.device_map,
            "trust_remote_code": self.trust_remote_code,
            "pad_to_square": self.pad_to_square,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
        }


def benchmark_label(config: Mapping) -> str:
    """How figures and pages name the benchmark (``benchmark.source``)."""
    return "offline conflict world, toy models" if config["benchmark"]["source"] == "world" else "MC²"


def model_names(config: Mapping) -> tuple[str, ...]:
    """The config's models in the run's order (sorted): the order of every per-model input list."""
    return tuple(sorted(config["models"]))
