# AMPS and the methods it is compared with: the Learn-to-Steer and AMPS modules, each method's validation
# choice (strength; AMPS's sign of beta, beta and r_anchor), the steered evaluation of every method and
# direction on the test split, and the ablations. Their tables and figures are drawn by report.smk.
import os

from amps.method.steps import AblateAmps, SelectAmps, SteeredEval, TrainSteerers
from amps.vocabulary import ABLATION_FAMILIES, DIRECTIONS, METHODS

# The MCR table of a model (gathered from its shards, every split).
MCR_TABLE = f"{OUT}/mcr/{{model}}.parquet"


rule train_steerers:
    """Learn-to-Steer modules and every candidate AMPS module of one model, each direction and seed (CPU, seconds)."""
    input:
        benchmark=f"{OUT}/benchmark",
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
        mcr=MCR_TABLE,
    output:
        modules=directory(f"{OUT}/amps/{{model}}/steerers"),
        summary=f"{OUT}/amps/{{model}}/steerer_training.csv",
    log:
        f"{OUT}/logs/train_steerers/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/train_steerers/{{model}}.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=lambda wildcards: step_params(TrainSteerers, model=wildcards.model),
    shell:
        "amps train-steerers --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --activations {input.tensors} --mcr {input.mcr} --output-dir {output.modules} --summary {output.summary} > {log} 2>&1"


rule select_amps:
    """Each method's strength from its own validation outputs; AMPS's sign of beta, beta and r_anchor on its trained candidates."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=lambda wildcards: model_inputs(wildcards.model),
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
        mcr=MCR_TABLE,
        steerers=f"{OUT}/amps/{{model}}/steerers",
    output:
        choice=f"{OUT}/amps/{{model}}/selection.json",
        scan=f"{OUT}/amps/{{model}}/validation_scan.csv",
    log:
        f"{OUT}/logs/select_amps/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/select_amps/{{model}}.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "select")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "select")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "select")["gpu"],
    params:
        settings=lambda wildcards: step_params(SelectAmps, model=wildcards.model),
        model=lambda wildcards: model_location(wildcards.model),
    shell:
        "amps select-amps --settings {params.settings:q} --benchmark-dir {input.benchmark} --model {params.model}"
        " --activations {input.tensors} --mcr {input.mcr} --steerers {input.steerers} --output {output.choice}"
        " --scan {output.scan} > {log} 2>&1"


rule steered_eval:
    """Every method's measured strength curve in both directions on the test split, the agreeing control at its chosen strength.

    One job per model (one model load, one encoding of the prompts): on small models a job's
    start-up (importing torch and transformers) costs as much as a method's evaluation.
    """
    input:
        benchmark=f"{OUT}/benchmark",
        model=lambda wildcards: model_inputs(wildcards.model),
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
        mcr=MCR_TABLE,
        selection=f"{OUT}/amps/{{model}}/selection.json",
        steerers=f"{OUT}/amps/{{model}}/steerers",
    output:
        expand(f"{OUT}/amps/{{{{model}}}}/answers/{{method}}-{{direction}}.parquet", method=METHODS, direction=list(DIRECTIONS)),
    log:
        f"{OUT}/logs/steered_eval/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/steered_eval/{{model}}.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "steered")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "steered")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "steered")["gpu"],
    params:
        settings=lambda wildcards: step_params(SteeredEval, model=wildcards.model),
        model=lambda wildcards: model_location(wildcards.model),
        # The folder of the answers tables (each output is <folder>/<method>-<direction>.parquet).
        answers=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "amps steered-eval --settings {params.settings:q} --benchmark-dir {input.benchmark} --model {params.model}"
        " --activations {input.tensors} --mcr {input.mcr} --selection {input.selection} --steerers {input.steerers}"
        " --answers-dir {params.answers} > {log} 2>&1"


rule ablate_amps:
    """Every ablation family on the ablation model: each variant retrains AMPS (and reruns AMPS-online) on the test split."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs(ABLATION_MODEL),
        tensors=f"{OUT}/activations/{ABLATION_MODEL}.safetensors",
        index=f"{OUT}/activations/{ABLATION_MODEL}.json",
        mcr=MCR_TABLE.format(model=ABLATION_MODEL),
        selection=f"{OUT}/amps/{ABLATION_MODEL}/selection.json",
    output:
        expand(f"{OUT}/amps/ablations/{{family}}.parquet", family=ABLATION_FAMILIES),
    log:
        f"{OUT}/logs/ablate_amps.log",
    benchmark:
        f"{OUT}/benchmarks/ablate_amps.tsv"
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=model_resources(ABLATION_MODEL, "ablations")["mem_mb"],
        runtime=model_resources(ABLATION_MODEL, "ablations")["runtime"],
        gpu=model_resources(ABLATION_MODEL, "ablations")["gpu"],
        # A memory budget, not a setting (see mcr_shard).
        mcr_max_batch=config["mcr"]["max_batch"],
    params:
        settings=step_params(AblateAmps),
        model=lambda wildcards: model_location(ABLATION_MODEL),
        # The folder of the family tables (each output is <folder>/<family>.parquet).
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "amps ablate-amps --settings {params.settings:q} --benchmark-dir {input.benchmark} --model {params.model}"
        " --activations {input.tensors} --mcr {input.mcr} --selection {input.selection} --output-dir {params.output_dir}"
        " --max-batch {resources.mcr_max_batch} > {log} 2>&1"
