"""The toy models' training corpus, drawn from the offline world (:mod:`amps.data.world`).

The same generator as the benchmark's records, from a different seed stream, with image-only,
text-only, agreeing and conflicting examples: the benchmark and the corpus share a world but not a
single example. Without an instruction, a conflict's soft target gives the text answer a probability
that grows with the balance ``text_strength − image_strength`` and a per-task prior
(:meth:`Preference.text_probability`): weak evidence deserves less trust, and tasks differ in which
modality they lean to.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Iterator

from PIL import Image

from amps.data.prompts import ANSWER_INSTRUCTION, INSTRUCTIONS, build_prompt
from amps.data.world import TEXT_STRENGTHS, blank_image, degrade, task


@dataclass(frozen=True)
class Example:
    """One training example: an image, a prompt, and the target answer (a letter or a word).

    A soft target puts probability ``probability`` on ``answer`` and the rest on ``alternative`` (the
    uninstructed conflicts: the loss then teaches the preference rule's probability itself, not a
    coin flip drawn from it).
    """

    image: Image.Image
    prompt: str
    answer: str
    kind: str
    alternative: str | None = None
    probability: float = 1.0


@dataclass(frozen=True)
class Preference:
    """The soft target of an uninstructed conflict (the config's ``toy_training.preference``).

    ``P(text) = sigmoid(steepness × (text_strength − image_strength) + task_bias[task] + spread × z_pair)``,
    with ``z_pair`` a fixed standard normal draw per (task, vision value, text value) within one stream
    (``seed``: each curriculum stage draws its own): the balance of the evidence decides, each task
    leans its own way, and value pairs vary around it.
    """

    steepness: float
    task_bias: dict[str, float]
    spread: float
    image_strength: tuple[float, float]

    def text_probability(
        self, task_name: str, vision: str, text: str, image_strength: float, text_strength: float, seed: int
    ) -> float:
        """Probability that an uninstructed conflict with this evidence is labelled with the text answer."""
        digest = hashlib.sha256(f"{seed}|{task_name}|{vision}|{text}".encode()).digest()
        uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
        gaussian = math.sqrt(2) * _erfinv(2 * uniform - 1)
        logit = self.steepness * (text_strength - image_strength) + self.task_bias.get(task_name, 0.0) + self.spread * gaussian
        return 1 / (1 + math.exp(-logit))


def _erfinv(y: float) -> float:
    """Inverse error function by Newton's method (math has erf but no erfinv)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


EXAMPLE_KINDS = (
    "word",
    "point",
    "agreeing",
    "image_only",
    "text_only",
    "instructed",
    "instructed_agreeing",
    "uninstructed",
    "hard",
    "blank_instructed",
)


#: How often each instruction is drawn for instructed examples: following the image means reading it against
#: a context that says otherwise, which the toys learn more slowly than copying the context.
INSTRUCTION_WEIGHTS = {"text": 1.0, "image": 2.0}


def _draw_instruction(rng: random.Random) -> str:
    return rng.choices(list(INSTRUCTION_WEIGHTS), list(INSTRUCTION_WEIGHTS.values()))[0]


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
    the image instruction); ``uninstructed`` is a conflict whose soft target is the preference rule's
    probability of the text answer; ``blank_instructed`` is a conflict over a blank image under the
    image instruction, with an even soft target;
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
            instruction = _draw_instruction(rng)
            context = spec.context(claim, vision, text_strength)
            correct, wrong = vision, text
        elif kind == "image_only":
            context, correct, wrong = None, vision, text
        elif kind == "text_only":
            image, correct, wrong = blank_image(image_size), text, vision
        elif kind == "instructed":
            instruction = _draw_instruction(rng)
            correct, wrong = (vision, text) if instruction == "image" else (text, vision)
        elif kind == "hard":
            instruction = _draw_instruction(rng)
            correct = vision if instruction == "image" else text
            wrong = third
        letter = rng.choice("AB")
        if kind in ("uninstructed", "blank_instructed"):
            # Soft targets: the preference rule's probability of the text answer, or an even guess when the image
            # instruction meets an empty image (the context is ruled out and the image shows nothing).
            if kind == "uninstructed":
                p_text = preference.text_probability(spec.name, vision, text, image_strength, text_strength, seed)
            else:
                image, instruction, p_text = blank_image(image_size), "image", 0.5
            option_a, option_b = (text, vision) if letter == "A" else (vision, text)
            prompt = build_prompt(spec.question, option_a, option_b, context, instruction)
            yield Example(image, prompt, letter, kind, alternative="B" if letter == "A" else "A", probability=p_text)
            continue
        option_a, option_b = (correct, wrong) if letter == "A" else (wrong, correct)
        yield Example(image, build_prompt(spec.question, option_a, option_b, context, instruction), letter, kind)


def vocabulary_texts(tasks: list[str]) -> list[str]:
    """Every string the world can put in a prompt or an answer, for building a closed word vocabulary."""
    texts = [build_prompt("q", "A", "B", "c", instruction) for instruction in INSTRUCTIONS] + ["Which option is ?"]
    for name in tasks:
        spec = task(name)
        texts.append(spec.question)
        texts += [
            spec.context(claim, value, strength) for claim in spec.claims for value in spec.values for strength in TEXT_STRENGTHS
        ]
        texts += list(spec.values)
    return texts
