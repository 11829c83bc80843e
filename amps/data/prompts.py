"""The MC² prompt protocol and the answer parser.

One protocol serves the offline conflict world and MC² itself: the text context, the question,
options A/B, the answer instruction, each record asked in both option orders, and the benchmark's
two preference instructions. The parser reads answers as LLaVA and Qwen models write them: a
marked letter ("A", "B. blue", "The answer is (A)"), else the one option the text names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Mapping

from amps.vocabulary import ORDERS

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


def option_index(record: Mapping, order: str, modality: str) -> int:
    """Which option (0 = A, 1 = B) holds ``record``'s ``vision`` or ``text`` answer in option ``order``."""
    if modality not in ("vision", "text"):
        raise ValueError(f"unknown modality {modality!r}; expected vision or text")
    option_a, _option_b = options_for_order(record["answer_vision"], record["answer_text"], order)
    return 0 if option_a == record[f"answer_{modality}"] else 1


def conflict_query(record: Mapping, order: str, instruction: Instruction = "none") -> Query:
    """The query for an MC²-format record (``question``, ``answer_vision``, ``answer_text``, ``context``) in one
    option order (``vision_first`` or ``text_first``), with one of MC²'s preference instructions or none.

    Example::

        query = amps.conflict_query(record, "text_first")
        query.prompt                    # 'Text context: ...\nWhat colour is the bus?\nA. blue\nB. red\nAnswer the ...'
        query.option_a, query.option_b  # ('blue', 'red')
    """
    option_a, option_b = options_for_order(record["answer_vision"], record["answer_text"], order)
    prompt = build_prompt(record["question"], option_a, option_b, record["context"], instruction)
    return Query(prompt, option_a, option_b)


# A marked letter: upper case followed by punctuation or a line end, lower case by . : ) ] or a quote.
_MARK = r"(?:[AB](?:[.,:;)\]\"']+(?!\w)|[ \t]*(?:\n|$))|[ab][.:)\]\"']+(?!\w))"
_OPEN = r"[(\[\"']*"
_LEAD_IN = r"(?i:(?<!\w)(?:(?:answer|option|choice)(?:\s+is)?\s*:?\s*)+)"
# Each pattern's match ends where its letter starts.
_ALONE = re.compile(r"\W*(?=[ABab]\W*$)")
_AT_START = re.compile(rf"{_OPEN}(?={_MARK})")
_AFTER_LEAD_IN = re.compile(rf"{_LEAD_IN}{_OPEN}(?={_MARK}|[AB][ \t])")
_ANYWHERE = re.compile(rf"(?<![\w'-])(?={_MARK})")


def _named(text: str, option_a: str, option_b: str) -> set[str]:
    """The letters whose option ``text`` names on word boundaries, the longer option's span removed first."""
    remainder = text.lower()
    named = set()
    for letter, option in sorted((("A", option_a), ("B", option_b)), key=lambda pair: len(pair[1].strip()), reverse=True):
        pattern = rf"(?<!\w){re.escape(option.strip().lower())}(?!\w)"
        if re.search(pattern, remainder):
            named.add(letter)
            remainder = re.sub(pattern, " ", remainder)
    return named


def _starts_with_option(text: str, option_a: str, option_b: str) -> bool:
    """Whether ``text`` begins with an option longer than one letter, followed by a word boundary."""
    return any(
        len(option.strip()) > 1 and re.match(rf"{re.escape(option.strip().lower())}(?!\w)", text.lower())
        for option in (option_a, option_b)
    )


def parse_letter(answer: str, option_a: str, option_b: str) -> Literal["A", "B"] | None:
    """Map a model's answer to the letter it chose, or ``None``.

    Markdown ``*`` is ignored. A letter is chosen when it is the whole answer, maybe wrapped or
    punctuated ("(A)", "[b]", "A."); when it opens the answer followed by punctuation or a line end
    ("A. red", "b) blue"); or when it follows "answer", "answer is", "option" or "choice", where an
    upper-case letter may also be followed by a space ("The answer is (B) unhappy", "Option A is
    right"). A lower-case letter needs ".", ":", ")" or "]" after it unless it is the whole answer,
    so "a blue ball" is no letter; neither is a letter where the text from it on is an option ("A
    chair" for the option "a chair"). A choice is ``None`` when the answer also marks the other
    letter ("A. red B. blue") or the text after it names only the other option ("A. blue").
    Without a letter, the answer is the one option it names on word boundaries, the longer option's
    span removed first (so "unhappy" never counts as "happy"); naming both or neither is ``None``.

    Example::

        amps.parse_letter("The answer is (B) blue", "red", "blue")   # 'B'
        amps.parse_letter("a blue ball", "red", "blue")              # 'B' (no letter: the option it names)
        amps.parse_letter("A. blue", "red", "blue")                  # None (the letter and its text disagree)
    """
    text = answer.replace("*", "").strip()
    starts = [match.end() for match in (_ALONE.match(text), _AT_START.match(text), *_AFTER_LEAD_IN.finditer(text)) if match]
    starts = [start for start in starts if not _starts_with_option(text[start:], option_a, option_b)]
    if not starts:
        named = _named(text, option_a, option_b)
        return named.pop() if len(named) == 1 else None  # type: ignore[return-value]
    marked = {text[start].upper() for start in starts + [match.end() for match in _ANYWHERE.finditer(text)]}
    if len(marked) > 1:
        return None
    letter = marked.pop()
    if _named(text[min(starts) + 1 :], option_a, option_b) == {"B" if letter == "A" else "A"}:
        return None
    return letter  # type: ignore[return-value]


def classify(answer: str, record: Mapping, order: str) -> Choice:
    """Which modality an answer followed for a record asked in ``order``: ``vision``, ``text`` or ``other``
    (:func:`parse_letter` found no option).

    Example::

        amps.classify("B", record, "text_first")   # 'vision': in that order B is the image's answer
    """
    option_a, option_b = options_for_order(record["answer_vision"], record["answer_text"], order)
    letter = parse_letter(answer, option_a, option_b)
    if letter is None:
        return "other"
    chosen = option_a if letter == "A" else option_b
    return "vision" if chosen == record["answer_vision"] else "text"
