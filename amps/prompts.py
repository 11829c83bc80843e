"""The MC² prompt protocol and the answer parser.

One protocol serves the offline conflict world and MC² itself: the text context, the question,
options A/B, the answer instruction, each record asked in both option orders, and the benchmark's
two preference instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ANSWER_INSTRUCTION = "Answer the question by selecting the correct answer A or B."

#: The MC² authors' preference instructions, verbatim.
INSTRUCTIONS: dict[str, str] = {
    "none": "",
    "text": (
        "In case there is an inconsistency between the Text Context and the input image content, "
        "you must rely on the text context rather than the input image content."
    ),
    "image": (
        "In case there is an inconsistency between the text context and the image content, "
        "you should follow the image content rather than the text context."
    ),
}

Instruction = Literal["none", "text", "image"]
#: Option order: "vision_first" puts answer_vision at A, "text_first" puts answer_text at A.
ORDERS: tuple[str, str] = ("vision_first", "text_first")
#: Parsed outcome of one answer.
Choice = Literal["vision", "text", "other"]


@dataclass(frozen=True)
class Query:
    """One question as posed to a model: the prompt text and what each letter means."""

    prompt: str
    option_a: str
    option_b: str


def build_prompt(
    question: str,
    option_a: str,
    option_b: str,
    context: str | None = None,
    instruction: Instruction = "none",
) -> str:
    """Render the MC² prompt. ``context=None`` omits the text context (image-only questions)."""
    lines = []
    if context is not None:
        lines.append(f"Text context: {context}")
    if INSTRUCTIONS[instruction]:
        lines.append(INSTRUCTIONS[instruction])
    lines += [question, f"A. {option_a}", f"B. {option_b}", ANSWER_INSTRUCTION]
    return "\n".join(lines)


def options_for_order(answer_vision: str, answer_text: str, order: str) -> tuple[str, str]:
    """Return (option A, option B) for an option order."""
    if order == "vision_first":
        return answer_vision, answer_text
    if order == "text_first":
        return answer_text, answer_vision
    raise ValueError(f"unknown option order {order!r}; expected one of {ORDERS}")


def conflict_query(record: dict, order: str, instruction: Instruction = "none") -> Query:
    """The query for an MC²-format record in one option order."""
    option_a, option_b = options_for_order(record["answer_vision"], record["answer_text"], order)
    prompt = build_prompt(record["question"], option_a, option_b, record["context"], instruction)
    return Query(prompt, option_a, option_b)


_LETTER = re.compile(r"^\W*(?:the\s+)?(?:answer\s*(?:is)?\s*:?\s*)?\(?([AB])\b", re.IGNORECASE)


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(option.strip().lower())}(?!\w)", text.lower()) is not None


def _starts_with_option(text: str, option_a: str, option_b: str) -> bool:
    """Whether ``text`` begins with an option longer than one letter, followed by a word boundary."""
    return any(
        len(option.strip()) > 1 and re.match(rf"{re.escape(option.strip().lower())}(?!\w)", text.lower())
        for option in (option_a, option_b)
    )


def parse_letter(answer: str, option_a: str, option_b: str) -> Literal["A", "B"] | None:
    """Map a model's answer to the letter it chose, or ``None``.

    The letter is matched first (a leading ``A``/``B``, optionally after "Answer:" or "("), unless
    the text from there on is an option's own text (MC² has options such as "a chair", which start
    like the letter A); otherwise the option text on word boundaries, and only if exactly one
    option matches once the longer option's span is removed (so "unhappy" never counts as "happy").
    """
    text = answer.strip()
    match = _LETTER.match(text)
    if match and not _starts_with_option(text[match.start(1) :], option_a, option_b):
        return match.group(1).upper()  # type: ignore[return-value]
    longer, shorter = sorted((option_a, option_b), key=len, reverse=True)
    hits = {}
    remainder = text.lower()
    if _mentions(remainder, longer):
        hits[longer] = True
        remainder = re.sub(rf"(?<!\w){re.escape(longer.strip().lower())}(?!\w)", " ", remainder)
    if _mentions(remainder, shorter):
        hits[shorter] = True
    if len(hits) != 1:
        return None
    chosen = next(iter(hits))
    return "A" if chosen == option_a else "B"


def classify(answer: str, record: dict, order: str) -> Choice:
    """Which modality an answer followed for a record asked in ``order``."""
    option_a, option_b = options_for_order(record["answer_vision"], record["answer_text"], order)
    letter = parse_letter(answer, option_a, option_b)
    if letter is None:
        return "other"
    chosen = option_a if letter == "A" else option_b
    return "vision" if chosen == record["answer_vision"] else "text"
