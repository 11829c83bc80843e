"""The data stage's step: ``prepare_benchmark`` builds the benchmark folder that every later step reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

from amps.core.io import atomic_directory, write_json
from amps.core.settings import Step
from amps.data.benchmark import Mc2Source, Splits, WorldSpec, assign_splits, save_benchmark, world_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareBenchmark(Step):
    """The benchmark's source and its section (``world`` or ``mc2``; the other is None), the splits and the seed."""

    source: str
    world: WorldSpec | None
    mc2: Mc2Source | None
    splits: Splits
    seed: int

    READS: ClassVar[tuple[str, ...]] = (
        "seed",
        "benchmark.source",
        *(f"benchmark.splits.{split}" for split in ("steer_train", "validation", "test")),
        *(f"benchmark.world.{key}" for key in ("tasks", "records_per_task", "image_size", "image_strength")),
        *(f"benchmark.mc2.{key}" for key in ("records", "hub_repo", "hub_file", "coco_dir", "on_bad_record", "limit")),
    )

    @classmethod
    def from_config(cls, config: Mapping) -> PrepareBenchmark:
        benchmark = config["benchmark"]
        world = mc2 = None
        if benchmark["source"] == "world":
            section = benchmark["world"]
            world = WorldSpec(
                tuple(section["tasks"]), section["records_per_task"], section["image_size"], tuple(section["image_strength"])
            )
        else:
            section = benchmark["mc2"]
            mc2 = Mc2Source(
                section["records"],
                section["hub_repo"],
                section["hub_file"],
                section.get("coco_dir"),
                section["on_bad_record"],
                section["limit"],
            )
        splits = benchmark["splits"]
        return cls(
            benchmark["source"], world, mc2, Splits(splits["steer_train"], splits["validation"], splits["test"]), config["seed"]
        )


def prepare_benchmark(settings: PrepareBenchmark, output_dir: str) -> None:
    """Build the benchmark folder: the records with their images as a ``datasets.Dataset`` (see
    :mod:`amps.data.benchmark`) and ``summary.json`` (counts per task and split, skipped records). The folder
    appears only when complete."""
    with atomic_directory(output_dir) as folder:
        skipped: list[dict] = []
        if settings.world is not None:
            records, images = world_records(settings.world, settings.seed)
        else:
            from amps.data import mc2  # here: the hub client is only needed for MC²

            records, skipped = mc2.load_mc2_records(settings.mc2)
            images = [Path(path).read_bytes() for path in records.pop("image_path")]
        records = records.reset_index(drop=True)
        records.insert(
            0,
            "record_id",
            [f"{task}-{image_id}-{i}" for i, (task, image_id) in enumerate(zip(records["task"], records["image_id"]))],
        )
        records["split"] = assign_splits(records, settings.splits, settings.seed)
        save_benchmark(folder, records, images)
        counts = records.groupby(["task", "split"]).size().unstack(fill_value=0)
        write_json(
            folder / "summary.json",
            {
                "source": settings.source,
                "records": len(records),
                "per_task_and_split": {task: counts.loc[task].to_dict() for task in counts.index},
                "skipped": skipped,
            },
        )
    log.info("benchmark ready: %d records in %s", len(records), output_dir)
