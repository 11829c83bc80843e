"""The README's "Use it from Python" example runs, on the test config's completed run instead of make run's: it
measures the run's own MCR for a record, the trained module changes generated answers, and the answers score.
So the example cannot rot: a renamed function, a changed folder or a broken hook fails here."""

from __future__ import annotations

import re

import pytest

from amps.core.config import load_config

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.dag]

#: The example's first line: make run's folder, one of its models, and config/config.yaml's seed and mcr.samples.
SETTINGS = 'RUN, MODEL, SEED, SAMPLES = "results/offline-default", "toy-s", 20261124, 32'


def readme_example() -> str:
    """The one Python block of the README's "Use it from Python" section."""
    section = (REPO / "README.md").read_text().split("\n## Use it from Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold one Python example"
    return blocks[0]


def test_the_examples_settings_are_the_default_runs():
    config = load_config(REPO / "config" / "config.yaml", check_paths=False)
    assert SETTINGS in readme_example()
    assert (config["run_name"], config["seed"], config["mcr"]["samples"]) == ("offline-default", 20261124, 32)
    assert "toy-s" in config["models"]


def test_the_example_runs_on_a_completed_run(slurm_run, capsys):
    config = load_config(REPO / "config" / "test.yaml", check_paths=False)
    run = slurm_run.workdir / "results" / config["run_name"]
    model_name = sorted(config["models"])[0]
    ours = f"RUN, MODEL, SEED, SAMPLES = {str(run)!r}, {model_name!r}, {config['seed']}, {config['mcr']['samples']}"
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example().replace(SETTINGS, ours), "README.md", "exec"), namespace)

    # The MCR is the number the run's MCR shard wrote for the same record and seed.
    estimate, run_mcr = namespace["estimate"], namespace["run_mcr"]
    assert estimate.mcr == run_mcr and estimate.se > 0 and estimate.problem == ""
    # The module moved answers inside the block, and left nothing behind: unsteered again after it.
    records, unsteered, steered = namespace["records"], namespace["unsteered"], namespace["steered"]
    assert len(steered) == len(unsteered) == len(records) == 8
    assert namespace["moved"] > 0 and steered != unsteered
    model, inputs = namespace["model"], namespace["inputs"]
    again = namespace["generated"](model.model.generate(**inputs, max_new_tokens=4, do_sample=False))
    assert again == unsteered
    printed = capsys.readouterr().out
    assert f"(the run's: {run_mcr:.3f})" in printed and f"changed {namespace['moved']} of 8 answers" in printed
    assert "unsteered {'n': 8, 's_vision'" in printed and "steered {'n': 8, 's_vision'" in printed
