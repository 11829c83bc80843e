"""Job resources from the config: GPUs, memory and runtime grow with the model and the stage."""

from __future__ import annotations

import copy

import pytest
import yaml

from amps import resources
from amps.config import ConfigError, load_config, validate_config
from conftest import REPO


@pytest.fixture()
def paper_config(tmp_path) -> dict:
    """config/paper.yaml, validated, with a COCO folder that exists."""
    with open(REPO / "config" / "paper.yaml") as handle:
        config = yaml.safe_load(handle)
    config["benchmark"]["mc2"]["coco_dir"] = str(tmp_path)
    return config


def test_larger_models_get_more_gpus_memory_and_time(paper_config):
    config = validate_config(paper_config)
    small = resources.model_job_resources(config, "qwen2.5-vl-7b", "sweep")
    large = resources.model_job_resources(config, "qwen2.5-vl-32b", "sweep")
    assert small["gpu"] == 1 and large["gpu"] == 2  # 67 GB of bfloat16 weights do not fit one 80 GB GPU
    assert large["mem_mb"] > small["mem_mb"] and large["runtime"] > small["runtime"]


def test_gpu_count_follows_the_configured_gpu_memory(paper_config):
    paper_config["compute"] = {"gpu_memory_gb": 141}
    config = validate_config(paper_config)
    assert config["models"]["qwen2.5-vl-32b"]["gpus"] == 1


def test_an_explicit_gpu_count_wins(paper_config):
    paper_config["models"]["qwen2.5-vl-7b"]["gpus"] = 3
    paper_config["models"]["qwen2.5-vl-7b"]["device_map"] = "auto"
    config = validate_config(paper_config)
    assert resources.model_job_resources(config, "qwen2.5-vl-7b", "evaluate")["gpu"] == 3


def test_a_model_on_several_gpus_must_be_spread_over_them(paper_config):
    paper_config["models"]["qwen2.5-vl-32b"]["device_map"] = None
    with pytest.raises(ConfigError, match=r"models\.qwen2\.5-vl-32b: needs 2 GPUs .* set device_map: auto"):
        validate_config(paper_config)


def test_toy_models_run_on_the_cpu_with_small_requests():
    config = load_config(REPO / "config" / "config.yaml")
    for model in config["models"]:
        job = resources.model_job_resources(config, model, "evaluate")
        assert job["gpu"] == 0 and job["mem_mb"] <= 4000 and job["runtime"] <= 30
        assert resources.toy_training_resources(config, model)["gpu"] == 0


def test_runtime_grows_with_the_stage_work(paper_config):
    config = validate_config(paper_config)
    runtimes = {stage: resources.model_job_resources(config, "llava-1.5-13b", stage)["runtime"] for stage in ("evaluate", "sweep")}
    assert runtimes["sweep"] > runtimes["evaluate"]  # 13 strengths against 4 conditions
    fewer = copy.deepcopy(config)
    fewer["benchmark"]["mc2"]["limit"] = 5
    assert resources.model_job_resources(fewer, "llava-1.5-13b", "sweep")["runtime"] < runtimes["sweep"]


def test_a_steered_evaluation_job_is_planned_by_its_costliest_method():
    config = load_config(REPO / "config" / "config.yaml")
    config["amps"].update(seeds=3, multipliers=[1, 2])
    config["steering"]["alphas"] = [0.5, 1, 2, 4, 8, 16, 32, 64, 128]
    config["benchmark"]["world"].update(tasks=["color", "counting"], records_per_task=50)
    test_prompts = 2 * 50 * 0.4 * 2  # the test split's records, both option orders
    # Both directions: the mean grid (9 strengths + its agreeing control) outweighs 3 seeds x (2 multiples + control).
    assert resources.stage_prompts(config, "steered") == test_prompts * 2 * 10
    config["amps"]["seeds"] = 5
    assert resources.stage_prompts(config, "steered") == test_prompts * 2 * 15


def test_unknown_stage_is_named(paper_config):
    config = validate_config(paper_config)
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        resources.model_job_resources(config, "llava-1.5-7b", "train")


def test_a_run_is_planned_without_its_data_or_weights(capsys):
    """config/paper.yaml names a COCO folder this machine lacks: running refuses, planning does not."""
    with pytest.raises(ConfigError, match="benchmark.mc2.coco_dir: data/coco does not exist"):
        load_config(REPO / "config" / "paper.yaml")
    resources.plan_resources({}, str(REPO / "config" / "paper.yaml"))
    lines = capsys.readouterr().out.splitlines()
    sweep_32b = next(line.split() for line in lines if line.startswith("qwen2.5-vl-32b") and " sweep " in line)
    assert sweep_32b[2] == "2"  # GPUs
    assert len(lines) == 1 + len(load_config(REPO / "config" / "paper.yaml", check_paths=False)["models"]) * len(resources.STAGES)
