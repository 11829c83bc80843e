"""The MC² prompt protocol and the answer parser."""

import pytest

from amps import prompts

RECORD = {
    "question": "What is the mood?",
    "answer_vision": "happy",
    "answer_text": "unhappy",
    "context": "Everyone looks unhappy.",
}


def test_prompt_follows_the_mc2_protocol():
    text = prompts.conflict_query(RECORD, "text_first", "image").prompt
    lines = text.split("\n")
    assert lines[0] == "Text context: Everyone looks unhappy."
    assert lines[1] == prompts.INSTRUCTIONS["image"]
    assert lines[2:] == ["What is the mood?", "A. unhappy", "B. happy", prompts.ANSWER_INSTRUCTION]


def test_no_instruction_adds_no_line():
    assert prompts.conflict_query(RECORD, "vision_first").prompt.count("\n") == 4


@pytest.mark.parametrize(
    ("answer", "order", "expected"),
    [
        ("A", "vision_first", "vision"),
        ("B", "vision_first", "text"),
        ("A", "text_first", "text"),
        ("(B) happy", "text_first", "vision"),
        ("Answer: A", "vision_first", "vision"),
        ("happy", "vision_first", "vision"),
        ("unhappy", "vision_first", "text"),
        ("they are unhappy", "text_first", "text"),
        ("happy or unhappy", "vision_first", "other"),
        ("C", "vision_first", "other"),
        ("", "vision_first", "other"),
        ("Apple", "vision_first", "other"),
    ],
)
def test_classify_matches_letter_first_then_words(answer, order, expected):
    assert prompts.classify(answer, RECORD, order) == expected


def test_unknown_order_is_an_error():
    with pytest.raises(ValueError, match="sideways"):
        prompts.options_for_order("a", "b", "sideways")
