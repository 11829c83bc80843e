# The baseline evaluation; its tables and figure are drawn by report.smk.
from amps.baseline.steps import EvaluateBaseline


rule evaluate_baseline:
    """Ask every test record under no/text/image instruction and the agreeing control, both option orders."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs,
    output:
        f"{OUT}/baseline/{{model}}.parquet",
    params:
        settings=lambda wildcards: step_params(EvaluateBaseline, model=wildcards.model),
        model=model_location,
    threads: config["threads"]
    log:
        f"{OUT}/logs/evaluate_baseline/{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate_baseline/{{model}}.tsv"
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model)["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model)["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model)["gpu"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps evaluate-baseline --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --output {output} > {log} 2>&1"


rule summarize_baseline:
    """Scores per model, condition, task and view; the toy-model behaviour checks."""
    input:
        expand(f"{OUT}/baseline/{{model}}.parquet", model=MODELS),
    output:
        scores=f"{OUT}/tables/baseline_scores.csv",
        checks=f"{OUT}/tables/toy_model_checks.csv",
    params:
        settings=settings_json(
            {"run_name": config["run_name"], "evaluation": config["evaluation"], "toy_models": TOY_MODELS}
        ),
        answers=lambda wildcards, input: ",".join(input),
    log:
        f"{OUT}/logs/summarize_baseline.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps summarize-baseline --settings {params.settings:q} --answers {params.answers}"
        " --scores {output.scores} --checks {output.checks} > {log} 2>&1"


rule plot_preference:
    """MC²-style preference bars per model."""
    input:
        f"{OUT}/tables/baseline_scores.csv",
    output:
        pdf=f"{OUT}/figures/preference.pdf",
        png=report(
            f"{OUT}/figures/preference.png",
            caption="../report/figures/preference.rst",
            category="Figures",
            labels={"figure": "preference"},
        ),
    params:
        settings=settings_json({"run_name": config["run_name"], "benchmark_label": BENCHMARK_LABEL}),
    log:
        f"{OUT}/logs/plot_preference.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps plot-preference --settings {params.settings:q} --scores {input} --output {output.pdf} > {log} 2>&1"
