"""amps: Adaptive Modality Preference Steering for multimodal LLMs.

Measure which modality a model's answer rests on, steer it, and score the answers, from Python, with what a
pipeline run produced (``results/<run>/``) or with your own model::

    import amps

    model = amps.load_model("results/offline-default/models/toy-s")
    estimate = amps.measure_mcr(model, record)                        # MCR ± Monte Carlo error
    module = amps.load_steering_module("results/offline-default/amps/toy-s", "amps", "to_vision")
    with module.apply(model.model):                                   # adaptive: reads each prompt in the same pass
        output = model.model.generate(**inputs, max_new_tokens=8)
    amps.modality_shares([amps.classify(answer, record, order) for ...])

The names below are loaded on first use, so ``import amps`` (which every pipeline job does) imports neither
torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public API (``__all__``): each name and the module that defines it.
_EXPORTS = {
    "MultimodalModel": "amps.models.interface",
    "load_model": "amps.models.loading",
    "measure_mcr": "amps.mcr.measure",
    "McrEstimate": "amps.mcr.measure",
    "SteeringVector": "amps.steering.hook",
    "load_mean_vector": "amps.steering.activations",
    "SteeringModule": "amps.method.steering_module",
    "load_steering_module": "amps.method.steering_module",
    "conflict_query": "amps.data.prompts",
    "parse_letter": "amps.data.prompts",
    "classify": "amps.data.prompts",
    "modality_shares": "amps.metrics",
}

__all__ = [
    "MultimodalModel",
    "load_model",
    "measure_mcr",
    "McrEstimate",
    "SteeringVector",
    "load_mean_vector",
    "SteeringModule",
    "load_steering_module",
    "conflict_query",
    "parse_letter",
    "classify",
    "modality_shares",
]

if TYPE_CHECKING:
    from amps.data.prompts import classify, conflict_query, parse_letter
    from amps.mcr.measure import McrEstimate, measure_mcr
    from amps.method.steering_module import SteeringModule, load_steering_module
    from amps.metrics import modality_shares
    from amps.models.interface import MultimodalModel
    from amps.models.loading import load_model
    from amps.steering.activations import load_mean_vector
    from amps.steering.hook import SteeringVector


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'amps' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
