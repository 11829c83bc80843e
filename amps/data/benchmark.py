"""The prepared benchmark: a ``datasets.Dataset`` on disk of the records with their images, the world's records,
and the splits.

A prepared benchmark is a folder written by ``Dataset.save_to_disk`` (open it with
``datasets.load_from_disk``): one row per record with ``record_id``, the six MC² keys, for the conflict
world ``context_agreeing`` and the evidence strengths, ``split``, and ``image`` (a ``datasets.Image``
holding the encoded image: the world's rendered PNG, MC²'s COCO JPEG), with ``summary.json`` beside it.
Everything downstream reads only this folder, so the offline world and MC² go through the same evaluation
code (:func:`amps.data.steps.prepare_benchmark` writes it). ``datasets`` is imported only where a folder is
written or read: the steps that never touch the benchmark start without it.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from amps.data import world
from amps.vocabulary import SPLITS

#: The file ``Dataset.save_to_disk`` writes beside the data, by which a prepared benchmark is known.
DATASET_STATE = "state.json"


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


def world_records(spec: WorldSpec, seed: int) -> tuple[pd.DataFrame, list[bytes]]:
    """The offline world's records, and each one's image rendered and encoded as PNG."""
    records = pd.DataFrame(world.make_records(spec.tasks, spec.records_per_task, seed, tuple(spec.image_strength)))
    images = []
    for record in records.itertuples():
        image = world.render_record_image(
            record.task, record.answer_vision, record.image_id, spec.image_size, record.image_strength
        )
        encoded = io.BytesIO()
        image.save(encoded, format="PNG")
        images.append(encoded.getvalue())
    return records, images


def save_benchmark(folder: Path, records: pd.DataFrame, images: list[bytes]) -> None:
    """Write ``records`` with their encoded ``images`` (one per row) into ``folder`` as a ``datasets.Dataset``."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    table = Dataset.from_pandas(records, preserve_index=False)
    # Bytes without a path: the images live in the dataset, whatever files they came from.
    dataset = table.add_column("image", [{"bytes": data, "path": None} for data in images], feature=ImageFeature())
    dataset.save_to_disk(str(folder))


class Benchmark:
    """A prepared benchmark folder: its records (a DataFrame, without the images) and their images."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / DATASET_STATE).is_file():
            raise FileNotFoundError(
                f"{self.folder} holds no prepared benchmark: run the prepare_benchmark step (snakemake --forcerun "
                "prepare_benchmark where an earlier amps wrote the folder as records.parquet)"
            )
        from datasets import load_from_disk

        dataset = load_from_disk(str(self.folder))
        self.records = dataset.remove_columns("image").to_pandas()
        self.images = dataset.select_columns("image")
        self.rows = {record_id: row for row, record_id in enumerate(self.records["record_id"])}

    def split(self, name: str) -> pd.DataFrame:
        """The records of one split."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.records[self.records["split"] == name].reset_index(drop=True)

    def image(self, record_id: str, blank: bool = False) -> Image.Image:
        """The RGB image of a record, as ``datasets`` decodes it for any reader of the folder, or with ``blank`` a
        uniform image of its size (the blank-image control)."""
        if record_id not in self.rows:
            raise KeyError(f"record {record_id!r} is not in the benchmark {self.folder}")
        image = self.images[self.rows[record_id]]["image"].convert("RGB")
        return Image.new("RGB", image.size, world.BACKGROUND) if blank else image
