# Shared helpers: output locations, settings passed through params, per-model resources.
from amps.config import settings_json

OUT = f"results/{config['run_name']}"
MODELS = sorted(config["models"])
TOY_MODELS = [name for name in MODELS if config["models"][name]["source"] == "toy"]
BENCHMARK_LABEL = (
    "offline conflict world, toy models" if config["benchmark"]["source"] == "world" else "MC²"
)


def model_settings(model):
    """Settings of one model for a rule's params (changing them reruns the rule)."""
    return settings_json(
        {
            "model_name": model,
            "model": config["models"][model],
            "evaluation": config["evaluation"],
            "threads": config["threads"],
            "seed": config["seed"],
        }
    )


def steering_settings(model, with_sweep):
    """Settings of a steering job of one model (the sweep also depends on evaluation and steering)."""
    settings = {
        "model_name": model,
        "model": config["models"][model],
        "threads": config["threads"],
    }
    if with_sweep:
        settings.update(evaluation=config["evaluation"], steering=config["steering"])
    return settings_json(settings)


def model_location(wildcards):
    """Where a model loads from: the trained folder for toy models, else the configured path."""
    spec = config["models"][wildcards.model]
    return f"{OUT}/models/{wildcards.model}" if spec["source"] == "toy" else spec["path"]


def model_inputs(wildcards):
    """Inputs of a job that runs a model: the trained folder for toy models, nothing for pretrained ones."""
    return [f"{OUT}/models/{wildcards.model}"] if config["models"][wildcards.model]["source"] == "toy" else []


def model_resources(model):
    """Resources of a job that runs ``model`` (toy models run on CPU)."""
    spec = config["models"][model]
    if spec["source"] == "toy":
        return {"mem_mb": 2000, "runtime": 30, "gpu": 0}
    billions = spec.get("params_billion", 7)
    return {"mem_mb": int(8000 + 4000 * billions), "runtime": int(60 + 10 * billions), "gpu": 1}


def final_outputs():
    """Everything the main job produces."""
    return [
        f"{OUT}/tables/baseline_scores.csv",
        f"{OUT}/tables/toy_model_checks.csv",
        f"{OUT}/figures/preference.pdf",
        f"{OUT}/tables/sweep_scores.csv",
        f"{OUT}/figures/sweep.pdf",
    ]
