# Tables, figures and report pages: every table and figure of the run from the stages' outputs, and each table
# as an HTML page for the report (it shows HTML inline but offers a bare CSV only as a download). Table and
# figure jobs import neither torch nor transformers; each reads only its own settings.
from pathlib import Path

from amps.report.figure_steps import PlotExamples, PlotMcrSensitivity, PlotMcrValidation, PlotPreference, PlotSweep, PlotTradeoff
from amps.report.steps import (
    McrSensitivity,
    RenderTable,
    SummarizeAmps,
    SummarizeBaseline,
    SummarizeMcr,
    SummarizeSweep,
    ValidateMcr,
)
from amps.vocabulary import ABLATION_FAMILIES, DIRECTIONS, METHODS

# The examples figure shows the ablation model's answers in the ablations' direction.
ABLATION_DIRECTION = config["amps"]["ablation"]["direction"]


rule summarize_baseline:
    """Scores per model, condition, task and view; the toy-model behaviour checks."""
    input:
        answers=expand(f"{OUT}/baseline/{{model}}.parquet", model=MODELS),
        benchmark=f"{OUT}/benchmark",
    output:
        scores=f"{OUT}/tables/baseline_scores.csv",
        checks=f"{OUT}/tables/toy_model_checks.csv",
    log:
        f"{OUT}/logs/summarize_baseline.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(SummarizeBaseline),
        answers=lambda wildcards, input: ",".join(input.answers),
    shell:
        "amps summarize-baseline --settings {params.settings:q} --answers {params.answers}"
        " --benchmark-dir {input.benchmark} --scores {output.scores} --checks {output.checks} > {log} 2>&1"


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
    log:
        f"{OUT}/logs/plot_preference.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(PlotPreference),
    shell:
        "amps plot-preference --settings {params.settings:q} --scores {input} --output {output.pdf} > {log} 2>&1"


rule summarize_sweep:
    """Sweep scores per model, direction, strength, task and view, with letter-bias columns."""
    input:
        answers=expand(f"{OUT}/sweep/{{model}}/answers.parquet", model=MODELS),
        records=expand(f"{OUT}/sweep/{{model}}/records.parquet", model=MODELS),
    output:
        f"{OUT}/tables/sweep_scores.csv",
    log:
        f"{OUT}/logs/summarize_sweep.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(SummarizeSweep),
        answers=lambda wildcards, input: ",".join(input.answers),
        records=lambda wildcards, input: ",".join(input.records),
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
    log:
        f"{OUT}/logs/plot_sweep.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(PlotSweep),
    shell:
        "amps plot-sweep --settings {params.settings:q} --scores {input} --output {output.pdf} > {log} 2>&1"


rule summarize_mcr:
    """MCR summary per model, split and task: mean scores, MCR mean, median and spread, records with problems."""
    input:
        expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
    output:
        f"{OUT}/tables/mcr_summary.csv",
    log:
        f"{OUT}/logs/summarize_mcr.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(SummarizeMcr),
        tables=lambda wildcards, input: ",".join(input),
    shell:
        "amps summarize-mcr --settings {params.settings:q} --tables {params.tables} --output {output} > {log} 2>&1"


rule mcr_sensitivity:
    """Spearman correlation of MCR with the sweep's per-sample sensitivity, per model, task and direction."""
    input:
        mcr=expand(f"{OUT}/mcr/{{model}}.parquet", model=MODELS),
        sensitivity=expand(f"{OUT}/sweep/{{model}}/sensitivity.parquet", model=MODELS),
    output:
        f"{OUT}/tables/mcr_sensitivity.csv",
    log:
        f"{OUT}/logs/mcr_sensitivity.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(McrSensitivity),
        mcr=lambda wildcards, input: ",".join(input.mcr),
        sensitivity=lambda wildcards, input: ",".join(input.sensitivity),
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
    log:
        f"{OUT}/logs/plot_mcr_sensitivity.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(PlotMcrSensitivity),
        mcr=lambda wildcards, input: ",".join(input.mcr),
        sensitivity=lambda wildcards, input: ",".join(input.sensitivity),
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
    log:
        f"{OUT}/logs/validate_mcr.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(ValidateMcr),
        mcr=lambda wildcards, input: ",".join(input.mcr),
        baselines=lambda wildcards, input: ",".join(input.baselines),
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
    log:
        f"{OUT}/logs/plot_mcr_validation.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(PlotMcrValidation),
        mcr=lambda wildcards, input: ",".join(input.mcr),
    shell:
        "amps plot-mcr-validation --settings {params.settings:q} --mcr {params.mcr} --benchmark-dir {input.benchmark}"
        " --correlations {input.correlations} --bins {input.bins} --output {output.pdf} > {log} 2>&1"


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
    log:
        f"{OUT}/logs/summarize_amps.log",
    benchmark:
        f"{OUT}/benchmarks/summarize_amps.tsv"
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=step_params(SummarizeAmps),
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
    log:
        f"{OUT}/logs/plot_tradeoff.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(PlotTradeoff),
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
    log:
        f"{OUT}/logs/plot_examples.log",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=step_params(PlotExamples),
    shell:
        "amps plot-examples --settings {params.settings:q} --mean-answers {input.mean} --amps-answers {input.amps}"
        " --benchmark-dir {input.benchmark} --output {output.pdf} > {log} 2>&1"


REPORT_TABLES = sorted(Path(path).stem for path in final_outputs() if path.startswith(f"{OUT}/tables/") and path.endswith(".csv"))
TABLE_CAPTIONS = Path(workflow.basedir) / "workflow" / "report" / "tables"


rule render_table:
    """One results table as an HTML page, marked for the report with its caption."""
    input:
        f"{OUT}/tables/{{table}}.csv",
    output:
        report(
            f"{OUT}/report/tables/{{table}}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        f"{OUT}/logs/render_table/{{table}}.log",
    wildcard_constraints:
        table="[A-Za-z0-9_-]+",
    conda:
        "../envs/amps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=lambda wildcards: step_params(RenderTable, table=wildcards.table),
        # What the table shows, for the report's caption (one file per table; a missing one stops the run).
        description=lambda wildcards: (TABLE_CAPTIONS / f"{wildcards.table}.rst").read_text(),
    shell:
        "amps render-table --settings {params.settings:q} --table {input} --output {output} > {log} 2>&1"
