"""The ``amps`` command line: one subcommand per pipeline step, named after its rule and its function.

Rule ``select_amps`` runs ``amps select-amps``, which calls :func:`amps.method.steps.select_amps` with its
typed settings (:class:`amps.method.steps.SelectAmps`, the class beside it) rebuilt from ``--settings``: the
JSON that the rule's ``params:`` built from the validated config, so a changed setting reruns the step.
Each flag is a string option named after one of the function's parameters. Imports are lazy so
``amps --help`` stays fast and a step loads only what it uses. Subcommands without a rule (tools) take no
settings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Callable

from amps.core.devices import job_devices

#: subcommand -> (module, help, [(flag, help), ...]); the function is the subcommand's name with underscores.
COMMANDS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    # workflow/rules/data.smk
    "prepare-benchmark": (
        "amps.data.steps",
        "build the benchmark records (conflict world or MC²), images and splits",
        [("--output-dir", "benchmark folder to write")],
    ),
    # workflow/rules/models.smk
    "train-toy-model": (
        "amps.models.steps",
        "train one toy MLLM and save it with save_pretrained",
        [("--output-dir", "model folder to write")],
    ),
    # workflow/rules/baseline.smk
    "evaluate-baseline": (
        "amps.baseline.steps",
        "ask every test record under no/text/image instruction in both option orders",
        [("--benchmark-dir", "benchmark folder"), ("--model", "model folder or hub id"), ("--output", "answers table")],
    ),
    # workflow/rules/steering.smk
    "collect-activations": (
        "amps.steering.steps",
        "hidden states of every record under the plain, image and text prompts; difference vectors",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--model", "model folder or hub id"),
            ("--output", "activations file (.safetensors)"),
            ("--index", "JSON index of the activations file"),
        ],
    ),
    "steering-sweep": (
        "amps.steering.steps",
        "mean steering at each strength of the grid, both directions, on the test split",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--model", "model folder or hub id"),
            ("--activations", "activations file (.safetensors, index beside it)"),
            ("--answers", "answers table"),
            ("--records", "per-record table (each order's choice, agreement)"),
            ("--sensitivity-table", "per-sample flip and collapse strengths"),
        ],
    ),
    # workflow/rules/mcr.smk
    "mcr-shard": (
        "amps.mcr.steps",
        "the Modality Contribution Ratio of one shard of the benchmark's records (every split)",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--model", "model folder or hub id"),
            ("--output", "shard table (.parquet)"),
            ("--max-batch", "perturbed cache copies per batched forward at most (mcr.max_batch, the memory budget)"),
        ],
    ),
    "gather-mcr": (
        "amps.mcr.steps",
        "merge a model's MCR shards into one table; fail on a missing, duplicated or overlapping record",
        [
            ("--shards", "comma-separated shard tables, in shard order"),
            ("--benchmark-dir", "benchmark folder"),
            ("--output", "MCR table"),
        ],
    ),
    # workflow/rules/method.smk
    "train-steerers": (
        "amps.method.steps",
        "train the Learn-to-Steer modules and every candidate AMPS module of one model, each direction and seed",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--activations", "activations file (.safetensors, index beside it)"),
            ("--mcr", "the model's MCR table"),
            ("--output-dir", "folder of the modules (safetensors + JSON)"),
            ("--summary", "training losses (CSV)"),
        ],
    ),
    "select-amps": (
        "amps.method.steps",
        "each method's strength, and AMPS's sign of beta, beta and r_anchor, from its own validation outputs",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--model", "model folder or hub id"),
            ("--activations", "activations file (.safetensors, index beside it)"),
            ("--mcr", "the model's MCR table"),
            ("--steerers", "folder of the trained modules"),
            ("--output", "validation choice (JSON)"),
            ("--scan", "every scanned validation point (CSV)"),
        ],
    ),
    "steered-eval": (
        "amps.method.steps",
        "every steering method's measured strength curve in both directions on the test split (and the agreeing control)",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--model", "model folder or hub id"),
            ("--activations", "activations file (.safetensors, index beside it)"),
            ("--mcr", "the model's MCR table"),
            ("--selection", "validation choice (JSON)"),
            ("--steerers", "folder of the trained modules"),
            ("--answers-dir", "folder of the answers tables (<method>-<direction>.parquet)"),
        ],
    ),
    "ablate-amps": (
        "amps.method.steps",
        "every family of AMPS ablations on the ablation model (real runs on the test split)",
        [
            ("--benchmark-dir", "benchmark folder"),
            ("--model", "model folder or hub id"),
            ("--activations", "activations file (.safetensors, index beside it)"),
            ("--mcr", "the model's MCR table"),
            ("--selection", "validation choice (JSON)"),
            ("--output-dir", "folder of the answers tables (<family>.parquet)"),
            ("--max-batch", "perturbed cache copies per batched forward of the MCR re-estimates at most (mcr.max_batch)"),
        ],
    ),
    # workflow/rules/report.smk
    "summarize-baseline": (
        "amps.report.steps",
        "score the baseline answers of all models and check the toy models' behaviour",
        [
            ("--answers", "comma-separated answers tables"),
            ("--benchmark-dir", "benchmark folder"),
            ("--scores", "scores CSV"),
            ("--checks", "checks CSV"),
        ],
    ),
    "plot-preference": (
        "amps.report.figure_steps",
        "stacked S_vision / S_other / S_text bars per model with the vision ratio",
        [("--scores", "scores CSV"), ("--output", "figure path (.pdf; a .png is written beside it)")],
    ),
    "summarize-sweep": (
        "amps.report.steps",
        "score the sweep answers of all models per direction, strength, task and view",
        [
            ("--answers", "comma-separated answers tables"),
            ("--records", "comma-separated per-record tables"),
            ("--scores", "scores CSV"),
        ],
    ),
    "plot-sweep": (
        "amps.report.figure_steps",
        "vision ratio and S_other against the steering strength, one panel per model",
        [("--scores", "sweep scores CSV"), ("--output", "figure path (.pdf; a .png is written beside it)")],
    ),
    "summarize-mcr": (
        "amps.report.steps",
        "MCR summary per model, split and task",
        [("--tables", "comma-separated MCR tables"), ("--output", "summary CSV")],
    ),
    "mcr-sensitivity": (
        "amps.report.steps",
        "Spearman correlation of MCR with per-sample steering sensitivity, with bootstrap intervals",
        [
            ("--mcr", "comma-separated MCR tables"),
            ("--sensitivity", "comma-separated sensitivity tables"),
            ("--output", "correlations CSV"),
        ],
    ),
    "plot-mcr-sensitivity": (
        "amps.report.figure_steps",
        "sensitivity scores across models and tasks, and MCR against sensitivity",
        [
            ("--mcr", "comma-separated MCR tables"),
            ("--sensitivity", "comma-separated sensitivity tables"),
            ("--correlations", "correlations CSV"),
            ("--scores-figure", "sensitivity figure path (.pdf; a .png is written beside it)"),
            ("--scatter-figure", "MCR-against-sensitivity figure path (.pdf; a .png is written beside it)"),
        ],
    ),
    "validate-mcr": (
        "amps.report.steps",
        "the MCR against the offline world's ground-truth evidence balance: correlations and vision share by MCR bin",
        [
            ("--mcr", "comma-separated MCR tables"),
            ("--benchmark-dir", "benchmark folder"),
            ("--baselines", "comma-separated baseline answers tables"),
            ("--correlations-table", "correlations CSV"),
            ("--bins-table", "vision share by MCR bin CSV"),
        ],
    ),
    "plot-mcr-validation": (
        "amps.report.figure_steps",
        "the MCR against the ground-truth balance, and the vision share by MCR bin, per model",
        [
            ("--mcr", "comma-separated MCR tables"),
            ("--benchmark-dir", "benchmark folder"),
            ("--correlations", "correlations CSV"),
            ("--bins", "vision share by MCR bin CSV"),
            ("--output", "figure path (.pdf; a .png is written beside it)"),
        ],
    ),
    "summarize-amps": (
        "amps.report.steps",
        "AMPS tables (scores, main, scales, matched shift, collapse budgets, selection, ablations) as CSV, Markdown and LaTeX",
        [
            ("--answers", "comma-separated steered answers tables"),
            ("--baselines", "comma-separated baseline answers tables"),
            ("--selections", "comma-separated validation choices, in the order of the settings' models"),
            ("--ablations", "comma-separated ablation answers tables"),
            ("--scores", "scores CSV"),
            ("--main", "main table CSV"),
            ("--scale", "table across model scales CSV"),
            ("--matched", "matched-shift table CSV"),
            ("--budget", "collapse-budget table CSV"),
            ("--selection", "validation choices table CSV"),
            ("--ablation", "ablation table CSV"),
        ],
    ),
    "plot-tradeoff": (
        "amps.report.figure_steps",
        "shift against collapse: the mean-steering curve and every other method",
        [("--scores", "AMPS scores CSV"), ("--output", "figure path (.pdf; a .png is written beside it)")],
    ),
    "plot-examples": (
        "amps.report.figure_steps",
        "a few test records with their answers under strong mean steering and under AMPS",
        [
            ("--mean-answers", "mean-steering answers table"),
            ("--amps-answers", "AMPS answers table"),
            ("--benchmark-dir", "benchmark folder"),
            ("--output", "figure path (.pdf; a .png is written beside it)"),
        ],
    ),
    "render-table": (
        "amps.report.steps",
        "a results table as an HTML page for the Snakemake report",
        [("--table", "table CSV"), ("--output", "HTML page")],
    ),
    # tools without a rule (no settings)
    "show-config": (
        "amps.core.config",
        "validate a config file against the schema and print the filled config",
        [("--config", "config YAML file")],
    ),
    "plan-resources": (
        "amps.core.plan",
        "print every model's GPUs, memory and expected time per stage for a config file",
        [("--config", "config YAML file")],
    ),
    "config-docs": (
        "amps.core.config_docs",
        "write the reference of every config key (config/README.md) from the schema and the keys each step reads",
        [("--output", "Markdown file to write")],
    ),
}


def is_tool(module: str) -> bool:
    """Whether a subcommand is a tool without a rule: those live in :mod:`amps.core` and take no settings."""
    return module.startswith("amps.core.")


def function_name(command: str) -> str:
    """The function behind a subcommand: its name with underscores (``select-amps`` → ``select_amps``)."""
    return command.replace("-", "_")


def resolve(command: str) -> Callable:
    """The function behind a subcommand."""
    return getattr(importlib.import_module(COMMANDS[command][0]), function_name(command))


def settings_class(command: str) -> type:
    """A step's typed settings: the class named after its function, beside it (``select-amps`` → ``SelectAmps``)."""
    name = "".join(part.title() for part in command.split("-"))
    return getattr(importlib.import_module(COMMANDS[command][0]), name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amps", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text, flags) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if not is_tool(module):
            sub.add_argument("--settings", default="{}", help="JSON object of the step's settings (its rule builds it)")
        for flag, flag_help in flags:
            sub.add_argument(flag, required=True, help=flag_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``amps`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _module, _help, flags = COMMANDS[args.command]
    kwargs = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_")) for flag, _ in flags}
    if is_tool(COMMANDS[args.command][0]):
        resolve(args.command)(**kwargs)
        return 0
    step = settings_class(args.command)
    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError as error:
        raise SystemExit(f"amps {args.command}: --settings is not valid JSON: {error}") from None
    # Pin the step to its own GPUs before its function imports torch (local runs; see amps.core.devices).
    with job_devices(settings):
        resolve(args.command)(settings=step.from_params(settings), **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
