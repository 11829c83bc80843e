# amps: Adaptive Modality Preference Steering. This file only wires; the `amps` package computes.
# Run: make run (offline default) or `snakemake --cores N --configfile config/paper.yaml`.
# The default config (config/config.yaml) comes from profiles/default/config.yaml.
import re

from amps.core.config import validate_config

# Schema and semantic checks run before any job is planned; errors name the bad key.
validate_config(config)


# `snakemake --report FILE` (make run builds it): every figure and table with its caption, the rule graph.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    model="|".join(re.escape(name) for name in MODELS),


include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/steering.smk"
include: "workflow/rules/mcr.smk"
include: "workflow/rules/method.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        expand(f"{OUT}/report/tables/{{table}}.html", table=REPORT_TABLES),
