"""The ``amps`` command line: one subcommand per pipeline step, each calling one public function.

Snakemake rules call these subcommands; settings arrive as one JSON object (``--settings``) built
from the validated config in the rule's ``params:``, so a changed setting reruns the step.
Imports are lazy so ``amps --help`` stays fast and a step loads only what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Callable

#: subcommand -> (module, function, help, [(flag, help), ...]). Every flag is a string option.
COMMANDS: dict[str, tuple[str, str, str, list[tuple[str, str]]]] = {
    "validate-config": (
        "amps.config",
        "validate_config_file",
        "validate a config file against the schema and print the filled config",
        [("--config", "config YAML file")],
    ),
    "prepare-benchmark": (
        "amps.data",
        "prepare_benchmark",
        "build the benchmark records (conflict world or MC²), images and splits",
        [("--output-dir", "benchmark folder to write")],
    ),
    "train-toy": (
        "amps.toy",
        "train_toy_model_cli",
        "train one toy MLLM and save it with save_pretrained",
        [("--output-dir", "model folder to write")],
    ),
    "evaluate-baseline": (
        "amps.evaluation",
        "evaluate_baseline",
        "ask every test record under no/text/image instruction in both option orders",
        [("--benchmark-dir", "benchmark folder"), ("--model", "model folder or hub id"), ("--output", "answers table")],
    ),
    "summarize-baseline": (
        "amps.evaluation",
        "summarize_baseline",
        "score the baseline answers of all models and check the toy models' behaviour",
        [("--answers", "comma-separated answers tables"), ("--scores", "scores CSV"), ("--checks", "checks CSV")],
    ),
    "plot-preference": (
        "amps.figures",
        "plot_preference",
        "stacked S_vision / S_other / S_text bars per model with the vision ratio",
        [("--scores", "scores CSV"), ("--output", "figure path (.pdf; a .png is written beside it)")],
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amps", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_module, _function, help_text, flags) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--settings", default="{}", help="JSON object of settings from the config")
        for flag, flag_help in flags:
            sub.add_argument(flag, required=True, help=flag_help)
    return parser


def resolve(command: str) -> Callable:
    """The function behind a subcommand."""
    module, function, _help, _flags = COMMANDS[command]
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``amps`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError as error:
        raise SystemExit(f"amps {args.command}: --settings is not valid JSON: {error}") from None
    _module, _function, _help, flags = COMMANDS[args.command]
    kwargs = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_")) for flag, _ in flags}
    resolve(args.command)(settings=settings, **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
