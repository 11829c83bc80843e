# AMPS: validation choices (strengths, sign of beta, beta, r_anchor), the Learn-to-Steer and AMPS
# modules, the steered evaluation of every method and direction on the test split, ablations, tables
# and figures.
import os
from types import SimpleNamespace

from amps.method.steps import AblateAmps, SelectAmps, SteeredEval, TrainSteerers
from amps.vocabulary import ABLATION_FAMILIES, DIRECTIONS, METHODS

ABLATION_MODEL = ablation_model(config)
ABLATION_WILDCARDS = SimpleNamespace(model=ABLATION_MODEL)
ABLATION_DIRECTION = config["amps"]["ablation"]["direction"]
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
    params:
        settings=lambda wildcards: step_params(TrainSteerers, model=wildcards.model),
    threads: config["threads"]
    log:
        f"{OUT}/logs/train_steerers/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/train_steerers/{{model}}.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps train-steerers --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --activations {input.tensors} --mcr {input.mcr} --output-dir {output.modules} --summary {output.summary} > {log} 2>&1"


rule select_amps:
    """Each method's strength from its own validation outputs; AMPS's sign of beta, beta and r_anchor on its trained candidates."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs,
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
        mcr=MCR_TABLE,
        steerers=f"{OUT}/amps/{{model}}/steerers",
    output:
        choice=f"{OUT}/amps/{{model}}/selection.json",
        scan=f"{OUT}/amps/{{model}}/validation_scan.csv",
    params:
        settings=lambda wildcards: step_params(SelectAmps, model=wildcards.model),
        model=model_location,
    threads: config["threads"]
    log:
        f"{OUT}/logs/select_amps/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/select_amps/{{model}}.tsv"
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "select")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "select")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "select")["gpu"],
    conda:
        "../envs/amps.yaml"
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
        model=model_inputs,
        tensors=f"{OUT}/activations/{{model}}.safetensors",
        index=f"{OUT}/activations/{{model}}.json",
        mcr=MCR_TABLE,
        selection=f"{OUT}/amps/{{model}}/selection.json",
        steerers=f"{OUT}/amps/{{model}}/steerers",
    output:
        expand(f"{OUT}/amps/{{{{model}}}}/answers/{{method}}-{{direction}}.parquet", method=METHODS, direction=list(DIRECTIONS)),
    params:
        settings=lambda wildcards: step_params(SteeredEval, model=wildcards.model),
        model=model_location,
        # The folder of the answers tables (each output is <folder>/<method>-<direction>.parquet).
        answers=lambda wildcards, output: os.path.dirname(output[0]),
    threads: config["threads"]
    log:
        f"{OUT}/logs/steered_eval/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/steered_eval/{{model}}.tsv"
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "steered")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "steered")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "steered")["gpu"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps steered-eval --settings {params.settings:q} --benchmark-dir {input.benchmark} --model {params.model}"
        " --activations {input.tensors} --mcr {input.mcr} --selection {input.selection} --steerers {input.steerers}"
        " --answers-dir {params.answers} > {log} 2>&1"


rule ablate_amps:
    """Every ablation family on the ablation model: each variant retrains AMPS (and reruns AMPS-online) on the test split."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs(ABLATION_WILDCARDS),
        tensors=f"{OUT}/activations/{ABLATION_MODEL}.safetensors",
        index=f"{OUT}/activations/{ABLATION_MODEL}.json",
        mcr=MCR_TABLE.format(model=ABLATION_MODEL),
        selection=f"{OUT}/amps/{ABLATION_MODEL}/selection.json",
    output:
        expand(f"{OUT}/amps/ablations/{{family}}.parquet", family=ABLATION_FAMILIES),
    params:
        settings=step_params(AblateAmps),
        model=lambda wildcards: model_location(ABLATION_WILDCARDS),
        # The folder of the family tables (each output is <folder>/<family>.parquet).
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    threads: config["threads"]
    log:
        f"{OUT}/logs/ablate_amps.log",
    benchmark:
        f"{OUT}/benchmarks/ablate_amps.tsv"
    resources:
        mem_mb=model_resources(ABLATION_MODEL, "ablations")["mem_mb"],
        runtime=model_resources(ABLATION_MODEL, "ablations")["runtime"],
        gpu=model_resources(ABLATION_MODEL, "ablations")["gpu"],
        # A memory budget, not a setting (see mcr_shard).
        mcr_max_batch=config["mcr"]["max_batch"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps ablate-amps --settings {params.settings:q} --benchmark-dir {input.benchmark} --model {params.model}"
        " --activations {input.tensors} --mcr {input.mcr} --selection {input.selection} --output-dir {params.output_dir}"
        " --max-batch {resources.mcr_max_batch} > {log} 2>&1"


rule summarize_amps:
    """AMPS's tables (scores, main, scales, matched shift, collapse budgets, validation choices, ablations): CSV, Markdown, LaTeX."""
    input:
        answers=expand(
            f"{OUT}/amps/{{model}}/answers/{{method}}-{{direction}}.parquet",
            model=MODELS,
            method=METHODS,
            direction=list(DIRECTIONS),
        ),
        baselines=expand(f"{OUT}/baseline/{{model}}.parquet", model=MODELS),
        selections=expand(f"{OUT}/amps/{{model}}/selection.json", model=MODELS),
        ablations=expand(f"{OUT}/amps/ablations/{{family}}.parquet", family=ABLATION_FAMILIES),
    output:
        scores=f"{OUT}/tables/amps_scores.csv",
        main=multiext(f"{OUT}/tables/amps_main", ".csv", ".md", ".tex"),
        scale=multiext(f"{OUT}/tables/amps_scale", ".csv", ".md", ".tex"),
        matched=multiext(f"{OUT}/tables/amps_matched", ".csv", ".md", ".tex"),
        budget=multiext(f"{OUT}/tables/amps_budget", ".csv", ".md", ".tex"),
        selection=multiext(f"{OUT}/tables/amps_selection", ".csv", ".md", ".tex"),
        ablation=multiext(f"{OUT}/tables/amps_ablation", ".csv", ".md", ".tex"),
    params:
        settings=settings_json(
            {
                "run_name": config["run_name"],
                "benchmark_label": BENCHMARK_LABEL,
                "models": MODELS,
                "ablation_model": ABLATION_MODEL,
                "collapse_budgets": config["amps"]["collapse_budgets"],
                "curve": config["amps"]["curve"],
            }
        ),
        answers=lambda wildcards, input: ",".join(input.answers),
        baselines=lambda wildcards, input: ",".join(input.baselines),
        selections=lambda wildcards, input: ",".join(input.selections),
        ablations=lambda wildcards, input: ",".join(input.ablations),
        # Each table's CSV path (its Markdown and LaTeX are written beside it).
        main=lambda wildcards, output: output.main[0],
        scale=lambda wildcards, output: output.scale[0],
        matched=lambda wildcards, output: output.matched[0],
        budget=lambda wildcards, output: output.budget[0],
        selection=lambda wildcards, output: output.selection[0],
        ablation=lambda wildcards, output: output.ablation[0],
    log:
        f"{OUT}/logs/summarize_amps.log",
    benchmark:
        f"{OUT}/benchmarks/summarize_amps.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps summarize-amps --settings {params.settings:q} --answers {params.answers} --baselines {params.baselines}"
        " --selections {params.selections} --ablations {params.ablations} --scores {output.scores}"
        " --main {params.main} --scale {params.scale} --matched {params.matched} --budget {params.budget}"
        " --selection {params.selection} --ablation {params.ablation} > {log} 2>&1"


rule plot_tradeoff:
    """Shift against collapse: the mean-steering curve and each learned method, per model and direction."""
    input:
        f"{OUT}/tables/amps_scores.csv",
    output:
        pdf=f"{OUT}/figures/amps_tradeoff.pdf",
        png=report(
            f"{OUT}/figures/amps_tradeoff.png",
            caption="../report/figures/amps_tradeoff.rst",
            category="Figures",
            labels={"figure": "amps_tradeoff"},
        ),
    params:
        settings=settings_json({"run_name": config["run_name"], "benchmark_label": BENCHMARK_LABEL}),
    log:
        f"{OUT}/logs/plot_tradeoff.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps plot-tradeoff --settings {params.settings:q} --scores {input} --output {output.pdf} > {log} 2>&1"


rule plot_examples:
    """A few test records of the ablation model: answers under strong mean steering and under AMPS."""
    input:
        benchmark=f"{OUT}/benchmark",
        mean=f"{OUT}/amps/{ABLATION_MODEL}/answers/mean-{ABLATION_DIRECTION}.parquet",
        amps=f"{OUT}/amps/{ABLATION_MODEL}/answers/amps-{ABLATION_DIRECTION}.parquet",
    output:
        pdf=f"{OUT}/figures/amps_examples.pdf",
        png=report(
            f"{OUT}/figures/amps_examples.png",
            caption="../report/figures/amps_examples.rst",
            category="Figures",
            labels={"figure": "amps_examples"},
        ),
    params:
        settings=settings_json(
            {
                "run_name": config["run_name"],
                "benchmark_label": BENCHMARK_LABEL,
                "model_name": ABLATION_MODEL,
                "direction": ABLATION_DIRECTION,
                "examples": config["amps"]["examples"],
            }
        ),
    log:
        f"{OUT}/logs/plot_examples.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps plot-examples --settings {params.settings:q} --mean-answers {input.mean} --amps-answers {input.amps}"
        " --benchmark-dir {input.benchmark} --output {output.pdf} > {log} 2>&1"
