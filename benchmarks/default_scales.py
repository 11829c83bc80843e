"""What the benchmarks share: the toy scales of the offline default, read from this checkout's config/config.yaml
(so benchmarks follow it), and the command line of the generation timings."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from amps.models.toy_plan import ToyArchitecture

CONFIG = Path(__file__).resolve().parent.parent / "config" / "config.yaml"


def default_architecture(model: str) -> ToyArchitecture:
    """The architecture of toy scale ``model`` in config/config.yaml."""
    with open(CONFIG) as handle:
        return ToyArchitecture(**yaml.safe_load(handle)["models"][model]["architecture"])


def generation_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """The options every generation timing takes: batch size, new tokens, repeats, CPU threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser


def parse_generation_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, refuse counts below one by their flag's name, and set torch's CPU threads."""
    args = parser.parse_args(argv)
    for flag in ("batch_size", "new_tokens", "repeats", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    torch.set_num_threads(args.threads)
    return args
