# The benchmark: records (conflict world or MC²), their images and the splits.
from amps.data.steps import PrepareBenchmark


rule prepare_benchmark:
    """Benchmark records (conflict world or MC²), their images and the steer-train/validation/test split."""
    output:
        directory(f"{OUT}/benchmark"),
    log:
        f"{OUT}/logs/prepare_benchmark.log",
    benchmark:
        f"{OUT}/benchmarks/prepare_benchmark.tsv"
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=step_params(PrepareBenchmark),
    shell:
        "amps prepare-benchmark --settings {params.settings:q} --output-dir {output} > {log} 2>&1"
