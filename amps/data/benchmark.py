"""Benchmark records: the MC² format, validation, splits, and the prepared benchmark folder.

A prepared benchmark is a folder with ``records.parquet`` (one row per record: the six MC² keys,
``record_id``, ``split``, ``image_path`` and, where known, ``context_agreeing``) and, for the
conflict world, the rendered ``images/``. Everything downstream reads only this folder, so the
offline world and MC² go through the same evaluation code.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pandas as pd
from PIL import Image

from amps.data import world
from amps.core.io import atomic_directory, read_table, write_json, write_table
from amps.vocabulary import SPLITS

log = logging.getLogger(__name__)



def assign_splits(records: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """A deterministic split per record, stratified by task (each task is cut by the fractions)."""
    split = pd.Series("", index=records.index, dtype=object)
    for task_name in sorted(records["task"].unique()):
        index = sorted(records.index[records["task"] == task_name].tolist())
        random.Random(f"{seed}|{task_name}").shuffle(index)
        n_train = round(len(index) * fractions["steer_train"])
        n_validation = round(len(index) * fractions["validation"])
        split[index[:n_train]] = "steer_train"
        split[index[n_train : n_train + n_validation]] = "validation"
        split[index[n_train + n_validation :]] = "test"
    return split


def _world_records(settings: dict, image_dir: Path) -> pd.DataFrame:
    spec = settings["world"]
    records = pd.DataFrame(world.make_records(spec["tasks"], spec["records_per_task"], settings["seed"],
                                              tuple(spec["image_strength"])))
    for record in records.itertuples():
        image = world.render_record_image(record.task, record.answer_vision, record.image_id, spec["image_size"],
                                          record.image_strength)
        image.save(image_dir / f"{record.image_id}.png")
    records["image_path"] = [f"images/{image_id}.png" for image_id in records["image_id"]]
    return records


def prepare_benchmark(settings: dict, output_dir: str) -> None:
    """Build the benchmark folder from ``settings`` (the config's ``benchmark`` section plus ``seed``).

    Writes ``records.parquet`` and ``summary.json`` (counts per task and split, skipped records),
    plus ``images/`` for the conflict world. The folder appears only when complete.
    """
    with atomic_directory(output_dir) as folder:
        skipped: list[dict] = []
        if settings["source"] == "world":
            (folder / "images").mkdir()
            records = _world_records(settings, folder / "images")
        else:
            from amps.data import mc2

            records, skipped = mc2.load_mc2_records(settings["mc2"])
        records = records.reset_index(drop=True)
        records.insert(0, "record_id", [f"{task}-{image_id}-{i}" for i, (task, image_id) in enumerate(zip(records["task"], records["image_id"]))])
        records["split"] = assign_splits(records, settings["splits"], settings["seed"])
        write_table(folder / "records.parquet", records)
        counts = records.groupby(["task", "split"]).size().unstack(fill_value=0)
        write_json(
            folder / "summary.json",
            {
                "source": settings["source"],
                "records": len(records),
                "per_task_and_split": {task: counts.loc[task].to_dict() for task in counts.index},
                "skipped": skipped,
            },
        )
    log.info("benchmark ready: %d records in %s", len(records), output_dir)


class Benchmark:
    """A prepared benchmark folder: its records and their images."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / "records.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: run the prepare-benchmark step first")
        self.records = read_table(path)

    def split(self, name: str) -> pd.DataFrame:
        """The records of one split."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.records[self.records["split"] == name].reset_index(drop=True)

    def image(self, record, blank: bool = False) -> Image.Image:
        """The RGB image of a record (``image_path`` is relative to the folder unless absolute), or with
        ``blank`` a uniform image of its size (the blank-image control)."""
        path = Path(record["image_path"])
        image = Image.open(path if path.is_absolute() else self.folder / path).convert("RGB")
        return Image.new("RGB", image.size, world.BACKGROUND) if blank else image
