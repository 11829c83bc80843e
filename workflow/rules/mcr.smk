# The Modality Contribution Ratio: sharded per model over disjoint record ranges and gathered; its tables
# and figures are drawn by report.smk.
from amps.mcr.steps import GatherMcr, McrShard

MCR_SHARDS = config["mcr"]["shards"]


rule mcr_shard:
    """MCR of one shard of a model's records (all splits): KV-cache noise, functional entropy and Fisher term."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=model_inputs,
    output:
        f"{OUT}/mcr/{{model}}/shard-{{shard}}-of-{MCR_SHARDS}.parquet",
    wildcard_constraints:
        shard=r"\d+",
    params:
        settings=lambda wildcards: step_params(McrShard, model=wildcards.model, shard=wildcards.shard),
        model=model_location,
    threads: config["threads"]
    log:
        f"{OUT}/logs/mcr_shard/{{model}}/shard-{{shard}}-of-{MCR_SHARDS}.log",
    benchmark:
        f"{OUT}/benchmarks/mcr_shard/{{model}}/shard-{{shard}}-of-{MCR_SHARDS}.tsv"
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "mcr")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "mcr")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "mcr")["gpu"],
        # A memory budget, not a setting: estimates agree to float rounding whatever it is, so it reruns nothing.
        mcr_max_batch=config["mcr"]["max_batch"],
    conda:
        "../envs/amps.yaml"
    shell:
        "amps mcr-shard --settings {params.settings:q} --benchmark-dir {input.benchmark}"
        " --model {params.model} --output {output} --max-batch {resources.mcr_max_batch} > {log} 2>&1"


rule gather_mcr:
    """One MCR table per model from its shards; fails on a missing, duplicated or overlapping record."""
    input:
        benchmark=f"{OUT}/benchmark",
        shards=expand(f"{OUT}/mcr/{{{{model}}}}/shard-{{shard}}-of-{MCR_SHARDS}.parquet", shard=range(MCR_SHARDS)),
    output:
        f"{OUT}/mcr/{{model}}.parquet",
    params:
        settings=step_params(GatherMcr),
        shards=lambda wildcards, input: ",".join(input.shards),
    log:
        f"{OUT}/logs/gather_mcr/{{model}}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps gather-mcr --settings {params.settings:q} --shards {params.shards}"
        " --benchmark-dir {input.benchmark} --output {output} > {log} 2>&1"


rule summarize_mcr:
    """MCR summary per model, split and task: mean scores, MCR mean, median and spread, records with problems."""
    input:
        expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
    output:
        f"{OUT}/tables/mcr_summary.csv",
    params:
        settings=settings_json({"run_name": config["run_name"], "models": MODELS}),
        tables=lambda wildcards, input: ",".join(input),
    log:
        f"{OUT}/logs/summarize_mcr.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps summarize-mcr --settings {params.settings:q} --tables {params.tables} --output {output} > {log} 2>&1"


rule mcr_sensitivity:
    """Spearman correlation of MCR with the sweep's per-sample sensitivity, per model, task and direction."""
    input:
        mcr=expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
        sensitivity=expand(f"{OUT}/sweep/{{model}}/sensitivity.parquet", model=MODELS),
    output:
        f"{OUT}/tables/mcr_sensitivity.csv",
    params:
        settings=settings_json(
            {"run_name": config["run_name"], "models": MODELS, "bootstrap": config["mcr"]["bootstrap"], "seed": config["seed"]}
        ),
        mcr=lambda wildcards, input: ",".join(input.mcr),
        sensitivity=lambda wildcards, input: ",".join(input.sensitivity),
    log:
        f"{OUT}/logs/mcr_sensitivity.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps mcr-sensitivity --settings {params.settings:q} --mcr {params.mcr}"
        " --sensitivity {params.sensitivity} --output {output} > {log} 2>&1"


rule plot_mcr_sensitivity:
    """Sensitivity scores across models and tasks; MCR against the flip strength per record."""
    input:
        mcr=expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
        sensitivity=expand(f"{OUT}/sweep/{{model}}/sensitivity.parquet", model=MODELS),
        correlations=f"{OUT}/tables/mcr_sensitivity.csv",
    output:
        scores_pdf=f"{OUT}/figures/sensitivity.pdf",
        scores_png=report(
            f"{OUT}/figures/sensitivity.png",
            caption="../report/figures/sensitivity.rst",
            category="Figures",
            labels={"figure": "sensitivity"},
        ),
        scatter_pdf=f"{OUT}/figures/mcr_vs_sensitivity.pdf",
        scatter_png=report(
            f"{OUT}/figures/mcr_vs_sensitivity.png",
            caption="../report/figures/mcr_vs_sensitivity.rst",
            category="Figures",
            labels={"figure": "mcr_vs_sensitivity"},
        ),
    params:
        settings=settings_json({"run_name": config["run_name"], "benchmark_label": BENCHMARK_LABEL, "models": MODELS}),
        mcr=lambda wildcards, input: ",".join(input.mcr),
        sensitivity=lambda wildcards, input: ",".join(input.sensitivity),
    log:
        f"{OUT}/logs/plot_mcr_sensitivity.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps plot-mcr-sensitivity --settings {params.settings:q} --mcr {params.mcr} --sensitivity {params.sensitivity}"
        " --correlations {input.correlations} --scores-figure {output.scores_pdf}"
        " --scatter-figure {output.scatter_pdf} > {log} 2>&1"


rule validate_mcr:
    """The MCR against the offline world's ground-truth evidence balance (world runs only)."""
    input:
        mcr=expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
        benchmark=f"{OUT}/benchmark",
        baselines=expand(f"{OUT}/baseline/{{model}}.parquet", model=MODELS),
    output:
        correlations=f"{OUT}/tables/mcr_validation.csv",
        bins=f"{OUT}/tables/mcr_vision_by_bin.csv",
    params:
        settings=settings_json(
            {"run_name": config["run_name"], "models": MODELS, "bootstrap": config["mcr"]["bootstrap"], "seed": config["seed"], "bins": 5}
        ),
        mcr=lambda wildcards, input: ",".join(input.mcr),
        baselines=lambda wildcards, input: ",".join(input.baselines),
    log:
        f"{OUT}/logs/validate_mcr.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps validate-mcr --settings {params.settings:q} --mcr {params.mcr} --benchmark-dir {input.benchmark}"
        " --baselines {params.baselines} --correlations-table {output.correlations} --bins-table {output.bins} > {log} 2>&1"


rule plot_mcr_validation:
    """MCR against the ground-truth balance, and the uninstructed vision share by MCR bin, per model."""
    input:
        mcr=expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
        benchmark=f"{OUT}/benchmark",
        correlations=f"{OUT}/tables/mcr_validation.csv",
        bins=f"{OUT}/tables/mcr_vision_by_bin.csv",
    output:
        pdf=f"{OUT}/figures/mcr_validation.pdf",
        png=report(
            f"{OUT}/figures/mcr_validation.png",
            caption="../report/figures/mcr_validation.rst",
            category="Figures",
            labels={"figure": "mcr_validation"},
        ),
    params:
        settings=settings_json({"run_name": config["run_name"], "benchmark_label": BENCHMARK_LABEL, "models": MODELS}),
        mcr=lambda wildcards, input: ",".join(input.mcr),
    log:
        f"{OUT}/logs/plot_mcr_validation.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps plot-mcr-validation --settings {params.settings:q} --mcr {params.mcr} --benchmark-dir {input.benchmark}"
        " --correlations {input.correlations} --bins {input.bins} --output {output.pdf} > {log} 2>&1"
