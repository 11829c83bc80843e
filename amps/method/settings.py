"""Typed settings of the AMPS steps, read once from a rule's settings and checked before any model work."""

from __future__ import annotations

import math
from dataclasses import dataclass

from amps.method.curves import CurveSettings
from amps.models.interface import MultimodalModel
from amps.method.scaling import mcr_column
from amps.method.steerer import ModuleRecipe
from amps.vocabulary import VECTORS



@dataclass(frozen=True)
class AmpsSettings:
    """The ``amps`` section (with the steering positions and the run seed) as one typed object."""

    vector: str
    estimator: str
    beta: float | None
    r_anchor: float | None
    beta_units: tuple[float, ...]
    anchor_quantiles: tuple[float, ...]
    max_factor: float
    sign_confidence: float
    sign_bootstrap: int
    strengths: tuple[float, ...]
    max_collapse: float
    seeds: int
    recipe: ModuleRecipe
    curve: CurveSettings
    collapse_budgets: tuple[float, ...]
    positions: str
    seed: int

    def __post_init__(self) -> None:
        if (self.beta is None) != (self.r_anchor is None):
            raise ValueError("amps.beta and amps.r_anchor must be set together (fixed) or both left null (chosen on validation)")
        if self.vector not in VECTORS:
            raise ValueError(f"amps.vector must be one of {VECTORS}, got {self.vector!r}")
        mcr_column(self.estimator)
        if not self.strengths or any(not (value > 0 and math.isfinite(value)) for value in self.strengths):
            raise ValueError(f"amps.strengths must be positive and finite, got {list(self.strengths)}")
        if self.max_factor < 1:
            raise ValueError(f"amps.max_factor must be at least 1 (the factors' mean), got {self.max_factor}")
        if not 0 < self.sign_confidence < 1:
            raise ValueError(f"amps.sign_confidence must lie in (0, 1), got {self.sign_confidence}")

    @property
    def fixed(self) -> bool:
        """Whether β and r_anchor come from the config (else they are chosen on validation)."""
        return self.beta is not None

    @classmethod
    def from_config(cls, settings: dict) -> "AmpsSettings":
        """From a step's settings: ``amps``, ``steering`` (positions), ``seed`` and, if set, the model's ``module_width``."""
        amps = settings["amps"]
        module = dict(amps["module"])
        if settings.get("module_width") is not None:
            module["width"] = settings["module_width"]
        return cls(
            vector=amps["vector"], estimator=amps["estimator"], beta=amps["beta"], r_anchor=amps["r_anchor"],
            beta_units=tuple(amps["beta_units"]), anchor_quantiles=tuple(amps["anchor_quantiles"]), max_factor=amps["max_factor"],
            sign_confidence=amps["sign_confidence"], sign_bootstrap=amps["sign_bootstrap"], strengths=tuple(sorted(amps["strengths"])),
            max_collapse=amps["max_collapse"], seeds=amps["seeds"], recipe=ModuleRecipe.from_config(module),
            curve=CurveSettings.from_config(amps["curve"]), collapse_budgets=tuple(amps["collapse_budgets"]),
            positions=settings["steering"]["positions"], seed=settings["seed"],
        )


def load_model(settings: dict, path: str) -> MultimodalModel:
    """Load the model of a step from ``path`` (``settings["model"]`` is its config entry)."""
    spec = settings["model"]
    return MultimodalModel.load(path, spec["device"], spec["dtype"], spec["device_map"], spec["trust_remote_code"])
