# The Modality Contribution Ratio: sharded per model over disjoint record ranges and gathered; its tables
# and figures are drawn by report.smk.
from amps.mcr.steps import GatherMcr, McrShard

MCR_SHARDS = config["mcr"]["shards"]


rule mcr_shard:
    """MCR of one shard of a model's records (all splits): KV-cache noise, functional entropy and Fisher term."""
    input:
        benchmark=f"{OUT}/benchmark",
        model=lambda wildcards: model_inputs(wildcards.model),
    output:
        f"{OUT}/mcr/{{model}}/shard-{{shard}}-of-{MCR_SHARDS}.parquet",
    log:
        f"{OUT}/logs/mcr_shard/{{model}}/shard-{{shard}}-of-{MCR_SHARDS}.log",
    benchmark:
        f"{OUT}/benchmarks/mcr_shard/{{model}}/shard-{{shard}}-of-{MCR_SHARDS}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../envs/amps.yaml"
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards: model_resources(wildcards.model, "mcr")["mem_mb"],
        runtime=lambda wildcards: model_resources(wildcards.model, "mcr")["runtime"],
        gpu=lambda wildcards: model_resources(wildcards.model, "mcr")["gpu"],
        # A memory budget, not a setting: estimates agree to float rounding whatever it is, so it reruns nothing.
        mcr_max_batch=config["mcr"]["max_batch"],
    params:
        settings=lambda wildcards: step_params(McrShard, model=wildcards.model, shard=wildcards.shard),
        model=lambda wildcards: model_location(wildcards.model),
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
    log:
        f"{OUT}/logs/gather_mcr/{{model}}.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(GatherMcr),
        shards=lambda wildcards, input: ",".join(input.shards),
    shell:
        "amps gather-mcr --settings {params.settings:q} --shards {params.shards}"
        " --benchmark-dir {input.benchmark} --output {output} > {log} 2>&1"
