rule train_toy_model:
    """Train one toy LLaVA of the offline world and save it with save_pretrained."""
    output:
        directory(f"{OUT}/models/{{model}}"),
    params:
        settings=lambda wildcards: settings_json(
            {
                "model": config["models"][wildcards.model],
                "training": config["toy_training"],
                "tasks": config["benchmark"]["world"]["tasks"],
                "threads": config["threads"],
                "seed": config["seed"],
            }
        ),
    threads: config["threads"]
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
