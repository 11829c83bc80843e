"""Every step's settings: they read exactly the config keys they declare, survive the trip through a rule's params,
and no model step reads a key that only a table or a figure needs."""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from amps.core.config import load_config, load_schema
from amps.core.resources import ablation_model
from amps.core.settings import Step

from conftest import REPO

STEP_MODULES = sorted(".".join(path.relative_to(REPO).with_suffix("").parts) for path in (REPO / "amps").rglob("*steps.py"))
#: Steps that run a model (their jobs are the expensive ones).
MODEL_STEPS = {
    "TrainToyModel",
    "EvaluateBaseline",
    "CollectActivations",
    "SteeringSweep",
    "McrShard",
    "TrainSteerers",
    "SelectAmps",
    "SteeredEval",
    "AblateAmps",
}
#: Keys only a table or a figure reads: editing one must never rerun a model job.
TABLE_AND_FIGURE_KEYS = {
    "evaluation.checks.max_other",
    "evaluation.checks.task_lean",
    "amps.collapse_budgets",
    "amps.examples",
    "mcr.bootstrap",
    "run_name",
}


def step_classes() -> list[type[Step]]:
    classes = []
    for name in STEP_MODULES:
        module = importlib.import_module(name)
        classes += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, Step) and value is not Step and value.__module__ == name
        ]
    return sorted(classes, key=lambda cls: cls.__name__)


class Recorder(Mapping):
    """A read-only view of a config that records the path (its keys, in order) of every value read from it."""

    def __init__(self, data: Mapping, seen: set[tuple[str, ...]], path: tuple[str, ...] = ()):
        self.data, self.seen, self.path = data, seen, path

    def _at(self, key: str) -> tuple[str, ...]:
        return (*self.path, key)

    def __getitem__(self, key):
        value = self.data[key]
        if isinstance(value, Mapping):
            return Recorder(value, self.seen, self._at(key))
        self.seen.add(self._at(key))
        return value

    def get(self, key, default=None):
        if key not in self.data:
            self.seen.add(self._at(key))
            return default
        return self[key]

    def __iter__(self):
        self.seen.add(self.path)
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def templated(path: tuple[str, ...], model: str | None) -> str:
    """A dotted key: ``models.<name>.x`` as ``models.{model}.x`` for the step's own model, ``models.*.x`` for any other."""
    parts = list(path)
    if parts[0] == "models" and len(parts) > 2:
        parts[1] = "{model}" if parts[1] == model else "*"
    # A free-form mapping (e.g. toy_training.preference.task_bias) is one key, whatever its entries.
    for end in range(1, len(parts)):
        node = schema_node(".".join(parts[:end]))
        if node is not None and "properties" not in node and "additionalProperties" in node and parts[0] != "models":
            return ".".join(parts[:end])
    return ".".join(parts)


def contexts(step: type[Step], config: dict) -> list[dict]:
    """Every way a rule builds the step from ``config``: per model, per shard, per table."""
    parameters = list(inspect.signature(step.from_config).parameters)[1:]
    models = [name for name, spec in config["models"].items() if step.__name__ != "TrainToyModel" or spec["source"] == "toy"]
    if parameters == ["model"]:
        return [{"model": model} for model in models]
    if parameters == ["model", "shard"]:
        return [{"model": model, "shard": 0} for model in models]
    if parameters == ["table"]:
        return [{"table": "baseline_scores"}]
    assert parameters == [], f"{step.__name__}.from_config takes {parameters}"
    return [{}]


CONFIGS = {
    "test": load_config(REPO / "config" / "test.yaml"),
    "paper": load_config(REPO / "config" / "paper.yaml", check_paths=False),
}


@pytest.mark.parametrize("step", step_classes(), ids=lambda step: step.__name__)
def test_a_step_reads_exactly_what_it_declares(step):
    read: set[str] = set()
    for config in CONFIGS.values():
        for context in contexts(step, config):
            seen: set[tuple[str, ...]] = set()
            built = step.from_config(Recorder(config, seen), **context)
            model = context.get("model") or (ablation_model(config) if step.__name__ in ("AblateAmps", "PlotExamples") else None)
            paths = {templated(path, model) for path in seen}
            assert paths <= set(step.READS), f"{step.__name__} reads {sorted(paths - set(step.READS))} it does not declare"
            read |= paths
            # The rule's params and the job's settings are the same object.
            assert step.from_params(json.loads(built.to_params())) == step.from_config(config, **context)
    assert read == set(step.READS), f"{step.__name__} declares {sorted(set(step.READS) - read)} it never reads"


SCHEMA = load_schema()


def schema_node(path: str) -> dict | None:
    """The schema of a dotted config key (``models.{model}.x``, ``models.*.x`` for a model's), or None."""
    node = SCHEMA
    for part in path.split("."):
        if "properties" in node and part in node["properties"]:
            node = node["properties"][part]
        elif part in ("{model}", "*") and "additionalProperties" in node:
            node = SCHEMA["$defs"]["model"]
        else:
            return None
    return node


def test_every_declared_key_is_a_config_key():
    for step in step_classes():
        for path in step.READS:
            assert schema_node(path) is not None, f"{step.__name__} declares {path}, which the schema does not have"


def test_no_model_step_reads_a_table_or_figure_key():
    for step in step_classes():
        if step.__name__ in MODEL_STEPS:
            assert not TABLE_AND_FIGURE_KEYS & set(step.READS), step.__name__
    assert {step.__name__ for step in step_classes()} >= MODEL_STEPS


def test_the_settings_modules_name_their_classes_after_their_functions():
    for step in step_classes():
        module = importlib.import_module(step.__module__)
        function = "".join(f"_{c.lower()}" if c.isupper() else c for c in step.__name__).lstrip("_")
        assert callable(getattr(module, function, None)), f"{step.__name__} has no function {function} beside it"
        assert Path(inspect.getfile(module)).name in ("steps.py", "figure_steps.py")


def test_a_toy_models_own_learning_rate_replaces_the_shared_one_in_its_trainings_params():
    from amps.models.steps import TrainToyModel

    config = copy.deepcopy(CONFIGS["test"])
    toy = next(name for name, spec in config["models"].items() if spec["source"] == "toy")
    shared = TrainToyModel.from_config(config, toy)
    config["models"][toy]["learning_rate"] = 0.0006
    own = TrainToyModel.from_config(config, toy)
    assert shared.plan.learning_rate == config["toy_training"]["learning_rate"] and own.plan.learning_rate == 0.0006
    assert own.to_params() != shared.to_params()  # the rule's params: this model's training reruns
