# The baseline evaluation; its tables and figure are drawn by report.smk.
from amps.baseline.steps import EvaluateBaseline


rule evaluate_baseline:
    """Ask every test record under no/text/image instruction and the agreeing control, both option orders."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=lambda wildcards: model_inputs(wildcards.model),
    output:
        f"{OUT}/baseline/{{model}}.parquet",
    log:
        f"{OUT}/logs/evaluate_baseline/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate_baseline/{{model}}.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model)["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model)["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model)["gpu"],
    params:
        settings=lambda wildcards: step_params(EvaluateBaseline, model=wildcards.model),
        model=lambda wildcards: model_location(wildcards.model),
    shell:
        "amps evaluate-baseline --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --output {output} > {log} 2>&1"
