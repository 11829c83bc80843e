"""How a steering module is built and trained: the recipe (the config's ``amps.module`` section), torch-free.

Its defaults are the published Learn-to-Steer recipe (Parekh et al., NeurIPS 2025); :mod:`amps.method.steerer`
builds and trains the module from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

#: Decoder initialisations: top principal directions of the centred targets, or PyTorch's default.
INITS = ("svd", "default")
OPTIMIZERS = ("adam", "adamw")
#: Learning-rate schedules: linear warmup then half-cosine to zero (per step), or constant.
SCHEDULES = ("cosine_warmup", "constant")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ModuleRecipe:
    """How a steering module is built and trained (the config's ``amps.module`` section).

    Every default is the published Learn-to-Steer recipe (its width is LLaVA-1.5's; Qwen2-VL's is 400).
    """

    #: The MLP's hidden width (hidden → width → hidden).
    width: int = 100
    #: Whether the decoder has a bias (the encoder always has one).
    decoder_bias: bool = False
    #: Standardise inputs with the training states' mean and spread (stored in the module).
    standardize_inputs: bool = False
    #: ``svd``: decoder columns start at the top right-singular vectors of the centred training targets.
    init: str = "svd"
    #: Per-sample loss: mse_weight·mean sq. error + l1_weight·mean abs. error − w·cosine (non-zero targets).
    mse_weight: float = 1.0
    l1_weight: float = 1.0
    #: The cosine weight ``w`` reached at the end of the ramp.
    cosine_weight: float = 0.1
    #: ``w = cosine_weight · min(1, epoch / cosine_ramp_epochs)`` (epoch counted from 0); 0: no ramp.
    cosine_ramp_epochs: int = 100
    #: The cosine weight of the validation loss (fixed).
    validation_cosine_weight: float = 0.1
    optimizer: str = "adam"
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    #: Minibatch size; batches are drawn from a fresh shuffle every epoch, the last one may be smaller.
    batch_size: int = 64
    epochs: int = 100
    schedule: str = "cosine_warmup"
    #: Warmup length of ``cosine_warmup`` in epochs (converted to steps); unused by ``constant``.
    warmup_epochs: int = 50
    #: None: train every epoch; an int: stop after that many epochs without a better validation loss.
    patience: int | None = None

    def __post_init__(self) -> None:
        def fail(name: str, requirement: str) -> None:
            raise ValueError(f"steering module recipe: {name} must be {requirement}, got {getattr(self, name)!r}")

        if not _is_int(self.width) or self.width < 1:
            fail("width", "a positive integer")
        for name in ("decoder_bias", "standardize_inputs"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "true or false")
        if self.init not in INITS:
            fail("init", f"one of {INITS}")
        for name in ("mse_weight", "l1_weight", "cosine_weight", "validation_cosine_weight", "weight_decay"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                fail(name, "a finite number >= 0")
            object.__setattr__(self, name, float(value))
        if self.mse_weight + self.l1_weight + self.cosine_weight == 0:
            raise ValueError("steering module recipe: mse_weight, l1_weight and cosine_weight are all 0: nothing to minimise")
        if not _is_int(self.cosine_ramp_epochs) or self.cosine_ramp_epochs < 0:
            fail("cosine_ramp_epochs", "an integer >= 0 (0: no ramp)")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {OPTIMIZERS}")
        if not _is_number(self.learning_rate) or self.learning_rate <= 0:
            fail("learning_rate", "a finite number > 0")
        object.__setattr__(self, "learning_rate", float(self.learning_rate))
        for name in ("batch_size", "epochs"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "a positive integer")
        if self.schedule not in SCHEDULES:
            fail("schedule", f"one of {SCHEDULES}")
        if not _is_int(self.warmup_epochs) or self.warmup_epochs < 0:
            fail("warmup_epochs", "an integer >= 0")
        if self.schedule == "cosine_warmup" and self.warmup_epochs >= self.epochs:
            fail("warmup_epochs", f"below epochs ({self.epochs}) for the cosine_warmup schedule")
        if self.patience is not None and (not _is_int(self.patience) or self.patience < 1):
            fail("patience", "null (no early stopping) or a positive integer")

    @classmethod
    def from_config(cls, section: dict | None) -> "ModuleRecipe":
        """The recipe of a config's ``amps.module`` section; absent fields take the published defaults."""
        section = dict(section or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"steering module recipe: unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**section)

    def to_config(self) -> dict:
        """Every field, as a plain dict (``from_config`` of it gives this recipe back)."""
        return asdict(self)

    def cosine_weight_at(self, epoch: int) -> float:
        """The training loss's cosine weight in ``epoch`` (counted from 0)."""
        if self.cosine_ramp_epochs == 0:
            return self.cosine_weight
        return self.cosine_weight * min(1.0, epoch / self.cosine_ramp_epochs)
