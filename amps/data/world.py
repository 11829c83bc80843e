"""The offline conflict world: MC²-format records whose images are rendered locally.

Each task draws an image that truly shows ``answer_vision`` and a text context that asserts
``answer_text``. Both carry evidence of a known strength, stored with every record as ground truth:

* ``image_strength`` (0–1): how clearly the image shows its answer; the drawing is blended toward
  the background and covered in pixel noise as the strength falls (:func:`degrade`);
* ``text_strength`` (0.25, 0.5, 0.75 or 1): how firmly the context asserts its answer, from a
  hedged guess to a certain statement said twice (:data:`ASSERTIONS`).

The toy models' training corpus (:mod:`amps.data.corpus`) is drawn from the same world.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (40, 40, 40)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (40, 70, 230),
    "yellow": (235, 220, 30),
    "purple": (150, 40, 200),
    "white": (240, 240, 240),
}


#: How firmly a context asserts its value: (text strength, wording of the task's claim).
ASSERTIONS: tuple[tuple[float, str], ...] = (
    (0.25, "Someone guessed that {claim}, but nobody is sure."),
    (0.5, "Someone said that {claim}."),
    (0.75, "A caption states that {claim}."),
    (1.0, "It is certain that {claim}. Everyone agrees that {claim}."),
)
TEXT_STRENGTHS = tuple(strength for strength, _ in ASSERTIONS)
#: Pixel noise (standard deviation on the 0-255 scale) of an image of strength 0.
NOISE = 25.0


@dataclass(frozen=True)
class Task:
    """One task of the world: its question, answer values, renderer and claims (``{value}`` in a sentence)."""

    name: str
    question: str
    values: tuple[str, ...]
    render: Callable[[str, random.Random, int], Image.Image]
    claims: tuple[str, ...]

    def context(self, claim: str, value: str, text_strength: float) -> str:
        """The context that asserts ``value`` with the wording of ``text_strength``."""
        wording = dict(ASSERTIONS)[text_strength]
        return wording.format(claim=claim.format(value=value))


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (size, size), BACKGROUND)
    return image, ImageDraw.Draw(image)


def _jitter(rng: random.Random, size: int) -> tuple[int, int]:
    span = max(1, size // 16)
    return rng.randint(-span, span), rng.randint(-span, span)


def _random_color(rng: random.Random) -> tuple[int, int, int]:
    return COLORS[rng.choice(sorted(COLORS))]


def render_color(value: str, rng: random.Random, size: int) -> Image.Image:
    """A large disk or square in the named colour."""
    image, draw = _canvas(size)
    dx, dy = _jitter(rng, size)
    half = int(size * 0.34)
    box = (size // 2 - half + dx, size // 2 - half + dy, size // 2 + half + dx, size // 2 + half + dy)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=COLORS[value])
    return image


def render_counting(value: str, rng: random.Random, size: int) -> Image.Image:
    """``value`` squares, one per quadrant, in distinct random quadrants."""
    count = ("one", "two", "three", "four").index(value) + 1
    image, draw = _canvas(size)
    color = _random_color(rng)
    cell = size // 2
    side = int(cell * 0.6)
    for quadrant in rng.sample(range(4), count):
        qx, qy = (quadrant % 2) * cell, (quadrant // 2) * cell
        ox = qx + (cell - side) // 2 + rng.randint(-1, 1)
        oy = qy + (cell - side) // 2 + rng.randint(-1, 1)
        draw.rectangle((ox, oy, ox + side, oy + side), fill=color)
    return image


def render_position(value: str, rng: random.Random, size: int) -> Image.Image:
    """One square at the middle of the named edge."""
    image, draw = _canvas(size)
    side = int(size * 0.3)
    margin = max(1, size // 16)
    centre = (size - side) // 2 + rng.randint(-margin, margin)
    far = size - side - margin
    corner = {
        "left": (margin, centre),
        "right": (far, centre),
        "top": (centre, margin),
        "bottom": (centre, far),
    }[value]
    draw.rectangle((*corner, corner[0] + side, corner[1] + side), fill=_random_color(rng))
    return image


def render_object(value: str, rng: random.Random, size: int) -> Image.Image:
    """A large circle, square, triangle or cross."""
    image, draw = _canvas(size)
    color = _random_color(rng)
    dx, dy = _jitter(rng, size)
    lo, hi = int(size * 0.12), int(size * 0.88)
    box = (lo + dx, lo + dy, hi + dx, hi + dy)
    if value == "circle":
        draw.ellipse(box, fill=color)
    elif value == "square":
        draw.rectangle(box, fill=color)
    elif value == "triangle":
        draw.polygon([((lo + hi) // 2 + dx, lo + dy), (lo + dx, hi + dy), (hi + dx, hi + dy)], fill=color)
    elif value == "cross":
        bar = (hi - lo) // 3
        draw.rectangle((lo + bar + dx, lo + dy, hi - bar + dx, hi + dy), fill=color)
        draw.rectangle((lo + dx, lo + bar + dy, hi + dx, hi - bar + dy), fill=color)
    else:
        raise ValueError(f"unknown object {value!r}")
    return image


def render_pattern(value: str, rng: random.Random, size: int) -> Image.Image:
    """A large square that is solid, striped, checkered or hollow."""
    image, draw = _canvas(size)
    color = _random_color(rng)
    dx, dy = _jitter(rng, size)
    lo, hi = int(size * 0.12), int(size * 0.88)
    left, top, right, bottom = lo + dx, lo + dy, hi + dx, hi + dy
    if value == "solid":
        draw.rectangle((left, top, right, bottom), fill=color)
    elif value == "hollow":
        width = max(2, size // 12)
        draw.rectangle((left, top, right, bottom), outline=color, width=width)
    elif value == "striped":
        for y in range(top, bottom + 1, 4):
            draw.rectangle((left, y, right, min(y + 1, bottom)), fill=color)
    elif value == "checkered":
        for y in range(top, bottom + 1, 4):
            for x in range(left, right + 1, 4):
                if ((x - left) // 4 + (y - top) // 4) % 2 == 0:
                    draw.rectangle((x, y, min(x + 3, right), min(y + 3, bottom)), fill=color)
    else:
        raise ValueError(f"unknown pattern {value!r}")
    return image


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "color",
            "What color is the object?",
            tuple(COLORS),
            render_color,
            ("the object is {value}", "the object in the picture is {value}"),
        ),
        Task(
            "counting",
            "How many objects are in the image?",
            ("one", "two", "three", "four"),
            render_counting,
            ("there are {value} objects", "the picture shows {value} objects"),
        ),
        Task(
            "positional_reasoning",
            "Where is the object in the image?",
            ("left", "right", "top", "bottom"),
            render_position,
            ("the object is at the {value}", "the object is near the {value} edge"),
        ),
        Task(
            "object_recognition",
            "What object is in the image?",
            ("circle", "square", "triangle", "cross"),
            render_object,
            ("the picture shows a {value}", "the object is a {value}"),
        ),
        Task(
            "attribute",
            "What pattern does the object have?",
            ("solid", "striped", "checkered", "hollow"),
            render_pattern,
            ("the object is {value}", "the pattern is {value}"),
        ),
    )
}


def task(name: str) -> Task:
    """Look up a task by name, with an error that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown world task {name!r}; known tasks: {sorted(TASKS)}") from None


def blank_image(size: int) -> Image.Image:
    """The empty image used for text-only examples and the blank-image control."""
    return Image.new("RGB", (size, size), BACKGROUND)


def degrade(image: Image.Image, strength: float, rng: random.Random) -> Image.Image:
    """The image at evidence ``strength``: blended toward the background by ``strength`` and covered in
    grey pixel noise of standard deviation ``(1 − strength) × NOISE``; strength 1 leaves it unchanged."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"image strength must lie in [0, 1], got {strength}")
    if strength == 1.0:
        return image
    pixels = np.asarray(image, dtype=np.float64)
    background = np.asarray(BACKGROUND, dtype=np.float64)
    # Grey noise (one draw per pixel, all channels): it hides shapes without shifting hues.
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, (1.0 - strength) * NOISE, pixels.shape[:2] + (1,))
    blended = background + strength * (pixels - background) + noise
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def image_seed(image_id: str) -> int:
    """A stable per-image seed (independent of Python's hash randomisation)."""
    return int(hashlib.sha256(image_id.encode()).hexdigest()[:12], 16)


def render_record_image(task_name: str, value: str, image_id: str, size: int, strength: float = 1.0) -> Image.Image:
    """Render the image of a benchmark record at its evidence strength; the same id always gives the same pixels."""
    rng = random.Random(image_seed(image_id))
    return degrade(task(task_name).render(value, rng, size), strength, rng)


def make_records(
    tasks: list[str], records_per_task: int, seed: int, image_strength: tuple[float, float] = (1.0, 1.0)
) -> list[dict]:
    """Generate MC²-format conflict records with their evidence strengths, plus ``context_agreeing``.

    ``image_strength`` (the record's, drawn uniformly from that range) and ``text_strength`` (one of
    :data:`TEXT_STRENGTHS`, uniformly) are the ground truth of how clear the image and how firm the
    context are; the agreeing context (which asserts the vision answer) has the same wording. Image
    ids are 12-digit strings, as in MC²; the images themselves are rendered by
    :func:`render_record_image` from (task, answer_vision, image_id, image_strength).
    """
    low, high = image_strength
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"image strength range must lie within [0, 1], got {image_strength}")
    rng = random.Random(seed)
    records = []
    for task_index, name in enumerate(tasks):
        spec = task(name)
        for index in range(records_per_task):
            vision, text = rng.sample(spec.values, 2)
            claim = rng.choice(spec.claims)
            text_strength = rng.choice(TEXT_STRENGTHS)
            records.append(
                {
                    "image_id": f"{(task_index + 1) * 10**6 + index:012d}",
                    "task": name,
                    "question": spec.question,
                    "answer_vision": vision,
                    "answer_text": text,
                    "context": spec.context(claim, text, text_strength),
                    "context_agreeing": spec.context(claim, vision, text_strength),
                    "image_strength": round(rng.uniform(low, high), 4),
                    "text_strength": text_strength,
                }
            )
    return records
