"""Stand-ins for MC²'s inputs: records in its JSON format and a COCO-2014 folder of small images.

The real COCO images are not available to tests, so each record gets a small JPEG at the path COCO
uses (``train2014/COCO_train2014_%012d.jpg`` or ``val2014/COCO_val2014_%012d.jpg``), in varied
aspect ratios so that Qwen's image-token counts differ between rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COCO_SPLITS = ("train2014", "val2014")
#: Image sizes (width, height) cycled over the records: landscape, square and portrait.
IMAGE_SIZES = ((48, 32), (32, 32), (48, 48), (16, 48))
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")


def coco_image_path(coco_dir: Path, image_id: int | str, split: str) -> Path:
    """Where COCO-2014 keeps ``image_id`` in ``split`` (train2014 or val2014)."""
    prefix = split.replace("2014", "")
    return coco_dir / split / f"COCO_{prefix}2014_{int(image_id):012d}.jpg"


def write_coco_image(coco_dir: Path, image_id: int | str, split: str = "train2014", size: tuple[int, int] = (32, 32)) -> Path:
    """Write a small one-colour JPEG where COCO would keep ``image_id``."""
    path = coco_image_path(coco_dir, image_id, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLOURS[int(image_id) % len(COLOURS)]).save(path, format="JPEG")
    return path


def synthetic_records(tasks: list[str], per_task: int, first_image_id: int = 1000) -> list[dict]:
    """MC²-format records (six string keys, 12-digit image ids) with conflicting colour answers."""
    records = []
    for task_index, task in enumerate(tasks):
        for item in range(per_task):
            number = first_image_id + task_index * per_task + item
            vision, text = COLOURS[number % len(COLOURS)], COLOURS[(number + 1) % len(COLOURS)]
            records.append(
                {
                    "image_id": f"{number:012d}",
                    "task": task,
                    "question": f"What colour is the object in picture {item}?",
                    "answer_vision": vision,
                    "answer_text": text,
                    "context": f"The object in the picture is painted {text}, as everyone can see.",
                }
            )
    return records


def write_records(path: Path, records: list) -> Path:
    """Write records as MC²'s ``evaluate_final.json`` (one JSON list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


def write_coco_folder(coco_dir: Path, records: list[dict]) -> Path:
    """Give every record an image, alternating train2014 and val2014, cycling through :data:`IMAGE_SIZES`."""
    for number, record in enumerate(records):
        split = COCO_SPLITS[number % 2]
        write_coco_image(coco_dir, record["image_id"], split, IMAGE_SIZES[number % len(IMAGE_SIZES)])
    return coco_dir
