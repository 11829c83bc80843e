"""A check that the option tokens are the answers, run at the start of every MCR and evaluation job.

The MCR scores a prompt by the logits of the tokens "A" and "B" (:meth:`MultimodalModel.option_token_ids
<amps.models.interface.MultimodalModel.option_token_ids>`) at the last prompt position; the evaluations
parse what the model writes. Where the tokenizer's "A" is not the token the model writes (another spelling
of the letter, a word-start marker it does not use), the MCR would score a choice the model never makes.
:func:`check_option_tokens` asks a job's first prompts unsteered and requires the higher of the two option
scores (in float32, as the MCR computes them) to be the parsed letter of at least :data:`MIN_AGREEMENT` of
the greedy answers that open with a letter; otherwise the job stops, naming the option tokens and the tokens the
answers begin with.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import torch

from amps.data import prompts
from amps.mcr.prefill import option_logits_float32
from amps.models.asking import QuestionBatches, greedy_tokens
from amps.models.interface import MultimodalModel

log = logging.getLogger(__name__)

#: How many of a job's first prompts the check asks.
CHECK_PROMPTS = 64
#: The least share of letter answers whose letter the option scores must pick.
MIN_AGREEMENT = 0.95


@dataclass(frozen=True)
class OptionCheck:
    """What the check saw: the prompts asked, the answers that open with their letter, and those the option scores pick."""

    prompts: int
    letters: int
    agreeing: int


def opens_with_letter(answer: str, letter: str) -> bool:
    """Whether ``answer`` opens with ``letter`` itself ("A", "(B)", "A. red"): the answers whose first token the
    option scores must match. An answer that names its choice otherwise ("The answer is B", "blue") is not
    scored: its first token is a word, whatever the tokenizer's letters are.

    Example::

        opens_with_letter("(B) blue", "B"), opens_with_letter("The answer is B", "B")     # (True, False)
    """
    text = answer.replace("*", "").strip().lstrip("([").upper()
    return text[:1] == letter and not text[1:2].isalpha()


@torch.no_grad()
def check_option_tokens(
    model: MultimodalModel, batches: QuestionBatches, max_new_tokens: int, desc: str, prompts_asked: int = CHECK_PROMPTS
) -> OptionCheck:
    """Stop unless the two option scores pick the parsed greedy letter on the first ``prompts_asked`` prompts.

    Each of the first batches is answered greedily (as the evaluations answer) and scored as the MCR scores:
    the logits of the option tokens from the final hidden state, in float32. Where the answer opens with the
    letter it is parsed as (:func:`opens_with_letter`), the higher score must be that letter in at least
    :data:`MIN_AGREEMENT` of those answers, or a ``ValueError`` names the option tokens and the tokens the
    answers begin with. No such answer at all (an untrained model) leaves nothing to check: logged, not an error.

    Example::

        batches = QuestionBatches(model, benchmark, records, evaluation_questions(records, "conflict"), 16, keep=True)
        check_option_tokens(model, batches, max_new_tokens=4, desc="baseline toy-s")  # OptionCheck(64, 64, 64)
    """
    asked = letters = agreeing = 0
    disagreeing_first: Counter[int] = Counter()
    for chunk, batch in batches.head(prompts_asked):
        tokens = greedy_tokens(model, chunk, batch, max_new_tokens)
        scores, _cache = option_logits_float32(model, model.option_token_ids(), **batch.to(model.device).inputs, use_cache=False)
        picked = scores.argmax(dim=-1).tolist()
        for question, text, row_tokens, choice in zip(chunk, model.decode(tokens), tokens, picked):
            letter = prompts.parse_letter(text, question.option_a, question.option_b)
            if letter is None or not opens_with_letter(text, letter):
                continue
            letters += 1
            if "AB"[choice] == letter:
                agreeing += 1
            else:
                disagreeing_first[row_tokens[0]] += 1
        asked += len(chunk)
    check = OptionCheck(asked, letters, agreeing)
    options = ", ".join(model.token_text(token) for token in model.option_token_ids())
    if letters == 0:
        log.warning("%s: none of the first %d answers opens with a letter: option tokens %s unchecked", desc, asked, options)
    elif agreeing < MIN_AGREEMENT * letters:
        begins = ", ".join(f"{model.token_text(token)} ×{count}" for token, count in disagreeing_first.most_common(5))
        raise ValueError(
            f"{desc}: the option tokens {options} are not the answers the model writes: on its first {asked} prompts the "
            f"higher of their two scores is the parsed letter of only {agreeing} of {letters} letter answers (at least "
            f"{MIN_AGREEMENT:.0%} needed); the others begin with {begins}. The MCR scores these two tokens: the tokenizer's "
            f'"A" and "B" must be the tokens the model writes first'
        )
    else:
        log.info("%s: option tokens %s pick %d of %d letter answers (first %d prompts)", desc, options, agreeing, letters, asked)
    return check
