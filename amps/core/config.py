"""Configuration: schema validation with defaults, and checks the schema cannot express.

The Snakefile calls :func:`validate_config` before any job is planned, so a misspelt key, a value of
the wrong type or an impossible setting stops the run with a message naming it.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from amps.core.resources import fill_model_gpus
from amps.method.recipe import ModuleRecipe

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


def load_schema() -> dict:
    """The pipeline's JSON schema."""
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


def _with_defaults(validator_class):
    """A validator class that also fills ``default`` values of declared properties."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


@functools.cache
def _section_validator(section: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema()["properties"][section])


def check_section_values(section: str, values: Mapping[str, Any]) -> None:
    """Check some keys of one config section by the schema's rules, naming each bad one in a :class:`ConfigError`.

    For the Python API's arguments that are config keys (:func:`amps.mcr.measure.measure_mcr`): the schema
    stays the one place of their rules.
    """
    errors = sorted(_section_validator(section).iter_errors(dict(values)), key=lambda error: list(error.absolute_path))
    if errors:
        raise ConfigError("; ".join(f"{section}.{_key_path(error)}: {error.message}" for error in errors))


def validate_config(config: dict, check_paths: bool = True) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise :class:`ConfigError`.

    ``check_paths=False`` skips the checks that data and weights exist (for planning a run elsewhere).
    """
    schema = load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    if errors:
        lines = [f"config key '{_key_path(error)}': {error.message}" for error in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    check_semantics(config, check_paths)
    # Every model gets an explicit GPU count: the Snakefile's requests and each job's device claim
    # (amps.core.devices) then read the same number.
    problems = fill_model_gpus(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def check_semantics(config: dict, check_paths: bool = True) -> None:
    """Checks beyond the schema: split fractions, steering layers within depth, image pixel bounds, and paths that
    exist (if ``check_paths``)."""
    problems = []
    splits = config["benchmark"]["splits"]
    if abs(sum(splits.values()) - 1.0) > 1e-9:
        problems.append(f"benchmark.splits must sum to 1, got {sum(splits.values()):g}")
    for name, model in config["models"].items():
        depth = model["architecture"]["text_layers"] if model["source"] == "toy" else model.get("num_layers")
        for layer in model["steering_layers"]:
            if depth is not None and layer >= depth:
                problems.append(f"models.{name}.steering_layers: layer {layer} is beyond the model's {depth} decoder layers")
        if check_paths and model["source"] == "pretrained" and is_local_path(model["path"]) and not Path(model["path"]).exists():
            problems.append(f"models.{name}.path: {model['path']} does not exist")
        pixels = {key: model[key] for key in ("min_pixels", "max_pixels") if model[key] is not None}
        if pixels and model["source"] == "toy":
            problems.append(f"models.{name}: {' and '.join(pixels)} apply to Qwen2-VL-family processors, not to a toy LLaVA")
        if len(pixels) == 2 and pixels["min_pixels"] > pixels["max_pixels"]:
            problems.append(f"models.{name}: min_pixels {pixels['min_pixels']} is above max_pixels {pixels['max_pixels']}")
    benchmark = config["benchmark"]
    if benchmark["source"] == "mc2":
        mc2 = benchmark["mc2"]
        if "coco_dir" not in mc2:
            problems.append("benchmark.mc2.coco_dir is required when benchmark.source is mc2")
        elif check_paths and not Path(mc2["coco_dir"]).is_dir():
            problems.append(f"benchmark.mc2.coco_dir: {mc2['coco_dir']} does not exist")
        if check_paths and mc2["records"] != "hub" and not Path(mc2["records"]).is_file():
            problems.append(f"benchmark.mc2.records: {mc2['records']} does not exist")
    problems += _amps_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _amps_problems(config: dict) -> list[str]:
    """The ``amps`` section: β and r_anchor fixed together, the curve reaching the budgets, the ablation model, the
    Fisher term, and the module recipe's fields together (:class:`amps.method.recipe.ModuleRecipe`)."""
    amps = config["amps"]
    problems = []
    if (amps["beta"] is None) != (amps["r_anchor"] is None):
        problems.append("amps.beta and amps.r_anchor must both be set (fixed) or both be null (chosen on validation)")
    if max(amps["collapse_budgets"]) > amps["curve"]["max_collapse"]:
        problems.append(
            f"amps.collapse_budgets {amps['collapse_budgets']} reach beyond amps.curve.max_collapse "
            f"({amps['curve']['max_collapse']}), where curves are not measured densely"
        )
    model = amps["ablation"]["model"]
    if model is not None and model not in config["models"]:
        problems.append(f"amps.ablation.model: {model!r} is not one of the models {sorted(config['models'])}")
    if not config["mcr"]["fisher"]:
        problems.append("mcr.fisher must be true: AMPS's estimator ablation compares the entropy and the Fisher term")
    try:
        ModuleRecipe.from_config(amps["module"])
    except ValueError as error:
        problems.append(f"amps.module: {error}")
    return problems


def is_local_path(path: str) -> bool:
    """Whether ``path`` names a local folder rather than a hub id (``org/name``)."""
    return Path(path).exists() or path.startswith((".", "/", "~")) or path.count("/") != 1


def load_config(path: str | Path, check_paths: bool = True) -> dict:
    """Read and validate a YAML config file (``check_paths``: see :func:`validate_config`)."""
    config_path = Path(path)
    if not config_path.is_file():
        raise ConfigError(f"config file {config_path} does not exist")
    with open(config_path) as handle:
        config = yaml.safe_load(handle) or {}
    return validate_config(config, check_paths)


def show_config(config: str) -> None:
    """Validate a config file and print it with defaults filled in."""
    print(json.dumps(load_config(config), indent=2, sort_keys=True))
