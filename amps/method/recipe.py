"""How a steering module is built and trained: the recipe (the config's ``amps.module`` section), torch-free.

Its defaults are the published Learn-to-Steer recipe (Parekh et al., NeurIPS 2025); :mod:`amps.method.steerer`
builds and trains the module from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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
        # Weights and rates as floats whatever the YAML wrote, so a saved recipe has one JSON form. The schema
        # checks each field; what only the fields together can break is checked here (and at config time).
        for name in ("mse_weight", "l1_weight", "cosine_weight", "validation_cosine_weight", "weight_decay", "learning_rate"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.mse_weight + self.l1_weight + self.cosine_weight == 0:
            raise ValueError("steering module recipe: mse_weight, l1_weight and cosine_weight are all 0: nothing to minimise")
        if self.schedule == "cosine_warmup" and self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"steering module recipe: warmup_epochs must be below epochs ({self.epochs}) for the cosine_warmup "
                f"schedule, got {self.warmup_epochs}"
            )

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
