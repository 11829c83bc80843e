rule train_toy_model:
    """Train one toy LLaVA of the offline world and save it with save_pretrained."""
    output:
        directory(f"{OUT}/models/{{model}}"),
    params:
        settings=lambda wildcards: settings_json(
            {
                # Only what shapes the weights: changing a model's steering layers must not retrain it.
                "model": {
                    key: config["models"][wildcards.model][key] for key in ("source", "architecture", "training_steps")
                },
                "training": config["toy_training"],
                "tasks": config["benchmark"]["world"]["tasks"],
                "image_strength": config["benchmark"]["world"]["image_strength"],
                "threads": config["threads"],
                "seed": config["seed"],
            }
        ),
    threads: config["threads"]
    # Longest first: the largest toy's chain of jobs is the run's critical path.
    priority: lambda wildcards: toy_training_minutes(config, wildcards.model)
    log:
        f"{OUT}/logs/train_toy_model/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/train_toy_model/{{model}}.tsv"
    resources:
        mem_mb=lambda wildcards: toy_training_resources(config, wildcards.model)["mem_mb"],
        runtime=lambda wildcards: toy_training_resources(config, wildcards.model)["runtime"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps train-toy --settings {params.settings:q} --output-dir {output} > {log} 2>&1"
