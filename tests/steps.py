"""Step settings for tests: built from config/test.yaml with some keys changed, as a rule would build them."""

from __future__ import annotations

import copy
import json

import yaml

from amps.core.config import validate_config

from conftest import REPO

#: A model entry for the tiny random-weight toy of the fixtures (loaded from a folder, on the CPU).
TINY_MODEL = {
    "source": "pretrained",
    "path": "tiny",
    "steering_layers": [1, 0],
    "batch_size": 8,
    "device": "cpu",
    "dtype": "float32",
}


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, section by section (a ``models`` entry replaces the models)."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict) and key != "models":
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def config_with(**changes) -> dict:
    """config/test.yaml with ``changes`` merged in, validated (data paths unchecked)."""
    with open(REPO / "config" / "test.yaml") as handle:
        config = yaml.safe_load(handle)
    return validate_config(merged(config, changes), check_paths=False)


def build(step, changes: dict | None = None, **context):
    """The settings of ``step`` from the test config with ``changes``, through their params (as a job gets them)."""
    built = step.from_config(config_with(**(changes or {})), **context)
    return step.from_params(json.loads(built.to_params()))
