"""The plan of a run's jobs: every model's GPUs, memory and expected time per stage, for a config file."""

from __future__ import annotations

from amps.core.config import load_config
from amps.core.resources import (
    STAGES,
    ablation_model,
    estimated_minutes,
    gpu_memory_needed_gb,
    model_job_resources,
    planned_size,
)


def plan_lines(config: dict) -> list[str]:
    """A table of every model's jobs per stage: GPUs, memory, expected and requested time."""
    lines = [f"{'model':<18} {'stage':<12} {'gpus':>4} {'gpu mem GB':>10} {'host GB':>7} {'expected h':>10} {'requested h':>11}"]
    for model in sorted(config["models"]):
        spec = config["models"][model]
        sized = {**spec, "params_billion": planned_size(spec)}
        gpu_memory = "-" if spec["source"] == "toy" or not spec["gpus"] else f"{gpu_memory_needed_gb(sized):.0f}"
        for stage in STAGES:
            if stage == "ablations" and model != ablation_model(config):
                continue
            job = model_job_resources(config, model, stage)
            lines.append(
                f"{model:<18} {stage:<12} {job['gpu']:>4} {gpu_memory:>10} {job['mem_mb'] / 1024:>7.0f}"
                f" {estimated_minutes(config, model, stage) / 60:>10.2f} {job['runtime'] / 60:>11.2f}"
            )
    return lines


def plan_resources(config: str) -> None:
    """Print what every model's jobs of a config file ask for, and how long they should take.

    Data and weights need not be on this machine: a run is often planned before they are fetched.
    """
    print("\n".join(plan_lines(load_config(config, check_paths=False))))
