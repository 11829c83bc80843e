"""What a pipeline job asks of the machine (GPUs, GPU memory, host memory, runtime), from the config.

The Snakefile's ``resources:`` and the ``amps`` CLI both read these numbers, so the GPUs Snakemake
or SLURM reserves for a job are the GPUs the job pins itself to (see :mod:`amps.core.devices`).

* Memory: each stage's peak from the formulas of :mod:`amps.core.memory` on the model's shapes (the paper
  checkpoints' from their config.json, a toy's from its architecture): the weights, the encoded prompts
  the job holds, the KV cache and the activations of its operation (generation for the evaluations, a
  forward for the activations, the MCR's prefills and passes of ``mcr.max_batch`` rows). A model's jobs
  share one GPU count (:func:`gpus_needed`): enough GPUs of ``compute.gpu_memory_gb`` for its heaviest
  stage and the CUDA context (``device_map: auto`` spreads the model over them).
* Runtime: loading the weights plus the stage's prompt count (from the benchmark size and the
  stage's settings) times ``compute.seconds_per_prompt_per_billion`` times the model size, with a
  safety margin: a SLURM job that outlives its request is killed, one that asks for too much only
  waits longer in the queue.
* Toy models run on the CPU unless the config gives them ``gpus``; their host memory is the process's
  own plus the stage's formula.
"""

from __future__ import annotations

import dataclasses
import math

from amps.core import memory
from amps.vocabulary import BASELINE_CONDITIONS, CONTRASTIVE_CONDITIONS, MODALITIES, ORDERS

#: Bytes per weight; ``auto`` resolves to bfloat16 on a GPU and float32 on the CPU (see
#: amps.models.loading.resolve_dtype).
BYTES_PER_PARAMETER = {"bfloat16": 2, "float16": 2, "float32": 4}
#: GPU memory besides the tensors: the CUDA context, cuBLAS workspaces and kernels.
CUDA_CONTEXT_GB = 1.0
GB = 1e9
#: MC² as published: 2,000 records over 8 tasks (``benchmark.mc2.limit`` keeps the first N per task).
MC2_RECORDS = 2000
MC2_TASKS = 8
#: Every record is asked in both option orders.
OPTION_ORDERS = len(ORDERS)
#: Baseline evaluation: the conflict under no, text and image instruction, the agreeing control under each,
#: and the blank-image control.
EVALUATION_CONDITIONS = len(BASELINE_CONDITIONS)
#: Activation collection: the plain, image-instructed and text-instructed prompts.
ACTIVATION_PROMPTS = len(CONTRASTIVE_CONDITIONS)
#: One MCR Monte Carlo sample is a one-token forward against a perturbed copy of the cached prompt:
#: about this share of a full prompt's cost, three times that with the Fisher term's backward pass.
MCR_SAMPLE_COST = 0.05
MCR_MODALITIES = len(MODALITIES)
#: Weights load at about this many GB per minute from a local or network disk.
LOAD_GB_PER_MINUTE = 30.0
RUNTIME_MARGIN = 2.0
RUNTIME_STEP_MINUTES = 10
#: Toy models (under 10 M parameters) on 1-2 CPU threads: seconds per prompt, measured at about 1 ms
#: and taken with a margin for shared machines.
TOY_SECONDS_PER_PROMPT = 0.005
#: A toy model job's process (Python, torch, transformers, the benchmark's records) beside its tensors:
#: 0.52-0.60 GB peak resident memory measured per job of the default run, planned with a margin.
TOY_PROCESS_GB = 1.0
TOY_TRAIN_MEM_MB = 3000
#: Training a 3-layer, 96-wide toy (toy-s of the offline default) once took 1218 s for 96k examples on a
#: shared 2-core machine under load, about three times its time on an idle one: planned with that.
TOY_SECONDS_PER_TRAIN_EXAMPLE = 1218 / 96_000
#: A GPU job's process on the host (Python, torch with the CUDA libraries, the benchmark's records)
#: beside the weights it loads through host memory and one encoded batch.
HOST_MEMORY_BASE_GB = 8.0
#: The steered evaluation keeps the test prompts encoded under each of its conditions: conflict and
#: agreeing, each without instruction and under the image and the text instruction.
STEERED_PROMPT_SETS = 6
STAGES = ("evaluate", "activations", "sweep", "select", "steered", "ablations", "mcr")


def value_bytes(spec: dict) -> int:
    """Bytes of one weight (and activation) in the dtype the model runs in."""
    dtype = spec.get("dtype", "auto")
    if dtype == "auto":
        return 4 if runs_on_cpu(spec) else 2
    return BYTES_PER_PARAMETER[dtype]


def runs_on_cpu(spec: dict) -> bool:
    """Toy models without GPUs and models configured onto the CPU."""
    return (spec["source"] == "toy" and not spec.get("gpus")) or spec.get("device", "auto") == "cpu"


def model_shape(spec: dict) -> memory.ModelShape:
    """The shapes the memory formulas take: a toy's from its architecture, a paper checkpoint's from
    :data:`amps.core.memory.PRETRAINED_SHAPES`, any other pretrained model's as the paper checkpoint
    nearest in size; ``params_billion``, where given, sets the size."""
    if spec["source"] == "toy":
        return memory.toy_shape(spec["architecture"])
    size = planned_size(spec)
    shape = memory.PRETRAINED_SHAPES.get(spec["path"]) or min(
        memory.PRETRAINED_SHAPES.values(), key=lambda known: abs(known.parameters - size * 1e9)
    )
    return dataclasses.replace(shape, parameters=size * 1e9)


def weights_gb(spec: dict) -> float:
    """Size of a model's weights in GB."""
    return memory.weights_bytes(model_shape(spec), value_bytes(spec)) / GB


def held_prompts(config: dict, model: str, stage: str) -> int:
    """Encoded prompts a ``stage`` job of ``model`` holds at once: one batch where it passes once over its
    prompts, every prompt it answers again and again where it keeps them (amps.models.asking.QuestionBatches:
    on the host, each batch moved to the device as it is answered); the MCR one record in both orders."""
    records = benchmark_records(config)
    test_prompts = math.ceil(records * config["benchmark"]["splits"]["test"]) * OPTION_ORDERS
    if stage in ("evaluate", "activations"):
        return config["models"][model]["batch_size"]
    if stage == "mcr":
        return OPTION_ORDERS
    if stage in ("sweep", "ablations"):
        return test_prompts
    if stage == "select":
        return math.ceil(records * config["benchmark"]["splits"]["validation"]) * OPTION_ORDERS
    if stage == "steered":
        return test_prompts * STEERED_PROMPT_SETS
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


def stage_memory(config: dict, model: str, stage: str) -> dict[str, float]:
    """Peak bytes of one ``stage`` job of ``model`` on its device: the weights, the inputs being answered (one
    batch; the MCR's record in both orders), the KV cache and the activations (see :mod:`amps.core.memory`)."""
    spec = config["models"][model]
    shape, b = model_shape(spec), value_bytes(spec)
    batch = spec["batch_size"]
    mcr = config["mcr"]
    if stage == "mcr":
        cache, activations = memory.mcr_bytes(shape, min(mcr["max_batch"], mcr["samples"]), b, mcr["fisher"])
    else:
        cache = memory.cache_bytes(shape.text, batch, shape.sequence + config["evaluation"]["max_new_tokens"], b)
        activations = memory.generation_activations(shape, batch, b)
        if stage == "ablations":  # also the Monte Carlo re-estimates of the samples family (entropy only)
            rows = min(mcr["max_batch"], max(config["amps"]["ablation"]["samples"]))
            reestimate = memory.mcr_bytes(shape, rows, b, fisher=False)
            if sum(reestimate) > cache + activations:
                cache, activations = reestimate
    answered = OPTION_ORDERS if stage == "mcr" else batch
    return {
        "weights": memory.weights_bytes(shape, b),
        "inputs": memory.inputs_bytes(shape, answered, b),
        "cache": cache,
        "activations": activations,
    }


def host_memory_gb(config: dict, model: str, stage: str) -> float:
    """Host memory of one ``stage`` job of ``model`` in GB: the process, the weights (loaded through host
    memory) and the encoded prompts it holds; on the CPU also the stage's cache and activations."""
    spec = config["models"][model]
    needed = stage_memory(config, model, stage)
    held = memory.inputs_bytes(model_shape(spec), held_prompts(config, model, stage), value_bytes(spec))
    if runs_on_cpu(spec):
        return TOY_PROCESS_GB + (needed["weights"] + held + needed["cache"] + needed["activations"]) / GB
    return HOST_MEMORY_BASE_GB + (needed["weights"] + held) / GB


def model_stages(config: dict, model: str) -> list[str]:
    """The stages ``model`` has jobs in: every stage, the ablations on the ablation model only."""
    return [stage for stage in STAGES if stage != "ablations" or model == ablation_model(config)]


def gpu_memory_needed_gb(config: dict, model: str) -> float:
    """GPU memory the jobs of ``model`` need in GB: their heaviest stage and the CUDA context."""
    return max(sum(stage_memory(config, model, stage).values()) for stage in model_stages(config, model)) / GB + CUDA_CONTEXT_GB


def gpus_needed(config: dict, model: str, gpu_memory_gb: float) -> int:
    """GPUs a model's jobs use unless the config says: 0 for toy models and CPU devices, else enough
    GPUs of ``gpu_memory_gb`` for the heaviest stage."""
    spec = config["models"][model]
    if spec["source"] == "toy" or spec.get("device", "auto") == "cpu":
        return 0
    return max(1, math.ceil(gpu_memory_needed_gb(config, model) / (gpu_memory_gb * memory.USABLE_GPU_SHARE)))


def fill_model_gpus(config: dict) -> list[str]:
    """Give every model of a validated config an explicit ``gpus`` count; return problems found.

    A model that needs several GPUs must be spread over them (``device_map``), or it would load onto
    one and run out of memory.
    """
    problems = []
    gpu_memory_gb = config["compute"]["gpu_memory_gb"]
    for name, spec in config["models"].items():
        spec.setdefault("gpus", gpus_needed(config, name, gpu_memory_gb))
        if spec["gpus"] > 1 and spec.get("device_map") is None:
            problems.append(
                f"models.{name}: needs {spec['gpus']} GPUs of {gpu_memory_gb:g} GB "
                "(compute.gpu_memory_gb); set device_map: auto to spread it over them"
            )
    return problems


def benchmark_records(config: dict) -> int:
    """Number of benchmark records the config asks for (all splits)."""
    benchmark = config["benchmark"]
    if benchmark["source"] == "world":
        world = benchmark["world"]
        return len(world["tasks"]) * world["records_per_task"]
    limit = benchmark["mc2"].get("limit")
    return MC2_RECORDS if limit is None else min(MC2_RECORDS, limit * MC2_TASKS)


def stage_prompts(config: dict, stage: str) -> float:
    """Prompt-equivalents one job of ``stage`` runs (each a prefill plus a few generated tokens)."""
    records = benchmark_records(config)
    test_records = records * config["benchmark"]["splits"]["test"]
    if stage == "evaluate":
        return test_records * OPTION_ORDERS * EVALUATION_CONDITIONS
    if stage == "activations":
        return records * OPTION_ORDERS * ACTIVATION_PROMPTS
    if stage == "sweep":
        # Each strength in both directions, plus α = 0.
        return test_records * OPTION_ORDERS * (2 * len(config["steering"]["alphas"]) + 1)
    if stage == "select":
        # Validation scans over the whole grid, both directions: mean steering, prompt-to-steer, each
        # Learn-to-Steer seed, each AMPS and AMPS-online candidate of one sign, AMPS's other seeds; plus
        # the unsteered pass.
        amps = config["amps"]
        validation_records = records * config["benchmark"]["splits"]["validation"]
        candidates = len(amps["beta_units"]) * len(amps["anchor_quantiles"])
        scans = 2 + amps["seeds"] + 2 * candidates + (amps["seeds"] - 1)
        return validation_records * OPTION_ORDERS * (2 * scans * len(amps["strengths"]) + 1)
    if stage == "steered":
        # Every method's curve in both directions (at most amps.curve.max_points each; Learn-to-Steer
        # and AMPS once per seed), the agreeing control at each curve's chosen strength, the
        # instruction (conflict and agreeing), and the unsteered pass.
        amps = config["amps"]
        curves = 3 + 2 * amps["seeds"]
        passes = 2 * (curves * (amps["curve"]["max_points"] + 1) + 2) + 1
        return test_records * OPTION_ORDERS * passes
    if stage == "ablations":
        # Test passes of every variant (AMPS, plus AMPS-online in the MCR families) and the Monte Carlo
        # re-estimates of the samples family (entropy only).
        amps, ablation = config["amps"], config["amps"]["ablation"]
        model = ablation_model(config)
        reestimates = len(ablation["samples"]) * ablation["mc_seeds"]
        passes = (
            2 * len(ablation["beta_units"])
            + 2 * len(amps["anchor_quantiles"])
            + len(config["models"][model]["steering_layers"])
            + 2 * (reestimates + 1)
            + 2 * 2
            + 2
        )
        monte_carlo = (
            sum(records * OPTION_ORDERS * MCR_MODALITIES * samples * MCR_SAMPLE_COST for samples in ablation["samples"])
            * ablation["mc_seeds"]
        )
        return test_records * OPTION_ORDERS * passes + monte_carlo
    if stage == "mcr":
        mcr = config["mcr"]
        per_sample = MCR_SAMPLE_COST * (3 if mcr["fisher"] else 1)
        shard_records = math.ceil(records / mcr["shards"])
        return shard_records * OPTION_ORDERS * MCR_MODALITIES * mcr["samples"] * per_sample
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


def ablation_model(config: dict) -> str:
    """The model the ablations run on: the configured one, else the config's first model."""
    return config["amps"]["ablation"]["model"] or next(iter(config["models"]))


def round_runtime(minutes: float) -> int:
    """Minutes with the safety margin, rounded up to whole steps of ``RUNTIME_STEP_MINUTES``."""
    return RUNTIME_STEP_MINUTES * max(1, math.ceil(minutes * RUNTIME_MARGIN / RUNTIME_STEP_MINUTES))


def estimated_minutes(config: dict, model: str, stage: str) -> float:
    """Expected minutes of one ``stage`` job of ``model`` (before the safety margin)."""
    spec = config["models"][model]
    prompts = stage_prompts(config, stage)
    if spec["source"] == "toy":
        return prompts * TOY_SECONDS_PER_PROMPT / 60
    size = planned_size(spec)
    seconds = prompts * config["compute"]["seconds_per_prompt_per_billion"] * size
    return weights_gb(spec) / LOAD_GB_PER_MINUTE + seconds / 60


def planned_size(spec: dict) -> float:
    """Billions of parameters to plan with: an unsized pretrained model is planned as a 7B one."""
    return spec.get("params_billion", 7.0)


def model_job_resources(config: dict, model: str, stage: str) -> dict[str, int]:
    """Snakemake resources of one ``stage`` job of ``model``: mem_mb, runtime (minutes) and gpu.

    ``gpu`` is the model's GPU count (filled in by validation from its stages' memory, see
    :func:`gpus_needed`); ``mem_mb`` the host memory (:func:`host_memory_gb`); ``runtime`` grows with the
    model's size and the stage's prompt count.
    """
    runtime = round_runtime(estimated_minutes(config, model, stage))
    mem_mb = math.ceil(1000 * host_memory_gb(config, model, stage))
    return {"mem_mb": mem_mb, "runtime": runtime, "gpu": config["models"][model]["gpus"]}


def toy_training_minutes(config: dict, model: str) -> float:
    """Expected minutes of training one toy model (before the safety margin), from its step counts."""
    spec = config["models"][model]
    examples = spec["training_steps"] * config["toy_training"]["batch_size"]
    # Larger toys than the measured one cost about in proportion to layers times width.
    scale = spec["architecture"]["text_layers"] * spec["architecture"]["text_hidden"] / (3 * 96)
    return examples * TOY_SECONDS_PER_TRAIN_EXAMPLE * max(scale, 1.0) / 60


def toy_training_resources(config: dict, model: str) -> dict[str, int]:
    """Snakemake resources of training one toy model (CPU): memory and runtime from its step counts."""
    return {"mem_mb": TOY_TRAIN_MEM_MB, "runtime": round_runtime(toy_training_minutes(config, model)), "gpu": 0}
