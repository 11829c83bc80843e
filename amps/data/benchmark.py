"""The prepared benchmark folder: its records and images, the world's records, and the splits.

A prepared benchmark is a folder with ``records.parquet`` (one row per record: the six MC² keys,
``record_id``, ``split``, ``image_path`` and, where known, ``context_agreeing``) and, for the
conflict world, the rendered ``images/``. Everything downstream reads only this folder, so the
offline world and MC² go through the same evaluation code (:func:`amps.data.steps.prepare_benchmark`
writes it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from amps.core.io import read_table
from amps.data import world
from amps.vocabulary import SPLITS


@dataclass(frozen=True)
class Splits:
    """The share of each task's records in each split (``benchmark.splits``)."""

    steer_train: float
    validation: float
    test: float


@dataclass(frozen=True)
class WorldSpec:
    """The offline world's records (``benchmark.world``): tasks, records per task, image size and evidence range."""

    tasks: tuple[str, ...]
    records_per_task: int
    image_size: int
    image_strength: tuple[float, float]


@dataclass(frozen=True)
class Mc2Source:
    """Where MC²'s records and images come from (``benchmark.mc2``), and what to do with unusable records.

    ``records``: "hub" or a local ``evaluate_final.json``; ``hub_repo`` and ``hub_file``: the hub
    dataset file; ``coco_dir``: the folder of COCO-2014 ``train2014/`` and ``val2014/``;
    ``on_bad_record``: error or skip; ``limit``: the first N records of each task (all when None).
    """

    records: str
    hub_repo: str
    hub_file: str
    coco_dir: str | None
    on_bad_record: str
    limit: int | None


def assign_splits(records: pd.DataFrame, fractions: Splits, seed: int) -> pd.Series:
    """A deterministic split per record, stratified by task (each task is cut by the fractions)."""
    split = pd.Series("", index=records.index, dtype=object)
    for task_name in sorted(records["task"].unique()):
        index = sorted(records.index[records["task"] == task_name].tolist())
        random.Random(f"{seed}|{task_name}").shuffle(index)
        n_train = round(len(index) * fractions.steer_train)
        n_validation = round(len(index) * fractions.validation)
        split[index[:n_train]] = "steer_train"
        split[index[n_train : n_train + n_validation]] = "validation"
        split[index[n_train + n_validation :]] = "test"
    return split


def world_records(spec: WorldSpec, seed: int, image_dir: Path) -> pd.DataFrame:
    """The offline world's records, their images rendered into ``image_dir``."""
    records = pd.DataFrame(world.make_records(spec.tasks, spec.records_per_task, seed, tuple(spec.image_strength)))
    for record in records.itertuples():
        image = world.render_record_image(
            record.task, record.answer_vision, record.image_id, spec.image_size, record.image_strength
        )
        image.save(image_dir / f"{record.image_id}.png")
    records["image_path"] = [f"images/{image_id}.png" for image_id in records["image_id"]]
    return records


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
