# Contrastive activations, and the uniform mean-steering sweep (strength grid, both directions); its table and
# figure are drawn by report.smk.
from amps.steering.steps import CollectActivations, SteeringSweep


rule collect_activations:
    """Last-token hidden states of every record under the plain, image and text prompts (both orders)."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=lambda wildcards: model_inputs(wildcards.model),
    output:
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
    log:
        f"{OUT}/logs/collect_activations/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/collect_activations/{{model}}.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "activations")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "activations")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "activations")["gpu"],
    params:
        settings=lambda wildcards: step_params(CollectActivations, model=wildcards.model),
        model=lambda wildcards: model_location(wildcards.model),
    shell:
        "amps collect-activations --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --output {output.tensors} --index {output.index} > {log} 2>&1"


rule steering_sweep:
    """Mean steering at every strength of the grid, both directions, test split; per-sample sensitivity."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=lambda wildcards: model_inputs(wildcards.model),
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
    output:
        answers=f"{OUT}/sweep/{{model}}/answers.parquet",
        records=f"{OUT}/sweep/{{model}}/records.parquet",
        sensitivity=f"{OUT}/sweep/{{model}}/sensitivity.parquet",
    log:
        f"{OUT}/logs/steering_sweep/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/steering_sweep/{{model}}.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "sweep")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "sweep")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "sweep")["gpu"],
    params:
        settings=lambda wildcards: step_params(SteeringSweep, model=wildcards.model),
        model=lambda wildcards: model_location(wildcards.model),
    shell:
        "amps steering-sweep --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --activations {input.tensors} --answers {output.answers}"
        " --records {output.records} --sensitivity-table {output.sensitivity} > {log} 2>&1"
