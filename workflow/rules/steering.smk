# Contrastive activations, and the uniform mean-steering sweep (strength grid, both directions).
from amps.steering.steps import CollectActivations, SteeringSweep


rule collect_activations:
    """Last-token hidden states of every record under the plain, image and text prompts (both orders)."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs,
    output:
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
    params:
        settings=lambda wildcards: step_params(CollectActivations, model=wildcards.model),
        model=model_location,
    threads: config["threads"]
    log:
        f"{OUT}/logs/collect_activations/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/collect_activations/{{model}}.tsv"
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "activations")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "activations")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "activations")["gpu"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps collect-activations --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --output {output.tensors} --index {output.index} > {log} 2>&1"


rule steering_sweep:
    """Mean steering at every strength of the grid, both directions, test split; per-sample sensitivity."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs,
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
    output:
        answers=f"{OUT}/sweep/{{model}}/answers.parquet",
        records=f"{OUT}/sweep/{{model}}/records.parquet",
        sensitivity=f"{OUT}/sweep/{{model}}/sensitivity.parquet",
    params:
        settings=lambda wildcards: step_params(SteeringSweep, model=wildcards.model),
        model=model_location,
    threads: config["threads"]
    log:
        f"{OUT}/logs/steering_sweep/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/steering_sweep/{{model}}.tsv"
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "sweep")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "sweep")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "sweep")["gpu"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps steering-sweep --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --activations {input.tensors} --answers {output.answers}"
        " --records {output.records} --sensitivity-table {output.sensitivity} > {log} 2>&1"


rule summarize_sweep:
    """Sweep scores per model, direction, strength, task and view, with letter-bias columns."""
    input:
        answers=expand(f"{OUT}/sweep/{{model}}/answers.parquet", model=MODELS),
        records=expand(f"{OUT}/sweep/{{model}}/records.parquet", model=MODELS),
    output:
        f"{OUT}/tables/sweep_scores.csv",
    params:
        settings=settings_json({"run_name": config["run_name"]}),
        answers=lambda wildcards, input: ",".join(input.answers),
        records=lambda wildcards, input: ",".join(input.records),
    log:
        f"{OUT}/logs/summarize_sweep.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps summarize-sweep --settings {params.settings:q} --answers {params.answers}"
        " --records {params.records} --scores {output} > {log} 2>&1"


rule plot_sweep:
    """Vision ratio and S_other against the steering strength, one panel per model."""
    input:
        f"{OUT}/tables/sweep_scores.csv",
    output:
        pdf=f"{OUT}/figures/sweep.pdf",
        png=report(
            f"{OUT}/figures/sweep.png",
            caption="../report/figures/sweep.rst",
            category="Figures",
            labels={"figure": "sweep"},
        ),
    params:
        settings=settings_json({"run_name": config["run_name"], "benchmark_label": BENCHMARK_LABEL}),
    log:
        f"{OUT}/logs/plot_sweep.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps plot-sweep --settings {params.settings:q} --scores {input} --output {output.pdf} > {log} 2>&1"
