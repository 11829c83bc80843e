"""MC² records from the hub or a local file, loaded through ``datasets``, validated and joined to the user's
COCO-2014 images.

MC² ships only text (``evaluate_final.json``: a list of records with ``image_id``, ``task``,
``question``, ``answer_vision``, ``answer_text``, ``context``; on the hub, a file of the dataset
repository ``271754echo/MC2``); its images are COCO-2014 files,
``train2014/COCO_train2014_%012d.jpg`` or ``val2014/COCO_val2014_%012d.jpg`` under a folder the
user names. ``datasets.load_dataset`` reads the records as a table. Every record is checked before any
model runs: a bad record (missing key, wrong type, empty or identical answers) or a missing or
unreadable image is an error naming how many and which, unless ``on_bad_record: skip``, in which case
each skip and its reason is returned for the summary. A file whose table is not six columns of text
(not JSON, not a list of objects, a key holding numbers or mixed types) is read as plain JSON instead,
so that each bad record can be named.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image

from amps.data.benchmark import Mc2Source
from amps.vocabulary import MC2_KEYS

log = logging.getLogger(__name__)

#: COCO-2014 image locations under ``coco_dir``, tried in this order.
COCO_LAYOUTS = ("train2014/COCO_train2014_{id:012d}.jpg", "val2014/COCO_val2014_{id:012d}.jpg")
#: How many bad records an error message lists one by one (the rest are counted).
LISTED_PROBLEMS = 20


class MC2RecordError(ValueError):
    """Bad MC² records or images, with how many and which in the message."""


def text_table(table) -> list[dict] | None:
    """The rows of a ``datasets`` table whose MC² keys are all text columns (a missing value is None), else None."""
    features = table.features
    if any(getattr(features.get(key), "dtype", None) not in ("string", "large_string") for key in MC2_KEYS):
        return None
    return table.to_list()


def raw_records(source: Mc2Source) -> list:
    """The records of MC²'s file (the hub dataset's, or the configured local JSON) as ``datasets`` reads them.

    Where datasets cannot read the file as a table of text columns, a local file is read as plain JSON
    (:func:`read_raw_records`), so that the records datasets could not hold are named; a hub file is
    an error that says how to have them named.
    """
    from datasets import load_dataset  # here: only the MC² benchmark needs the loader
    from datasets.exceptions import DatasetGenerationError

    if source.records == "hub":
        repo, filename = source.hub_repo, source.hub_file
        try:
            rows = text_table(load_dataset(repo, data_files=filename, split="train"))
        except (OSError, HfHubHTTPError) as error:
            raise RuntimeError(
                f"could not get {filename} from the hub dataset {repo} ({error}); download it and set "
                "benchmark.mc2.records to its path"
            ) from error
        except DatasetGenerationError:
            rows = None
        if rows is None:
            raise MC2RecordError(
                f"{filename} of the hub dataset {repo} is not a JSON list of MC² records with text values: download it "
                "and set benchmark.mc2.records to its path to have each bad record named"
            )
        return rows
    path = Path(source.records)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark.mc2.records: {path} does not exist")
    # A local file's table is not worth keeping: it is cached for this read only.
    with tempfile.TemporaryDirectory() as cache:
        try:
            rows = text_table(load_dataset("json", data_files=str(path), split="train", cache_dir=cache))
        except DatasetGenerationError:
            rows = None
    return read_raw_records(path) if rows is None else rows


def read_raw_records(path: Path) -> list:
    """The JSON list in ``path`` (MC²'s format), or a clear error if the file is not one."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except json.JSONDecodeError as error:
        raise MC2RecordError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(raw, list):
        raise MC2RecordError(f"{path} must hold a JSON list of records, found a {type(raw).__name__}")
    return raw


def record_problem(record) -> str | None:
    """Why a raw record is unusable (missing keys, non-string or empty values, answers that agree), or None."""
    if not isinstance(record, dict):
        return f"not an object but a {type(record).__name__}"
    # A key some records lack is None in datasets' table of them.
    missing = [key for key in MC2_KEYS if record.get(key) is None]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    not_text = [key for key in MC2_KEYS if not isinstance(record[key], str)]
    if not_text:
        return f"non-string value(s) for {', '.join(not_text)}"
    empty = [key for key in MC2_KEYS if not record[key].strip()]
    if empty:
        return f"empty value(s) for {', '.join(empty)}"
    image_id = record["image_id"].strip()
    if not (image_id.isascii() and image_id.isdecimal()):
        return f"image_id {record['image_id']!r} is not a COCO image number"
    if record["answer_vision"].strip().lower() == record["answer_text"].strip().lower():
        return f"answer_vision and answer_text are the same ({record['answer_vision']!r})"
    return None


def coco_image(coco_dir: Path, image_id: str) -> Path | None:
    """The COCO-2014 file of ``image_id`` under ``coco_dir`` (train2014 first, then val2014), or None."""
    for layout in COCO_LAYOUTS:
        path = coco_dir / layout.format(id=int(image_id))
        if path.is_file():
            return path
    return None


def image_problem(path: Path) -> str | None:
    """Why an image file cannot be used (unreadable, corrupt or truncated), or None.

    ``verify`` checks the file's structure without decoding; a truncated JPEG passes it and fails
    only when decoded, so the pixels are loaded too.
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"image {path} cannot be read ({error})"
    return None


def _first_per_task(records: list[tuple[int, dict]], limit: int | None) -> list[tuple[int, dict]]:
    """Keep the first ``limit`` records of each task, in file order (all of them when ``limit`` is None)."""
    if limit is None:
        return records
    seen: Counter = Counter()
    kept = []
    for index, record in records:
        if seen[record["task"]] < limit:
            seen[record["task"]] += 1
            kept.append((index, record))
    return kept


def _problem_entry(index: int, record, kind: str, reason: str) -> dict:
    """One unusable record: its position in the file, its image and task where known, and why."""
    image_id = record.get("image_id") if isinstance(record, dict) else None
    task = record.get("task") if isinstance(record, dict) else None
    return {"index": index, "image_id": image_id, "task": task, "kind": kind, "reason": reason}


def _describe_problems(problems: list[dict], checked: int, coco_dir: Path) -> str:
    """An error message: how many records are unusable, counted by kind, and the first ones listed."""
    kinds = Counter(problem["kind"] for problem in problems)
    counts = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in sorted(kinds.items()))
    lines = [f"{len(problems)} of {checked} MC² records are unusable ({counts}):"]
    lines += [
        f"  record {problem['index']} (image_id {problem['image_id']}, task {problem['task']}): {problem['reason']}"
        for problem in problems[:LISTED_PROBLEMS]
    ]
    if len(problems) > LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - LISTED_PROBLEMS} more")
    if kinds["missing_image"] and kinds["missing_image"] == checked - kinds["bad_record"]:
        lines.append(f"No image was found at all: is {coco_dir} the folder that holds train2014/ and val2014/?")
    lines.append("Set benchmark.mc2.on_bad_record: skip to leave unusable records out.")
    return "\n".join(lines)


def load_mc2_records(source: Mc2Source) -> tuple[pd.DataFrame, list[dict]]:
    """MC² records joined to their COCO images, and the records skipped as unusable.

    Returns the six MC² keys plus ``image_path`` (absolute) in file order, and one ``{index,
    image_id, task, kind, reason}`` per skipped record (kind: bad_record, missing_image or
    unreadable_image). With ``on_bad_record: error`` any unusable record raises
    :class:`MC2RecordError`; with ``skip`` they are left out, unless none is left. The config's
    validation has checked that ``coco_dir`` is set (:func:`amps.core.config.check_semantics`).
    """
    coco_dir = Path(source.coco_dir).expanduser().resolve()
    if not coco_dir.is_dir():
        raise FileNotFoundError(f"benchmark.mc2.coco_dir: {coco_dir} does not exist")
    if not any((coco_dir / layout.split("/")[0]).is_dir() for layout in COCO_LAYOUTS):
        raise FileNotFoundError(f"benchmark.mc2.coco_dir: {coco_dir} holds neither train2014/ nor val2014/")

    raw = raw_records(source)
    problems, usable = [], []
    for index, record in enumerate(raw):
        reason = record_problem(record)
        if reason:
            problems.append(_problem_entry(index, record, "bad_record", reason))
        else:
            usable.append((index, record))
    kept = _first_per_task(usable, source.limit)

    rows = []
    for index, record in kept:
        path = coco_image(coco_dir, record["image_id"])
        if path is None:
            reason = f"no COCO-2014 image for image_id {record['image_id']} under {coco_dir}"
            problems.append(_problem_entry(index, record, "missing_image", reason))
            continue
        reason = image_problem(path)
        if reason:
            problems.append(_problem_entry(index, record, "unreadable_image", reason))
            continue
        rows.append({**{key: record[key] for key in MC2_KEYS}, "image_path": str(path)})

    problems.sort(key=lambda problem: problem["index"])
    checked = len(raw) - len(usable) + len(kept)
    if problems and source.on_bad_record == "error":
        raise MC2RecordError(_describe_problems(problems, checked, coco_dir))
    if not rows:
        raise MC2RecordError(f"no usable MC² record is left\n{_describe_problems(problems, checked, coco_dir)}")
    if problems:
        log.warning("skipped %d of %d MC² records (on_bad_record: skip)", len(problems), checked)
    return pd.DataFrame(rows, columns=[*MC2_KEYS, "image_path"]), problems
