"""Configuration validation: bad keys and values stop the run before any job, naming the key."""

import copy
import subprocess
import sys

import pytest
import yaml

from amps.core.config import ConfigError, load_config, validate_config

from conftest import REPO


@pytest.fixture()
def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as handle:
        return yaml.safe_load(handle)


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "test.yaml"):
        config = load_config(REPO / "config" / name)
        assert config["threads"] >= 1
        assert config["benchmark"]["splits"]["test"] > 0


def test_defaults_are_filled(default_config):
    del default_config["threads"]
    validated = validate_config(default_config)
    assert validated["threads"] == 1
    assert validated["models"]["toy-s"]["dtype"] == "auto"


def test_misspelt_key_is_named(default_config):
    default_config["benchmark"]["world"]["record_per_task"] = 10
    with pytest.raises(ConfigError, match=r"benchmark\.world.*'record_per_task' was unexpected"):
        validate_config(default_config)


def test_wrong_type_is_named(default_config):
    default_config["seed"] = "abc"
    with pytest.raises(ConfigError, match=r"config key 'seed': 'abc' is not of type 'integer'"):
        validate_config(default_config)


def test_layer_beyond_depth_is_named(default_config):
    default_config["models"]["toy-s"]["steering_layers"] = [7]
    with pytest.raises(ConfigError, match=r"models\.toy-s\.steering_layers: layer 7 is beyond the model's 4"):
        validate_config(default_config)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("mcr", "shards", 0, r"config key 'mcr\.shards': 0 is less than the minimum of 1"),
        ("steering", "alphas", [], r"config key 'steering\.alphas': \[\] should be non-empty"),
    ],
)
def test_out_of_range_values_are_named(default_config, section, key, value, message):
    default_config[section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(default_config)


def test_splits_must_sum_to_one(default_config):
    default_config["benchmark"]["splits"] = {"steer_train": 0.5, "validation": 0.2, "test": 0.4}
    with pytest.raises(ConfigError, match="splits must sum to 1"):
        validate_config(default_config)


def test_missing_paths_are_named(default_config, tmp_path):
    default_config["benchmark"] = {
        "source": "mc2",
        "mc2": {"records": str(tmp_path / "nope.json"), "coco_dir": str(tmp_path / "coco")},
    }
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert "nope.json does not exist" in str(error.value)
    assert "coco does not exist" in str(error.value)


def test_pretrained_model_needs_a_path(default_config):
    default_config["models"]["real"] = {"source": "pretrained", "steering_layers": [3]}
    with pytest.raises(ConfigError, match=r"models\.real.*'path' is a required property"):
        validate_config(copy.deepcopy(default_config))


@pytest.mark.dag
def test_snakemake_stops_before_any_job(tmp_path, default_config):
    default_config["evaluation"]["max_new_tokenz"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(default_config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "max_new_tokenz" in result.stdout + result.stderr
    assert "Job stats" not in result.stdout
