"""Where researchers run it: the SLURM profile, the real SLURM executor plugin, and the HTML report.

* The paper config planned with the SLURM profile (dry run, no cluster): every job that runs a model
  asks for GPUs, sized to the model; tables and figures do not.
* The test config run through snakemake-executor-plugin-slurm against stand-in ``sbatch``, ``sacct``,
  ``squeue``, ``srun``, ``scontrol`` and ``sinfo`` (tests/slurm_standins, first on PATH): the whole
  DAG completes, and every recorded submission carries the planned GPUs, runtime and memory and the
  profile's partition.
* The report built from that run embeds every figure and table of the DAG and the rule graph.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from slurm_run import SLURM_PROFILE, parse_pairs, planned_jobs, snakemake

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Rules that run a model (the MCR shards among them): GPU jobs for pretrained models.
MODEL_RULES = {"evaluate_baseline", "collect_activations", "steering_sweep", "mcr_shard"}
#: Rules that draw figures, write tables or gather shards: small CPU jobs on every config.
CPU_ONLY_RULE = re.compile(r"^(plot_|summarize_|render_|gather_)")


@pytest.mark.dag
def test_paper_config_on_slurm_asks_gpus_for_model_jobs_only(tmp_path):
    overlay = tmp_path / "coco.yaml"
    overlay.write_text(yaml.safe_dump({"benchmark": {"mc2": {"coco_dir": str(tmp_path)}}}))
    result = snakemake(
        [
            "--profile",
            str(SLURM_PROFILE),
            "--directory",
            str(tmp_path),
            "-n",
            "--printshellcmds",
            "--configfile",
            str(REPO / "config" / "paper.yaml"),
            str(overlay),
        ]
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = planned_jobs(result.stdout)
    model_jobs = [job for job in jobs if job.runs_model]
    figure_and_table_jobs = [job for job in jobs if CPU_ONLY_RULE.match(job.rule)]
    assert MODEL_RULES <= {job.rule for job in model_jobs}
    assert {"plot_preference", "plot_sweep", "render_table"} <= {job.rule for job in figure_and_table_jobs}
    for job in model_jobs:
        assert int(job.resources["gpu"]) >= 1, job
    for job in figure_and_table_jobs:
        assert int(job.resources.get("gpu", 0)) == 0, job
    # Sized from the config: the 32B model needs two 80 GB GPUs, more memory and more time than a 7B.
    by_model = {(job.rule, dict(job.wildcards).get("model")): job.resources for job in model_jobs}
    for rule in ("evaluate_baseline", "steering_sweep"):
        large, small = by_model[(rule, "qwen2.5-vl-32b")], by_model[(rule, "qwen2.5-vl-7b")]
        assert (large["gpu"], small["gpu"]) == ("2", "1")
        assert int(large["mem_mb"]) > int(small["mem_mb"]) and int(large["runtime"]) > int(small["runtime"])


def target_jobs(wrap: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(rule, wildcards) of each job a submitted command runs (its ``--target-jobs``)."""
    words = shlex.split(wrap)
    start = words.index("--target-jobs") + 1
    targets = []
    for word in words[start:]:
        if word.startswith("--"):
            break
        rule, wildcards = word.split(":", 1)
        targets.append((rule, parse_pairs(wildcards, ",")))
    return targets


def option(args: list[str], name: str) -> str | None:
    """An sbatch option's value (``-p cpu`` or ``--gpus=1``)."""
    for index, arg in enumerate(args):
        if arg == name:
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


@pytest.mark.slow
@pytest.mark.dag
def test_test_config_runs_through_the_slurm_plugin(slurm_run):
    out = slurm_run.workdir / "results" / "test"
    for output in ("tables/baseline_scores.csv", "tables/sweep_scores.csv", "figures/preference.png", "figures/sweep.png"):
        assert (out / output).is_file(), output
    planned = {(job.rule, job.wildcards): job.resources for job in slurm_run.plan if job.rule != "all"}
    partitions = yaml.safe_load((SLURM_PROFILE / "partitions.yaml").read_text())["partitions"]
    gpu_partitions = {name for name, limits in partitions.items() if limits.get("max_gpu", 0) > 0}
    cpu_partitions = set(partitions) - gpu_partitions

    submitted, gpu_rules = [], set()
    for submission in slurm_run.submissions:
        args = submission["args"]
        jobs = target_jobs(option(args, "--wrap"))
        submitted.extend(jobs)
        gpus = option(args, "--gpus")
        if len(jobs) == 1:  # one job per submission: its requests are the planned ones
            resources = planned[jobs[0]]
            assert option(args, "-t") == resources["runtime"] and option(args, "--mem") == resources["mem_mb"], jobs
            assert gpus == (resources["gpu"] if int(resources.get("gpu", 0)) else None), jobs
        if gpus:
            gpu_rules.update(rule for rule, _ in jobs)
            assert option(args, "-p") in gpu_partitions, jobs
        else:
            assert option(args, "-p") in cpu_partitions, jobs
    # Every planned job ran, once; the model runs asked for the toy model's one GPU, nothing else did.
    assert sorted(submitted) == sorted(planned)
    model_rules = {job.rule for job in slurm_run.plan if job.runs_model}
    assert MODEL_RULES <= model_rules
    assert gpu_rules == model_rules
    # Tables and figures went in groups: fewer submissions than jobs.
    assert len(slurm_run.submissions) < len(planned)
    # Inside each allocation the job step asked srun for the same GPUs.
    gpu_jobs = {submission["job_id"] for submission in slurm_run.submissions if option(submission["args"], "--gpus")}
    for step in slurm_run.steps:
        assert ("--gpus=1" in step["args"]) == (step["job_id"] in gpu_jobs)


def report_results(report: Path) -> tuple[dict, str]:
    """The results embedded in a Snakemake HTML report, and its rule-graph specification."""
    page = report.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", page, re.S).group(1))
    rulegraph = re.search(r"var rulegraph_spec = (\{.*?\});\n", page, re.S).group(1)
    return results, rulegraph


@pytest.mark.slow
@pytest.mark.dag
def test_report_embeds_every_figure_and_table_with_captions(slurm_run):
    results, rulegraph = report_results(slurm_run.report)
    out = slurm_run.workdir / "results" / "test"
    by_file = {Path(path).relative_to("results/test").as_posix(): entry for path, entry in results.items()}

    figures = sorted(path.relative_to(out).as_posix() for path in out.glob("figures/*.png"))
    tables = sorted(path.stem for path in out.glob("tables/*.csv"))
    assert figures and tables
    for figure in figures:
        entry = by_file[figure]
        assert entry["mime_type"] == "image/png"
        # Embedded: the report is self-contained and shows exactly the figure the DAG drew.
        assert base64.b64decode(entry["data_uri"].split(",", 1)[1]) == (out / figure).read_bytes()
    for table in tables:
        entry = by_file[f"report/tables/{table}.html"]
        assert entry["mime_type"] == "text/html"
        page = base64.b64decode(entry["data_uri"].split(",", 1)[1]).decode()
        header = (out / "tables" / f"{table}.csv").read_text().splitlines()[0]
        assert all(f"<th>{column}</th>" in page for column in header.split(",")), table
    for path, entry in by_file.items():
        assert "test" in entry["caption"] and len(entry["caption"]) > 200, path  # says what and which run
    for rule in {job.rule for job in slurm_run.plan}:
        assert f'"{rule}"' in rulegraph, rule


# Appended to a copy of the report: the report's own app shows each figure in turn (as its "view"
# button does), and the page title says which ones the browser decoded.
SHOW_EVERY_FIGURE = """<script>
const figures = Object.keys(results).filter(path => results[path].mime_type === "image/png");
const shown = [];
function showNext(index) {
  if (index === figures.length) { document.title = "shown:" + shown.join(","); return; }
  const entry = results[figures[index]];
  app.setView({content: "img", contentPath: entry.data_uri, resultPath: figures[index]});
  setTimeout(() => {
    const image = [...document.images].find(img => img.src === entry.data_uri);
    if (image && image.complete && image.naturalWidth > 0) shown.push(figures[index]);
    showNext(index + 1);
  }, 300);
}
setTimeout(() => showNext(0), 500);
</script>
"""


@pytest.mark.slow
@pytest.mark.dag
def test_report_shows_every_figure_in_a_headless_browser(slurm_run, tmp_path):
    if CHROMIUM is None:
        # CI installs chromium (.ci/run): there the report is always checked in a real browser.
        if os.environ.get("CI"):
            pytest.fail("no chromium on this CI machine: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium here (apt-get install chromium)")
    report = slurm_run.report
    results, _ = report_results(report)
    page = tmp_path / "report.html"
    # Before the last </body>: the embedded libraries contain the string too.
    head, tail = report.read_text().rsplit("</body>", 1)
    page.write_text(head + SHOW_EVERY_FIGURE + "</body>" + tail)
    browse = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", "--virtual-time-budget=20000"]
    dom = subprocess.run([*browse, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180, check=True).stdout
    shown = re.search(r"<title>shown:(.*?)</title>", dom).group(1).split(",")
    figures = [path for path, entry in results.items() if entry["mime_type"] == "image/png"]
    assert figures and sorted(shown) == sorted(figures)
    # The screenshot a person would look at: the report's start page with the rule graph.
    screenshot = tmp_path / "report.png"
    subprocess.run([*browse, f"--screenshot={screenshot}", report.as_uri()], capture_output=True, timeout=180, check=True)
    assert screenshot.stat().st_size > 10_000
