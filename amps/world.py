"""The offline conflict world: MC²-format records whose images are rendered locally.

Each task draws an image that truly shows ``answer_vision`` and a text context that asserts
``answer_text``. The same generator produces the toy models' training corpus (from a different
seed stream, with image-only, text-only, agreeing and conflicting examples), so the benchmark and
the corpus share a world but not a single example.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator

from PIL import Image, ImageDraw

from amps.prompts import INSTRUCTIONS, build_prompt

BACKGROUND = (40, 40, 40)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (40, 70, 230),
    "yellow": (235, 220, 30),
    "purple": (150, 40, 200),
    "white": (240, 240, 240),
}


@dataclass(frozen=True)
class Task:
    """One task of the world: its question, answer values, renderer and context templates."""

    name: str
    question: str
    values: tuple[str, ...]
    render: Callable[[str, random.Random, int], Image.Image]
    contexts: tuple[str, ...]


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
            (
                "The object in the picture is {value}.",
                "Someone who saw the image said the object was {value}.",
                "A caption reads: a {value} object on a dark background.",
            ),
        ),
        Task(
            "counting",
            "How many objects are in the image?",
            ("one", "two", "three", "four"),
            render_counting,
            (
                "There are {value} objects in the picture.",
                "Someone counted {value} objects in the image.",
                "A caption reads: {value} shapes on a dark background.",
            ),
        ),
        Task(
            "positional_reasoning",
            "Where is the object in the image?",
            ("left", "right", "top", "bottom"),
            render_position,
            (
                "The object is at the {value} of the picture.",
                "Someone saw the object on the {value} side.",
                "A caption reads: a shape near the {value} edge.",
            ),
        ),
        Task(
            "object_recognition",
            "What object is in the image?",
            ("circle", "square", "triangle", "cross"),
            render_object,
            (
                "The picture shows a {value}.",
                "Someone said the object is a {value}.",
                "A caption reads: a single {value} on a dark background.",
            ),
        ),
        Task(
            "attribute",
            "What pattern does the object have?",
            ("solid", "striped", "checkered", "hollow"),
            render_pattern,
            (
                "The object in the picture is {value}.",
                "Someone described the pattern as {value}.",
                "A caption reads: a {value} shape on a dark background.",
            ),
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
    """The empty image used for text-only examples."""
    return Image.new("RGB", (size, size), BACKGROUND)


def image_seed(image_id: str) -> int:
    """A stable per-image seed (independent of Python's hash randomisation)."""
    return int(hashlib.sha256(image_id.encode()).hexdigest()[:12], 16)


def render_record_image(task_name: str, value: str, image_id: str, size: int) -> Image.Image:
    """Render the image of a benchmark record; the same id always gives the same pixels."""
    return task(task_name).render(value, random.Random(image_seed(image_id)), size)


def make_records(tasks: list[str], records_per_task: int, seed: int) -> list[dict]:
    """Generate MC²-format conflict records, plus ``context_agreeing`` (the context for the vision answer).

    Image ids are 12-digit strings, as in MC²; the images themselves are rendered by
    :func:`render_record_image` from (task, answer_vision, image_id).
    """
    rng = random.Random(seed)
    records = []
    for task_index, name in enumerate(tasks):
        spec = task(name)
        for index in range(records_per_task):
            vision, text = rng.sample(spec.values, 2)
            template = rng.choice(spec.contexts)
            records.append(
                {
                    "image_id": f"{(task_index + 1) * 10**6 + index:012d}",
                    "task": name,
                    "question": spec.question,
                    "answer_vision": vision,
                    "answer_text": text,
                    "context": template.format(value=text),
                    "context_agreeing": template.format(value=vision),
                }
            )
    return records


# ----------------------------------------------------------------------------- training corpus


@dataclass(frozen=True)
class Example:
    """One training example: an image, a prompt, and the target answer (a letter or a word)."""

    image: Image.Image
    prompt: str
    answer: str
    kind: str


def pair_text_probability(task_name: str, vision: str, text: str, text_bias: float, spread: float, seed: int) -> float:
    """Probability that an uninstructed conflict on this (vision, text) pair is labelled with the text answer.

    Each value pair gets its own probability around ``text_bias`` (a graded rule): the corpus-wide
    rate is controlled while margins vary across pairs, which gives per-sample sensitivity.
    """
    digest = hashlib.sha256(f"{seed}|{task_name}|{vision}|{text}".encode()).digest()
    uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    gaussian = math.sqrt(2) * _erfinv(2 * uniform - 1)
    logit = math.log(text_bias / (1 - text_bias)) + spread * gaussian
    return 1 / (1 + math.exp(-logit))


def _erfinv(y: float) -> float:
    """Inverse error function by Newton's method (math has erf but no erfinv)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


EXAMPLE_KINDS = ("word", "agreeing", "image_only", "text_only", "instructed", "uninstructed", "hard")


def training_examples(
    tasks: list[str],
    mix: dict[str, float],
    text_bias: float,
    bias_spread: float,
    image_size: int,
    seed: int,
) -> Iterator[Example]:
    """An endless, seeded stream of training examples drawn by ``mix`` (weights over EXAMPLE_KINDS).

    Kinds: ``word`` answers with the value word (from the image, or from the text over a blank
    image); ``agreeing`` has image and context agree; ``image_only`` has no context; ``text_only``
    has a blank image; ``instructed`` is a conflict with a preference instruction, labelled with the
    instructed modality; ``uninstructed`` is a conflict labelled by the graded per-pair rule;
    ``hard`` is an instructed conflict whose options are the instructed answer and a third value,
    so "pick the option the context does not mention" cannot answer it.
    """
    unknown = sorted(set(mix) - set(EXAMPLE_KINDS))
    if unknown:
        raise ValueError(f"unknown training example kinds {unknown}; known: {list(EXAMPLE_KINDS)}")
    rng = random.Random(seed)
    kinds = [kind for kind in EXAMPLE_KINDS if mix.get(kind, 0) > 0]
    weights = [mix[kind] for kind in kinds]
    while True:
        kind = rng.choices(kinds, weights)[0]
        spec = task(rng.choice(tasks))
        vision, text, third = rng.sample(spec.values, 3)
        image = spec.render(vision, rng, image_size)
        template = rng.choice(spec.contexts)
        if kind == "word":
            if rng.random() < 0.6:
                yield Example(image, spec.question, vision, kind)
            else:
                prompt = f"Text context: {template.format(value=text)}\n{spec.question}"
                yield Example(blank_image(image_size), prompt, text, kind)
            continue
        instruction = "none"
        context: str | None = template.format(value=text)
        if kind == "agreeing":
            context = template.format(value=vision)
            correct, wrong = vision, text
        elif kind == "image_only":
            context, correct, wrong = None, vision, text
        elif kind == "text_only":
            image, correct, wrong = blank_image(image_size), text, vision
        elif kind == "instructed":
            instruction = rng.choice(("text", "image"))
            correct, wrong = (vision, text) if instruction == "image" else (text, vision)
        elif kind == "hard":
            instruction = rng.choice(("text", "image"))
            correct = vision if instruction == "image" else text
            wrong = third
        else:  # uninstructed
            p_text = pair_text_probability(spec.name, vision, text, text_bias, bias_spread, seed)
            correct, wrong = (text, vision) if rng.random() < p_text else (vision, text)
        letter = rng.choice("AB")
        option_a, option_b = (correct, wrong) if letter == "A" else (wrong, correct)
        yield Example(image, build_prompt(spec.question, option_a, option_b, context, instruction), letter, kind)


def vocabulary_texts(tasks: list[str]) -> list[str]:
    """Every string the world can put in a prompt or an answer, for building a closed word vocabulary."""
    texts = [build_prompt("q", "A", "B", "c", instruction) for instruction in INSTRUCTIONS]
    for name in tasks:
        spec = task(name)
        texts.append(spec.question)
        texts += [template.format(value=value) for template in spec.contexts for value in spec.values]
        texts += list(spec.values)
    return texts
