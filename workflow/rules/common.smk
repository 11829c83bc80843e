# Shared helpers: output locations, each step's settings for its params, per-model resources.
from amps.core.settings import settings_json
from amps.core.resources import ablation_model, model_job_resources, toy_training_minutes, toy_training_resources

OUT = f"results/{config['run_name']}"
MODELS = sorted(config["models"])
TOY_MODELS = [name for name in MODELS if config["models"][name]["source"] == "toy"]
BENCHMARK_LABEL = (
    "offline conflict world, toy models" if config["benchmark"]["source"] == "world" else "MC²"
)


def step_params(step, **context):
    """A step's settings as its rule's params (amps.core.settings): exactly the config keys the step reads."""
    return step.from_config(config, **context).to_params()


def model_location(wildcards):
    """Where a model loads from: the trained folder for toy models, else the configured path."""
    spec = config["models"][wildcards.model]
    return f"{OUT}/models/{wildcards.model}" if spec["source"] == "toy" else spec["path"]


def model_inputs(wildcards):
    """Inputs of a job that runs a model: the trained folder for toy models, nothing for pretrained ones."""
    return [f"{OUT}/models/{wildcards.model}"] if config["models"][wildcards.model]["source"] == "toy" else []


def model_resources(model, stage="evaluate"):
    """mem_mb, runtime and gpu of one ``stage`` job of ``model`` (amps.core.resources.STAGES), from the config."""
    return model_job_resources(config, model, stage)


def final_outputs():
    """Everything the main job produces."""
    return [
        f"{OUT}/tables/baseline_scores.csv",
        f"{OUT}/tables/toy_model_checks.csv",
        f"{OUT}/figures/preference.pdf",
        f"{OUT}/tables/sweep_scores.csv",
        f"{OUT}/figures/sweep.pdf",
        f"{OUT}/tables/amps_scores.csv",
        *[f"{OUT}/tables/amps_{name}.{kind}" for name in ("main", "scale", "matched", "budget", "selection", "ablation") for kind in ("csv", "md", "tex")],
        f"{OUT}/figures/amps_tradeoff.pdf",
        f"{OUT}/figures/amps_examples.pdf",
        f"{OUT}/tables/mcr_summary.csv",
        f"{OUT}/tables/mcr_sensitivity.csv",
        f"{OUT}/figures/sensitivity.pdf",
        f"{OUT}/figures/mcr_vs_sensitivity.pdf",
        # Only the offline world knows how strong each record's evidence is.
        *(
            [f"{OUT}/tables/mcr_validation.csv", f"{OUT}/tables/mcr_vision_by_bin.csv", f"{OUT}/figures/mcr_validation.pdf"]
            if config["benchmark"]["source"] == "world"
            else []
        ),
    ]
