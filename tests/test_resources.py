"""Job resources from the config: GPUs, memory and runtime grow with the model and the stage."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from amps.core import memory, resources
from amps.core.config import ConfigError, load_config, validate_config
from amps.core.plan import plan_resources

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
    runtimes = {
        stage: resources.model_job_resources(config, "llava-1.5-13b", stage)["runtime"] for stage in ("evaluate", "sweep")
    }
    assert runtimes["sweep"] > runtimes["evaluate"]  # 11 strength passes against 7 conditions
    fewer = copy.deepcopy(config)
    fewer["benchmark"]["mc2"]["limit"] = 5
    assert resources.model_job_resources(fewer, "llava-1.5-13b", "sweep")["runtime"] < runtimes["sweep"]


def test_the_steered_evaluation_and_selection_are_planned_by_their_passes():
    config = load_config(REPO / "config" / "config.yaml")
    config["amps"].update(seeds=3, strengths=[0.5, 1, 2, 4], beta_units=[0.5, 1], anchor_quantiles=[0.5])
    config["amps"]["curve"]["max_points"] = 10
    config["benchmark"]["world"].update(tasks=["color", "counting"], records_per_task=50)
    test_prompts = 2 * 50 * 0.4 * 2  # the test split's records, both option orders
    # Per direction: 3 + 2 x 3 curves of at most 10 points plus their agreeing control, the instruction 2; one unsteered pass.
    assert resources.stage_prompts(config, "steered") == test_prompts * (2 * (9 * 11 + 2) + 1)
    config["amps"]["curve"]["max_points"] = 20
    assert resources.stage_prompts(config, "steered") == test_prompts * (2 * (9 * 21 + 2) + 1)
    validation_prompts = 2 * 50 * 0.2 * 2
    # Per direction: mean, prompt-to-steer, 3 Learn-to-Steer seeds, 2 x 2 candidates, 2 more AMPS seeds, each over 4 strengths.
    assert resources.stage_prompts(config, "select") == pytest.approx(validation_prompts * (2 * 11 * 4 + 1))


def test_the_ablations_are_planned_by_their_variants_and_monte_carlo():
    config = load_config(REPO / "config" / "config.yaml")
    config["benchmark"]["world"].update(tasks=["color", "counting"], records_per_task=50)
    config["amps"]["anchor_quantiles"] = [0.5]
    config["amps"]["ablation"].update(model="toy-l", beta_units=[-1, 1], samples=[4], mc_seeds=2)
    config["models"]["toy-l"]["steering_layers"] = [2, 1, 3]
    test_prompts, records = 2 * 50 * 0.4 * 2, 2 * 50
    # beta 2 x 2, anchor 1 x 2, layer 3, samples (2 re-estimates + the default) x 2, estimator 2 x 2, vector 2.
    passes = 4 + 2 + 3 + 6 + 4 + 2
    monte_carlo = 2 * records * 2 * 2 * 4 * resources.MCR_SAMPLE_COST
    assert resources.stage_prompts(config, "ablations") == pytest.approx(test_prompts * passes + monte_carlo)


def test_unknown_stage_is_named(paper_config):
    config = validate_config(paper_config)
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        resources.model_job_resources(config, "llava-1.5-7b", "train")


def test_a_run_is_planned_without_its_data_or_weights(capsys):
    """config/paper.yaml names a COCO folder this machine lacks: running refuses, planning does not."""
    with pytest.raises(ConfigError, match="benchmark.mc2.coco_dir: data/coco does not exist"):
        load_config(REPO / "config" / "paper.yaml")
    plan_resources(str(REPO / "config" / "paper.yaml"))
    lines = capsys.readouterr().out.splitlines()
    sweep_32b = next(line.split() for line in lines if line.startswith("qwen2.5-vl-32b") and " sweep " in line)
    assert sweep_32b[2] == "2"  # GPUs
    models = load_config(REPO / "config" / "paper.yaml", check_paths=False)["models"]
    # Every stage of every model, the ablations only on the ablation model (llava-1.5-7b).
    assert len(lines) == 1 + len(models) * (len(resources.STAGES) - 1) + 1
    assert [line.split()[0] for line in lines if " ablations " in line] == ["llava-1.5-7b"]


def test_host_memory_is_the_process_the_weights_and_the_prompts_a_job_holds(paper_config):
    config = validate_config(paper_config)
    # The sweep keeps the 800 test records' prompts in both orders; each holds a 336-pixel image in the model's
    # bfloat16 and 716 positions of index tensors (27 bytes each); the weights are 7.1e9 bfloat16 values.
    held = 1600 * (3 * 336 * 336 * 2 + 716 * 27)
    expected_gb = resources.HOST_MEMORY_BASE_GB + (7.1e9 * 2 + held) / 1e9
    assert resources.model_job_resources(config, "llava-1.5-7b", "sweep")["mem_mb"] == math.ceil(1000 * expected_gb)
    # The steered evaluation holds six prompt sets, the evaluation one batch of 32.
    steered = resources.host_memory_gb(config, "llava-1.5-7b", "steered")
    assert steered == pytest.approx(expected_gb + 5 * held / 1e9)
    assert resources.host_memory_gb(config, "llava-1.5-7b", "evaluate") < expected_gb


def test_gpu_memory_is_the_heaviest_stage_by_the_formulas(paper_config):
    config = validate_config(paper_config)
    mcr = resources.stage_memory(config, "llava-1.5-13b", "mcr")
    text = memory.PRETRAINED_SHAPES["llava-hf/llava-1.5-13b-hf"].text
    # Both orders' caches of 716 positions and the 140 shared ones: 40 layers x 2 x 40 heads x 128 x 2 bytes each.
    assert mcr["cache"] == 40 * 2 * 40 * 128 * 2 * (2 * 716 + 140)
    # A pass of min(max_batch 64, samples 32) rows on the 576 image positions, with the Fisher term.
    assert mcr["activations"] == memory.mcr_pass_bytes(text, 32, 576, 716, 2, fisher=True)
    assert mcr["weights"] == 13.4e9 * 2
    generation = resources.stage_memory(config, "llava-1.5-13b", "evaluate")
    assert generation["cache"] == memory.cache_bytes(text, 16, 716 + 8, 2)  # batch 16, 8 new tokens
    # The MCR is the 13B model's heaviest stage: 45.5 GB with the context, so a 48 GB GPU (43.2 usable) is not enough ...
    needed = resources.gpu_memory_needed_gb(config, "llava-1.5-13b")
    assert needed == pytest.approx(sum(mcr.values()) / 1e9 + resources.CUDA_CONTEXT_GB)
    assert resources.gpus_needed(config, "llava-1.5-13b", 48) == 2
    # ... unless the MCR's passes take fewer rows: then the generation (39.0 GB) decides.
    config["mcr"]["max_batch"] = 8
    assert resources.gpu_memory_needed_gb(config, "llava-1.5-13b") == pytest.approx(
        sum(generation.values()) / 1e9 + resources.CUDA_CONTEXT_GB
    )
    assert resources.gpus_needed(config, "llava-1.5-13b", 48) == 1


def test_a_pretrained_model_without_known_shapes_is_planned_as_the_nearest_paper_checkpoint(paper_config):
    paper_config["models"]["other"] = {
        "source": "pretrained",
        "path": "someone/some-vlm-13b",
        "num_layers": 40,
        "steering_layers": [20],
        "params_billion": 14.0,
        "dtype": "bfloat16",
    }
    config = validate_config(paper_config)
    shape = resources.model_shape(config["models"]["other"])
    assert shape.text == memory.PRETRAINED_SHAPES["llava-hf/llava-1.5-13b-hf"].text and shape.parameters == 14.0e9


def test_the_readme_memory_table_is_the_plan(paper_config):
    config = validate_config(paper_config)
    readme = (REPO / "README.md").read_text()
    table = readme.split("| model | GPUs | weights | generation: cache + activations |", 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    listed = []
    for models, *cells in rows:
        for model in models.split(", "):
            listed.append(model)
            generation = resources.stage_memory(config, model, "evaluate")
            mcr = resources.stage_memory(config, model, "mcr")
            gigabytes = [
                generation["weights"],
                generation["cache"] + generation["activations"],
                sum(generation.values()) + resources.CUDA_CONTEXT_GB * 1e9,
                mcr["cache"] + mcr["activations"],
                sum(mcr.values()) + resources.CUDA_CONTEXT_GB * 1e9,
                resources.host_memory_gb(config, model, "steered") * 1e9,
            ]
            assert cells == [str(config["models"][model]["gpus"])] + [f"{value / 1e9:.1f}" for value in gigabytes], model
    assert sorted(listed) == sorted(config["models"])
