"""MC² loading: the real 2,000 records, validation of bad records and images, hub download, splits, parser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from PIL import Image

from amps.data import mc2, prompts
from amps.data.benchmark import Benchmark, Mc2Source, Splits, assign_splits
from amps.data.steps import PrepareBenchmark, prepare_benchmark
from amps.vocabulary import MC2_KEYS, ORDERS

from conftest import MC2_DIR, REPO
from fake_mc2 import synthetic_records, write_coco_folder, write_coco_image, write_records

MC2_FILE = MC2_DIR / "evaluate_final.json"
MC2_TASKS = (
    "activity_recognition",
    "attribute",
    "color",
    "counting",
    "object_recognition",
    "positional_reasoning",
    "sentiment_understanding",
    "sport_recognition",
)
needs_mc2 = pytest.mark.skipif(not MC2_DIR.is_dir(), reason=f"MC² records not present at {MC2_DIR}")


def mc2_settings(records: Path | str, coco_dir: Path, **overrides) -> Mc2Source:
    """The MC² source of ``records`` (a JSON file or "hub") and ``coco_dir``, with the config's defaults."""
    source = Mc2Source(str(records), "271754echo/MC2", "evaluate_final.json", str(coco_dir), "error", None)
    return replace(source, **overrides)


@pytest.fixture()
def small_mc2(tmp_path) -> tuple[Path, Path, list[dict]]:
    """Twelve good synthetic records (two tasks) in MC²'s JSON format, each with its COCO image."""
    records = synthetic_records(["color", "counting"], per_task=6)
    coco = write_coco_folder(tmp_path / "coco", records)
    return write_records(tmp_path / "evaluate_final.json", records), coco, records


# ----------------------------------------------------------------------------- the real records


@pytest.fixture(scope="module")
def real_records() -> list[dict]:
    with open(MC2_FILE) as handle:
        return json.load(handle)


@needs_mc2
def test_all_2000_real_records_load_with_images_and_split_by_task(real_records, tmp_path):
    """Every shared record passes validation and joins its (placeholder) COCO image; 8 tasks x 250."""
    assert len(real_records) == 2000
    ids = sorted({record["image_id"] for record in real_records})
    for number, image_id in enumerate(ids):
        write_coco_image(tmp_path / "coco", image_id, ("train2014", "val2014")[number % 2], size=(8, 8))
    output = tmp_path / "benchmark"
    settings = PrepareBenchmark("mc2", None, mc2_settings(MC2_FILE, tmp_path / "coco"), Splits(0.4, 0.2, 0.4), seed=11)
    prepare_benchmark(settings, str(output))
    records = Benchmark(output).records
    assert len(records) == 2000
    assert Counter(records["task"]) == {task: 250 for task in MC2_TASKS}
    assert records[list(MC2_KEYS)].to_dict("records") == real_records
    per_task = records.groupby(["task", "split"]).size().unstack()
    split_sizes = {"steer_train": 100, "test": 100, "validation": 50}  # 0.4 / 0.2 / 0.4 of 250
    assert per_task.to_dict("index") == {task: split_sizes for task in MC2_TASKS}
    dataset = datasets.load_from_disk(str(output))
    assert dataset.num_rows == 2000 and dataset[1999]["image"].size == (8, 8)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["records"] == 2000 and summary["skipped"] == []


def _expected_letter_cases(option_a: str, option_b: str) -> list[tuple[str, str]]:
    """Answers a model may give, with the letter each must parse to."""
    cases = []
    for letter, option in (("A", option_a), ("B", option_b)):
        cases += [
            (letter, letter),
            (f"{letter}.", letter),
            (f"({letter})", letter),
            (f"Answer: {letter}", letter),
            (f"{letter}. {option}", letter),
            (option, letter),
            (option.capitalize() + ".", letter),
            (f"The answer is {option}", letter),
        ]
    return cases


@needs_mc2
def test_parser_reads_every_real_option_pair_in_both_orders(real_records):
    """All 2,000 records; the nested option pairs have their own test in test_prompts.py."""
    misparsed = []
    for record in real_records:
        for order in ORDERS:
            option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
            for answer, letter in _expected_letter_cases(option_a, option_b):
                if prompts.parse_letter(answer, option_a, option_b) != letter:
                    misparsed.append((answer, option_a, option_b))
            chosen = prompts.classify(option_a, record, order)
            assert chosen == ("vision" if order == "vision_first" else "text")
    assert misparsed == []


# ----------------------------------------------------------------------------- validation


def test_good_records_load_through_datasets_in_file_order_with_absolute_image_paths(small_mc2, monkeypatch):
    path, coco, records = small_mc2

    def not_needed(path):
        raise AssertionError(f"a good file is read by datasets, not as plain JSON ({path})")

    monkeypatch.setattr(mc2, "read_raw_records", not_needed)
    frame, skipped = mc2.load_mc2_records(mc2_settings(path, coco))
    assert skipped == []
    assert list(frame.columns) == [*MC2_KEYS, "image_path"]
    assert frame[list(MC2_KEYS)].to_dict("records") == records
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["image_path"])
    assert frame["image_path"].str.contains("train2014").sum() == 6  # the fixture alternates the folders


def test_train2014_is_preferred_over_val2014(small_mc2):
    path, coco, records = small_mc2
    image_id = records[1]["image_id"]  # written to val2014 by the fixture
    train_copy = write_coco_image(coco, image_id, "train2014")
    frame, _ = mc2.load_mc2_records(mc2_settings(path, coco))
    assert frame.loc[1, "image_path"] == str(train_copy.resolve())


def _bad_records(records: list[dict]) -> tuple[list, dict[int, str]]:
    """Records with one defect each at known positions, and the reason each must report."""
    bad = [dict(record) for record in records]
    del bad[0]["context"]
    bad[2]["answer_text"] = 7
    bad[3]["answer_vision"] = "  "
    bad[4]["answer_text"] = bad[4]["answer_vision"].upper()
    bad[5]["image_id"] = "COCO-12"
    bad[6] = ["not", "a", "record"]
    return bad, {
        0: "missing key(s) context",
        2: "non-string value(s) for answer_text",
        3: "empty value(s) for answer_vision",
        4: "answer_vision and answer_text are the same",
        5: "is not a COCO image number",
        6: "not an object but a list",
    }


def test_bad_records_are_an_error_naming_how_many_and_which(small_mc2, tmp_path):
    _, coco, records = small_mc2
    bad, reasons = _bad_records(records)
    path = write_records(tmp_path / "bad.json", bad)
    with pytest.raises(mc2.MC2RecordError) as error:
        mc2.load_mc2_records(mc2_settings(path, coco))
    message = str(error.value)
    assert message.startswith("6 of 12 MC² records are unusable (6 bad record):")
    for index, reason in reasons.items():
        assert f"record {index} " in message and reason in message
    assert f"image_id {records[2]['image_id']}" in message
    assert "record 1 " not in message and "on_bad_record: skip" in message


def test_bad_records_are_skipped_and_counted_when_configured(small_mc2, tmp_path):
    _, coco, records = small_mc2
    bad, reasons = _bad_records(records)
    path = write_records(tmp_path / "bad.json", bad)
    output = tmp_path / "benchmark"
    settings = PrepareBenchmark("mc2", None, mc2_settings(path, coco, on_bad_record="skip"), Splits(0.4, 0.2, 0.4), seed=1)
    prepare_benchmark(settings, str(output))
    summary = json.loads((output / "summary.json").read_text())
    assert summary["records"] == 6
    assert [entry["index"] for entry in summary["skipped"]] == sorted(reasons)
    assert {entry["kind"] for entry in summary["skipped"]} == {"bad_record"}
    for entry in summary["skipped"]:
        assert reasons[entry["index"]] in entry["reason"]
    assert set(Benchmark(output).records["image_id"]) == {records[i]["image_id"] for i in (1, 7, 8, 9, 10, 11)}


def test_missing_and_unreadable_images(small_mc2):
    path, coco, records = small_mc2
    missing = next(coco.rglob(f"*{records[3]['image_id']}.jpg"))
    missing.unlink()
    garbage = next(coco.rglob(f"*{records[4]['image_id']}.jpg"))
    garbage.write_bytes(b"this is not a jpeg")
    truncated = next(coco.rglob(f"*{records[5]['image_id']}.jpg"))
    Image.effect_noise((64, 64), 60).convert("RGB").save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])

    with pytest.raises(mc2.MC2RecordError) as error:
        mc2.load_mc2_records(mc2_settings(path, coco))
    message = str(error.value)
    assert message.startswith("3 of 12 MC² records are unusable (1 missing image, 2 unreadable image):")
    assert f"record 3 (image_id {records[3]['image_id']}, task color): no COCO-2014 image" in message
    assert f"record 4 (image_id {records[4]['image_id']}" in message and "cannot be read" in message
    assert f"record 5 (image_id {records[5]['image_id']}" in message and "truncated" in message

    frame, skipped = mc2.load_mc2_records(mc2_settings(path, coco, on_bad_record="skip"))
    assert len(frame) == 9
    assert [(entry["index"], entry["kind"]) for entry in skipped] == [
        (3, "missing_image"),
        (4, "unreadable_image"),
        (5, "unreadable_image"),
    ]


def test_wrong_coco_folder_is_reported_before_any_record_is_read(small_mc2, tmp_path):
    path, coco, _ = small_mc2
    with pytest.raises(FileNotFoundError, match="coco_dir: .*does not exist"):
        mc2.load_mc2_records(mc2_settings(path, tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither train2014/ nor val2014/"):
        mc2.load_mc2_records(mc2_settings(path, tmp_path / "empty"))
    (tmp_path / "other" / "val2014").mkdir(parents=True)
    with pytest.raises(mc2.MC2RecordError, match="No image was found at all"):
        mc2.load_mc2_records(mc2_settings(path, tmp_path / "other"))
    with pytest.raises(mc2.MC2RecordError, match="no usable MC² record is left"):
        mc2.load_mc2_records(mc2_settings(path, tmp_path / "other", on_bad_record="skip"))


def test_records_file_must_be_a_json_list(small_mc2, tmp_path):
    _, coco, _ = small_mc2
    (tmp_path / "object.json").write_text('{"image_id": "1"}')
    with pytest.raises(mc2.MC2RecordError, match="must hold a JSON list of records, found a dict"):
        mc2.load_mc2_records(mc2_settings(tmp_path / "object.json", coco))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(mc2.MC2RecordError, match="is not valid JSON"):
        mc2.load_mc2_records(mc2_settings(tmp_path / "broken.json", coco))
    with pytest.raises(FileNotFoundError, match="benchmark.mc2.records"):
        mc2.load_mc2_records(mc2_settings(tmp_path / "absent.json", coco))


def test_limit_keeps_the_first_records_of_each_task(small_mc2):
    path, coco, records = small_mc2
    frame, _ = mc2.load_mc2_records(mc2_settings(path, coco, limit=2))
    expected = [r["image_id"] for r in records if r["task"] == "color"][:2] + [
        r["image_id"] for r in records if r["task"] == "counting"
    ][:2]
    assert list(frame["image_id"]) == expected


def test_the_hub_dataset_loads_through_datasets(small_mc2, tmp_path, monkeypatch):
    """A local folder laid out like the hub dataset repository stands in for it: datasets loads its records file
    as it loads the hub's."""
    path, coco, records = small_mc2
    repo = tmp_path / "hub" / "271754echo" / "MC2"
    repo.mkdir(parents=True)
    shutil.copy(path, repo / "evaluate_final.json")
    frame, skipped = mc2.load_mc2_records(mc2_settings("hub", coco, hub_repo=str(repo)))
    assert frame[list(MC2_KEYS)].to_dict("records") == records and skipped == []

    write_records(repo / "numbers.json", [{**record, "answer_text": 7} for record in records])
    with pytest.raises(mc2.MC2RecordError, match="numbers.json of the hub dataset .*MC2 is not a JSON list of MC² records"):
        mc2.load_mc2_records(mc2_settings("hub", coco, hub_repo=str(repo), hub_file="numbers.json"))

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="could not get evaluate_final.json from the hub dataset 271754echo/MC2"):
        mc2.load_mc2_records(mc2_settings("hub", coco))


def test_split_is_deterministic_and_stratified_by_task():
    records = pd.DataFrame({"task": ["a"] * 250 + ["b"] * 250})
    fractions = Splits(steer_train=0.4, validation=0.2, test=0.4)
    first, again, other = (assign_splits(records, fractions, seed) for seed in (5, 5, 6))
    assert first.equals(again) and not first.equals(other)
    counts = pd.crosstab(records["task"], first)
    assert counts.to_dict("index") == {task: {"steer_train": 100, "test": 100, "validation": 50} for task in "ab"}


# ----------------------------------------------------------------------------- the paper config


#: num_hidden_layers of the checkpoints' text models (their hub config.json files).
CHECKPOINT_DEPTHS = {
    "llava-hf/llava-1.5-7b-hf": 32,
    "llava-hf/llava-1.5-13b-hf": 40,
    "Qwen/Qwen2-VL-7B-Instruct": 28,
    "Qwen/Qwen2.5-VL-3B-Instruct": 36,
    "Qwen/Qwen2.5-VL-7B-Instruct": 28,
    "Qwen/Qwen2.5-VL-32B-Instruct": 64,
}


def test_paper_config_models_steer_mid_to_late_layers():
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert config["benchmark"]["source"] == "mc2" and config["benchmark"]["mc2"]["records"] == "hub"
    models = config["models"]
    assert {spec["path"] for spec in models.values()} == set(CHECKPOINT_DEPTHS)
    for name, spec in models.items():
        depth = CHECKPOINT_DEPTHS[spec["path"]]
        assert spec["num_layers"] == depth, name
        assert depth // 2 <= min(spec["steering_layers"]) and max(spec["steering_layers"]) < depth, name
        assert spec["dtype"] == "bfloat16" and not spec.get("trust_remote_code", False), name
    assert models["qwen2.5-vl-32b"]["device_map"] == "auto"


@pytest.mark.dag
def test_paper_config_plans_the_full_dag(tmp_path):
    """``snakemake -n`` on config/paper.yaml, with coco_dir pointed at a placeholder COCO folder."""
    (tmp_path / "coco" / "val2014").mkdir(parents=True)
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["benchmark"]["mc2"]["coco_dir"] = str(tmp_path / "coco")
    config_file = tmp_path / "paper.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = result.stdout + result.stderr
    for model in config["models"]:
        assert f"results/paper/baseline/{model}.parquet" in planned
    assert "prepare_benchmark" in planned and "This was a dry-run" in planned
