# Shared helpers: output locations, each step's settings for its params, per-model inputs and resources.
from amps.core.resources import ablation_model, model_job_resources, toy_training_minutes, toy_training_resources
from amps.core.settings import model_names
from amps.vocabulary import AMPS_TABLES

OUT = f"results/{config['run_name']}"
MODELS = list(model_names(config))
# The model of the ablations and the examples figure: amps.ablation.model, else the config's first model.
ABLATION_MODEL = ablation_model(config)


def step_params(step, **context):
    """A step's settings as its rule's params (amps.core.settings): exactly the config keys the step reads."""
    return step.from_config(config, **context).to_params()


def model_location(model):
    """Where a model loads from: the trained folder for toy models, else the configured path."""
    spec = config["models"][model]
    return f"{OUT}/models/{model}" if spec["source"] == "toy" else spec["path"]


def model_inputs(model):
    """Inputs of a job that runs a model: the trained folder for toy models, nothing for pretrained ones."""
    return [f"{OUT}/models/{model}"] if config["models"][model]["source"] == "toy" else []


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
        *[f"{OUT}/tables/amps_{name}.{kind}" for name in AMPS_TABLES for kind in ("csv", "md", "tex")],
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
