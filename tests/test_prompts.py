"""The MC² prompt protocol and the answer parser."""

import json

import pytest

from amps.data import prompts
from amps.vocabulary import ORDERS

from conftest import MC2_DIR

MC2_FILE = MC2_DIR / "evaluate_final.json"

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


@pytest.mark.parametrize(
    ("answer", "option_a", "option_b", "expected"),
    [
        # The letter alone, wrapped or punctuated.
        ("A", "red", "blue", "A"),
        ("B", "red", "blue", "B"),
        ("A\n", "red", "blue", "A"),
        ("b", "red", "blue", "B"),
        ("(A)", "red", "blue", "A"),
        ("[B]", "red", "blue", "B"),
        ("**A**", "red", "blue", "A"),
        ("A.", "red", "blue", "A"),
        ("B)", "red", "blue", "B"),
        ("A:", "red", "blue", "A"),
        ("A,", "red", "blue", "A"),
        ("a.", "red", "blue", "A"),
        ("(b)", "red", "blue", "B"),
        # The letter, punctuation, then anything.
        ("A. red", "red", "blue", "A"),
        ("B) blue", "red", "blue", "B"),
        ("b) blue", "red", "blue", "B"),
        ("A: the image shows red", "red", "blue", "A"),
        ("**B. blue**", "red", "blue", "B"),
        ("B\n\nThe ball in the image is blue.", "red", "blue", "B"),
        ("A. a chair", "a chair", "a table", "A"),
        # The letter after a lead-in.
        ("The answer is B.", "red", "blue", "B"),
        ("The correct answer is (B) unhappy", "happy", "unhappy", "B"),
        ("Option A", "red", "blue", "A"),
        ("Option: B", "red", "blue", "B"),
        ("Choice A", "red", "blue", "A"),
        ("Answer: B", "red", "blue", "B"),
        ("**Answer:** A", "red", "blue", "A"),
        ("Answer is A", "red", "blue", "A"),
        ("The answer is: (A) red", "red", "blue", "A"),
        ("The answer is A because the image shows a red ball.", "red", "blue", "A"),
        ("Based on the image, the answer is B.", "red", "blue", "B"),
        # Sentences that open with an article: the option text decides.
        ("A man is riding a horse.", "red", "blue", None),
        ("A man is riding a horse.", "dog", "horse", "B"),
        ("a blue ball", "red", "blue", "B"),
        ("A blue ball.", "red", "blue", "B"),
        ("An elephant", "ant", "elephant", "B"),
        ("An ant.", "elephant", "ant", "B"),
        ("The answer is a", "red", "blue", None),  # cut off by max_new_tokens
        ("Apple", "red", "blue", None),
        # Option text, the longer option's span first.
        ("They are unhappy", "happy", "unhappy", "B"),
        ("happy", "unhappy", "happy", "B"),
        ("The person is not eating.", "eating", "not eating", "B"),
        ("a chair", "a chair", "a table", "A"),
        ("A table.", "a chair", "a table", "B"),
        ("The answer is a table.", "a chair", "a table", "B"),
        ("The answer is A chair.", "a table", "a chair", "B"),
        # Both letters or both options.
        ("A or B", "red", "blue", None),
        ("A and B", "red", "blue", None),
        ("Both A and B", "red", "blue", None),
        ("The answer is A or B.", "red", "blue", None),
        ("A. red B. blue", "red", "blue", None),
        ("A) red\nB) blue", "red", "blue", None),
        ("red or blue", "red", "blue", None),
        ("happy or unhappy", "happy", "unhappy", None),
        # A letter whose text names only the other option.
        ("A. blue", "red", "blue", None),
        ("The answer is B, red.", "red", "blue", None),
        ("B. happy", "happy", "unhappy", None),
        # Neither.
        ("", "red", "blue", None),
        ("C", "red", "blue", None),
        ("I cannot tell.", "red", "blue", None),
    ],
)
def test_parser_reads_llava_and_qwen_answer_styles(answer, option_a, option_b, expected):
    assert prompts.parse_letter(answer, option_a, option_b) == expected


@pytest.mark.skipif(not MC2_FILE.is_file(), reason=f"MC² records not present at {MC2_DIR}")
def test_parser_reads_every_nested_real_option_pair_in_both_orders():
    """MC²'s records where one option contains the other ("happy"/"unhappy", "eating"/"not eating")."""
    nested = [
        record
        for record in json.loads(MC2_FILE.read_text())
        if record["answer_vision"].lower() in record["answer_text"].lower()
        or record["answer_text"].lower() in record["answer_vision"].lower()
    ]
    assert len(nested) == 53
    misread = []
    for record in nested:
        for order in ORDERS:
            option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
            cases = [(f"{option_a} or {option_b}", None)]
            for letter, option, other in (("A", option_a, option_b), ("B", option_b, option_a)):
                cases += [(letter, letter), (f"{letter}.", letter), (f"The answer is {letter}", letter)]
                cases += [(option, letter), (f"The answer is {option.strip()}.", letter)]
                cases += [(f"{letter}. {option.strip()}", letter), (f"{letter}. {other.strip()}", None)]
            misread += [
                (answer, option_a, option_b)
                for answer, letter in cases
                if prompts.parse_letter(answer, option_a, option_b) != letter
            ]
    assert misread == []


def test_unknown_order_is_an_error():
    with pytest.raises(ValueError, match="sideways"):
        prompts.options_for_order("a", "b", "sideways")


def test_option_index_points_at_each_answer_in_both_orders():
    record = {"answer_vision": "red", "answer_text": "blue"}
    placed = {
        (order, modality): prompts.option_index(record, order, modality) for order in ORDERS for modality in ("vision", "text")
    }
    assert placed == {
        ("vision_first", "vision"): 0,
        ("vision_first", "text"): 1,
        ("text_first", "vision"): 1,
        ("text_first", "text"): 0,
    }
    with pytest.raises(ValueError, match="clean"):
        prompts.option_index(record, "vision_first", "clean")
