"""The toy scales of the offline default, read from this checkout's config/config.yaml (so benchmarks follow it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from amps.models.toy_plan import ToyArchitecture

CONFIG = Path(__file__).resolve().parent.parent / "config" / "config.yaml"


def default_architecture(model: str) -> ToyArchitecture:
    """The architecture of toy scale ``model`` in config/config.yaml."""
    with open(CONFIG) as handle:
        return ToyArchitecture(**yaml.safe_load(handle)["models"][model]["architecture"])
