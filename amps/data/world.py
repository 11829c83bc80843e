"""The offline conflict world: MC²-format records whose images are rendered locally.

Each task draws an image that truly shows ``answer_vision`` and a text context that asserts
``answer_text``. Both carry evidence of a known strength, stored with every record as ground truth:

* ``image_strength`` (0–1): how clearly the image shows its answer; the drawing is blended toward
  the background and covered in pixel noise as the strength falls (:func:`degrade`);
* ``text_strength`` (0.25, 0.5, 0.75 or 1): how firmly the context asserts its answer, from a
  hedged guess to a certain statement said twice (:data:`ASSERTIONS`).

The same generator produces the toy models' training corpus (from a different seed stream, with
image-only, text-only, agreeing and conflicting examples), so the benchmark and the corpus share a
world but not a single example. Without an instruction, the corpus follows the text with a
probability that grows with the balance ``text_strength − image_strength`` and a per-task prior
(:func:`text_probability`): weak evidence deserves less trust, and tasks differ in which modality
they lean to.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from amps.data.prompts import ANSWER_INSTRUCTION, INSTRUCTIONS, build_prompt

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


def make_records(tasks: list[str], records_per_task: int, seed: int,
                 image_strength: tuple[float, float] = (1.0, 1.0)) -> list[dict]:
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


# ----------------------------------------------------------------------------- training corpus


@dataclass(frozen=True)
class Example:
    """One training example: an image, a prompt, and the target answer (a letter or a word)."""

    image: Image.Image
    prompt: str
    answer: str
    kind: str


@dataclass(frozen=True)
class Preference:
    """How the corpus labels an uninstructed conflict (the config's ``toy_training.preference``).

    ``P(text) = sigmoid(steepness × (text_strength − image_strength) + task_bias[task] + spread × z_pair)``,
    with ``z_pair`` a fixed standard normal draw per (task, vision value, text value): the balance
    of the evidence decides, each task leans its own way, and value pairs vary around it.
    """

    steepness: float
    task_bias: dict[str, float]
    spread: float
    image_strength: tuple[float, float]

    def text_probability(self, task_name: str, vision: str, text: str, image_strength: float, text_strength: float,
                         seed: int) -> float:
        """Probability that an uninstructed conflict with this evidence is labelled with the text answer."""
        digest = hashlib.sha256(f"{seed}|{task_name}|{vision}|{text}".encode()).digest()
        uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
        gaussian = math.sqrt(2) * _erfinv(2 * uniform - 1)
        logit = (self.steepness * (text_strength - image_strength) + self.task_bias.get(task_name, 0.0)
                 + self.spread * gaussian)
        return 1 / (1 + math.exp(-logit))


def _erfinv(y: float) -> float:
    """Inverse error function by Newton's method (math has erf but no erfinv)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


EXAMPLE_KINDS = ("word", "point", "agreeing", "image_only", "text_only", "instructed", "instructed_agreeing", "uninstructed",
                 "hard")


def training_examples(
    tasks: list[str],
    mix: dict[str, float],
    preference: Preference,
    image_size: int,
    seed: int,
) -> Iterator[Example]:
    """An endless, seeded stream of training examples drawn by ``mix`` (weights over EXAMPLE_KINDS).

    Every example draws an image strength (uniform over ``preference.image_strength``) and a text
    strength (:data:`TEXT_STRENGTHS`). Kinds: ``word`` answers with the value word (from the image,
    or from the text over a blank image); ``point`` asks which option names a value, with nothing
    else to read (the letter-pointing step alone, over a blank image); ``agreeing`` has image and context agree; ``image_only``
    has no context; ``text_only`` has a blank image; ``instructed`` is a conflict with a preference
    instruction, labelled with the instructed modality; ``instructed_agreeing`` has an instruction
    while image and context agree (so "pick the option the context does not mention" is wrong under
    the image instruction); ``uninstructed`` is a conflict labelled by the preference rule;
    ``hard`` is an instructed conflict whose options are the instructed answer and a third value,
    so "pick the option the context does not mention" cannot answer it.
    """
    unknown = sorted(set(mix) - set(EXAMPLE_KINDS))
    if unknown:
        raise ValueError(f"unknown training example kinds {unknown}; known: {list(EXAMPLE_KINDS)}")
    rng = random.Random(seed)
    kinds = [kind for kind in EXAMPLE_KINDS if mix.get(kind, 0) > 0]
    weights = [mix[kind] for kind in kinds]
    low, high = preference.image_strength
    while True:
        kind = rng.choices(kinds, weights)[0]
        spec = task(rng.choice(tasks))
        vision, text, third = rng.sample(spec.values, 3)
        image_strength, text_strength = rng.uniform(low, high), rng.choice(TEXT_STRENGTHS)
        image = degrade(spec.render(vision, rng, image_size), image_strength, rng)
        claim = rng.choice(spec.claims)
        if kind == "word":
            if rng.random() < 0.6:
                yield Example(image, spec.question, vision, kind)
            else:
                prompt = f"Text context: {spec.context(claim, text, text_strength)}\n{spec.question}"
                yield Example(blank_image(image_size), prompt, text, kind)
            continue
        if kind == "point":
            letter = rng.choice("AB")
            option_a, option_b = (vision, text) if letter == "A" else (text, vision)
            prompt = f"Which option is {vision}?\nA. {option_a}\nB. {option_b}\n{ANSWER_INSTRUCTION}"
            yield Example(blank_image(image_size), prompt, letter, kind)
            continue
        instruction = "none"
        context: str | None = spec.context(claim, text, text_strength)
        if kind == "agreeing":
            context = spec.context(claim, vision, text_strength)
            correct, wrong = vision, text
        elif kind == "instructed_agreeing":
            instruction = rng.choice(("text", "image"))
            context = spec.context(claim, vision, text_strength)
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
            p_text = preference.text_probability(spec.name, vision, text, image_strength, text_strength, seed)
            correct, wrong = (text, vision) if rng.random() < p_text else (vision, text)
        letter = rng.choice("AB")
        option_a, option_b = (correct, wrong) if letter == "A" else (wrong, correct)
        yield Example(image, build_prompt(spec.question, option_a, option_b, context, instruction), letter, kind)


def vocabulary_texts(tasks: list[str]) -> list[str]:
    """Every string the world can put in a prompt or an answer, for building a closed word vocabulary."""
    texts = [build_prompt("q", "A", "B", "c", instruction) for instruction in INSTRUCTIONS] + ["Which option is ?"]
    for name in tasks:
        spec = task(name)
        texts.append(spec.question)
        texts += [spec.context(claim, value, strength) for claim in spec.claims for value in spec.values
                  for strength in TEXT_STRENGTHS]
        texts += list(spec.values)
    return texts
