"""The plan of a run's jobs: every model's GPUs, memory and expected time per stage, for a config file."""

from __future__ import annotations

from amps.core.config import load_config
from amps.core.resources import (
    CUDA_CONTEXT_GB,
    GB,
    estimated_minutes,
    model_job_resources,
    model_stages,
    stage_memory,
)

MEMORY_TERMS = ("weights", "inputs", "cache", "activations")


def plan_lines(config: dict) -> list[str]:
    """A table of every model's jobs per stage: GPUs, memory by term (from the formulas of amps.core.memory) and in
    all (on the GPU: with the CUDA context), host memory, expected and requested time."""
    lines = [
        f"{'model':<18} {'stage':<12} {'gpus':>4} {'weights':>7} {'inputs':>7} {'cache':>6} {'activ.':>6} {'GPU GB':>6}"
        f" {'host GB':>7} {'expected h':>10} {'requested h':>11}"
    ]
    for model in sorted(config["models"]):
        for stage in model_stages(config, model):
            job = model_job_resources(config, model, stage)
            needed = stage_memory(config, model, stage)
            terms = " ".join(f"{needed[term] / GB:>{max(6, len(term))}.1f}" for term in MEMORY_TERMS[:2])
            terms += " " + " ".join(f"{needed[term] / GB:>6.1f}" for term in MEMORY_TERMS[2:])
            gpu_memory = f"{sum(needed.values()) / GB + CUDA_CONTEXT_GB:>6.1f}" if job["gpu"] else f"{'-':>6}"
            lines.append(
                f"{model:<18} {stage:<12} {job['gpu']:>4} {terms} {gpu_memory} {job['mem_mb'] / 1000:>7.1f}"
                f" {estimated_minutes(config, model, stage) / 60:>10.2f} {job['runtime'] / 60:>11.2f}"
            )
    return lines


def plan_resources(config: str) -> None:
    """Print what every model's jobs of a config file ask for, and how long they should take.

    Memory is in GB (10^9 bytes) by the terms of amps.core.memory: the weights, the encoded prompts a job
    holds, the KV cache and the activations of its operation. Data and weights need not be on this
    machine: a run is often planned before they are fetched.
    """
    print("\n".join(plan_lines(load_config(config, check_paths=False))))
