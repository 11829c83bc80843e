# Report pages: every results table of the main job as an HTML page, which the report shows inline
# (it offers a bare CSV only as a download). Figures are marked for the report by their own rules.
from pathlib import Path

REPORT_TABLES = sorted(
    Path(path).stem for path in final_outputs() if path.startswith(f"{OUT}/tables/") and path.endswith(".csv")
)
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
    params:
        settings=lambda wildcards: settings_json(
            {"run_name": config["run_name"], "table": wildcards.table, "benchmark_label": BENCHMARK_LABEL}
        ),
        # What the table shows, for the report's caption (one file per table; a missing one stops the run).
        description=lambda wildcards: (TABLE_CAPTIONS / f"{wildcards.table}.rst").read_text(),
    log:
        f"{OUT}/logs/render_table/{{table}}.log",
    wildcard_constraints:
        table="[A-Za-z0-9_-]+",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/amps.yaml"
    shell:
        "amps render-table --settings {params.settings:q} --table {input} --output {output} > {log} 2>&1"
