"""A setting's edit reruns only what reads it: dry runs over the completed test-config run with one key edited.

Each case writes an edited copy of config/test.yaml and asks Snakemake what it would run. The expected plan is
the dry run of the unedited config forced to rerun the rules that read the key (``--forcerun``: those rules and
everything downstream), so no job count is written down twice. Dry runs only: the shared run is never touched.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from slurm_run import snakemake

pytestmark = [pytest.mark.slow, pytest.mark.dag]

#: Rules whose jobs run a model: none of them may run for a table or figure key.
MODEL_RULES = {
    "train_toy_model",
    "evaluate_baseline",
    "collect_activations",
    "steering_sweep",
    "mcr_shard",
    "train_steerers",
    "select_amps",
    "steered_eval",
    "ablate_amps",
}


def planned(result) -> dict[str, int]:
    """The dry run's job counts per rule (its "Job stats" table); empty when nothing is to be done."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    if "Job stats" not in output:
        assert "Nothing to be done" in output, output[-3000:]
        return {}
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run(run, tmp_path: Path, changes: dict | None = None, *extra: str) -> dict[str, int]:
    """What the completed run would rerun with ``changes`` made to its config (the run's overlay still applied)."""
    base, *overlays = run.configfiles
    config = yaml.safe_load(Path(base).read_text())
    edited = copy.deepcopy(config)
    for dotted, value in (changes or {}).items():
        *parents, key = dotted.split(".")
        section = edited
        for parent in parents:
            section = section.setdefault(parent, {})
        section[key] = value
    path = tmp_path / f"edited-{len(list(tmp_path.glob('edited-*')))}.yaml"
    path.write_text(yaml.safe_dump(edited))
    return planned(snakemake(["--directory", str(run.workdir), "-n", "--configfile", str(path), *overlays, *extra]))


def forced(run, tmp_path: Path, rules: list[str]) -> dict[str, int]:
    """What the unedited config plans when ``rules`` are forced to rerun: they and everything downstream."""
    return dry_run(run, tmp_path, None, "--forcerun", *rules)


def test_the_completed_run_is_up_to_date(slurm_run, tmp_path):
    assert dry_run(slurm_run, tmp_path) == {}


@pytest.mark.parametrize(
    ("key", "value", "readers"),
    [
        ("evaluation.checks.max_other", 0.1, ["summarize_baseline"]),
        ("amps.collapse_budgets", [0.02, 0.05], ["summarize_amps"]),
        ("mcr.bootstrap", 200, ["mcr_sensitivity", "validate_mcr"]),
        ("amps.examples", 3, ["plot_examples"]),
    ],
)
def test_a_table_or_figure_key_reruns_no_model_job(slurm_run, tmp_path, key, value, readers):
    plan = dry_run(slurm_run, tmp_path, {key: value})
    assert plan == forced(slurm_run, tmp_path, readers)
    assert plan and not MODEL_RULES & set(plan), plan


def test_an_estimator_key_reruns_the_mcr_and_what_depends_on_it_only(slurm_run, tmp_path):
    plan = dry_run(slurm_run, tmp_path, {"mcr.sigma": 0.3})
    assert plan == forced(slurm_run, tmp_path, ["mcr_shard"])
    assert plan["mcr_shard"] == 2 and plan["ablate_amps"] == 1
    assert not {
        "prepare_benchmark",
        "train_toy_model",
        "evaluate_baseline",
        "collect_activations",
        "steering_sweep",
        "summarize_baseline",
        "summarize_sweep",
        "plot_preference",
        "plot_sweep",
    } & set(plan), plan


@pytest.mark.parametrize(("key", "value"), [("mcr.max_batch", 8), ("compute.seconds_per_prompt_per_billion", 0.02)])
def test_a_resource_key_reruns_nothing(slurm_run, tmp_path, key, value):
    assert dry_run(slurm_run, tmp_path, {key: value}) == {}
