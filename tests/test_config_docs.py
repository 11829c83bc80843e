"""The config's documentation cannot drift: config/README.md is what `amps config-docs` writes from the schema and
the steps' keys, every key is described and used, the schema's defaults are the offline default's values, and
every module the docs and configs name exists."""

from __future__ import annotations

import importlib
import re

import yaml

from amps.core.config import load_schema
from amps.core.config_docs import OTHER_USES, config_docs_text, entries, readers

from conftest import REPO

#: JSON-schema keywords the schema may use (anything else is a typo, e.g. a description cut by an unquoted comma).
KEYWORDS = {
    "$schema",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "properties",
    "additionalProperties",
    "required",
    "default",
    "enum",
    "const",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "propertyNames",
    "minProperties",
    "if",
    "then",
    "else",
}
#: Keys of config/config.yaml that differ from the schema's default on purpose.
OWN_VALUES = {"amps.ablation.model"}  # the default (null) means the config's first model


def test_the_committed_reference_is_what_config_docs_writes():
    assert (REPO / "config" / "README.md").read_text() == config_docs_text(), "run: amps config-docs --output config/README.md"


def test_every_key_is_described_and_the_schema_uses_only_its_keywords():
    schema = load_schema()
    for key, node in entries(schema):
        assert node.get("description"), f"{key} has no description"

    def walk(node: dict, path: str) -> None:
        for name, value in node.items():
            if name in ("properties", "$defs"):
                for child, child_node in value.items():
                    walk(child_node, f"{path}.{child}")
            elif name not in KEYWORDS:
                raise AssertionError(f"{path}: {name!r} is not a schema keyword")
            elif isinstance(value, dict) and name in ("additionalProperties", "items", "if", "then", "else"):
                walk(value, f"{path}.{name}")

    walk(schema, "")


def test_every_setting_is_read_by_a_step_or_has_another_use():
    read = readers()
    for key, node in entries(load_schema()):
        if "properties" not in node and key != "models" and key != "models.<name>.source":
            assert key in read or key in OTHER_USES, f"no step reads {key}"
    assert not set(OTHER_USES) & set(read), "a key read by a step is listed as used otherwise"


def test_the_schema_defaults_are_the_offline_defaults_values():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = load_schema()

    def walk(values: dict, node: dict, path: str) -> None:
        for name, value in values.items():
            key, child = f"{path}{name}", node.get("properties", {}).get(name, {})
            if key == "models" or key in OWN_VALUES:
                continue
            if isinstance(value, dict) and "properties" in child:
                walk(value, child, f"{key}.")
            elif "default" in child:
                assert child["default"] == value, f"{key}: schema default {child['default']}, config/config.yaml {value}"

    walk(config, schema, "")


def test_every_module_the_docs_and_configs_name_exists():
    config_keys = set(load_schema()["properties"]["amps"]["properties"])
    files = [
        REPO / "README.md",
        REPO / "workflow" / "schemas" / "config.schema.yaml",
        *(REPO / "config").glob("*.yaml"),
        *(REPO / "profiles").glob("*/config.yaml"),
    ]
    for path in files:
        for reference in re.findall(r"\bamps\.[A-Za-z_][\w.]*\w", path.read_text()):
            parts = reference.split(".")
            if parts[1] in config_keys:
                continue  # a config key (amps.curve.tolerance), not a module
            for end in range(len(parts), 0, -1):
                try:
                    target = importlib.import_module(".".join(parts[:end]))
                    break
                except ImportError:
                    continue
            for attribute in parts[end:]:
                assert hasattr(target, attribute), f"{path.name}: {reference} does not exist"
                target = getattr(target, attribute)
    for path in (REPO / "profiles").glob("*/config.yaml"):
        for module_path in re.findall(r"\bamps/[\w/]+\.py", path.read_text()):
            assert (REPO / module_path).is_file(), f"{path}: {module_path} does not exist"
