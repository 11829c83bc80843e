# The toy models of the offline world (pretrained models need no rule: jobs load them from their path).
from amps.models.steps import TrainToyModel


rule train_toy_model:
    """Train one toy LLaVA of the offline world and save it with save_pretrained."""
    output:
        directory(f"{OUT}/models/{{model}}"),
    log:
        f"{OUT}/logs/train_toy_model/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/train_toy_model/{{model}}.tsv"
    # Longest first: the largest toy's chain of jobs is the run's critical path.
    priority: lambda wildcards: toy_training_minutes(config, wildcards.model)
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: toy_training_resources(config, wildcards.model)["mem_mb"],
        runtime=lambda wildcards: toy_training_resources(config, wildcards.model)["runtime"],
    params:
        settings=lambda wildcards: step_params(TrainToyModel, model=wildcards.model),
    shell:
        "amps train-toy-model --settings {params.settings:q} --output-dir {output} > {log} 2>&1"
