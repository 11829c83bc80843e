"""Input ablation: how far the answer moves when a modality is taken away, the reference the MCR is set against.

The MCR asks how much noise on a modality's cached keys and values moves the answer. Taking the
modality away asks directly how much the answer rests on it: the image replaced by an empty one of the
same size (:func:`empty_like`: nothing to read, the image tokens still there), or the context line left
out of the prompt. Per option order, ``P(text)`` is the probability of the text-consistent option among
(A, B), from the same float32 option logits as the MCR's prefill; the columns average both orders:

* ``p_text_clean``, ``p_text_no_image``, ``p_text_no_context``;
* ``ablation_ratio`` = ``text / (text + image)`` with ``text = max(0, clean − no_context)`` (how much the
  context pulls toward its answer) and ``image = max(0, no_image − clean)`` (how much the image pulls
  toward its own): the MCR's scale, near 1 the answer rests on the text; NaN where neither pulls.

The answer-position ablation hides a modality from the answer position only: the MCR's prefill is kept,
and the fed last token attends to every cached entry but the modality's, so the rest of the prompt has
read the modality as usual (:func:`answer_ablation`). That is all the MCR's noise can reach, since the
noise is put on the cache after the prefill; where a model carries a modality to the answer through
other positions (the options, the question), the input ablation sees it and these columns do not:

* ``p_text_answer_no_image``, ``p_text_answer_no_context`` (the MCR's text positions: the context by
  default), ``answer_ablation_ratio`` (the same ratio).

The input ablation costs four forwards (one prompt each) per record beyond the MCR's prefills, the
answer-position ablation four one-token forwards on them; neither needs ground truth, so both check
the MCR on real checkpoints too. Unlike the MCR the input ablation measures one counterfactual per
modality (an empty image is not the absence of an image to a model that never saw one), which is why
the paper's estimator perturbs instead; here it is the yardstick, not the method.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from PIL import Image

from amps.data import prompts
from amps.data.world import BACKGROUND
from amps.mcr.perturb import ModalityCopies, option_log_probability
from amps.mcr.prefill import Prefill, option_logits_float32
from amps.models.interface import MultimodalModel
from amps.vocabulary import MODALITIES, ORDERS


def empty_like(image: Image.Image) -> Image.Image:
    """An image of ``image``'s size in one flat colour (the offline world's empty image): no content to read.

    A fixed colour rather than the image's mean, which would still show a colour question's answer.
    """
    return Image.new("RGB", image.size, BACKGROUND)


def text_probability(record: Mapping, order: str, option_logits: torch.Tensor) -> float:
    """The probability of the text-consistent option among (A, B), from one prompt's two option logits."""
    return float(option_logits.float().softmax(dim=-1)[prompts.option_index(record, order, "text")])


@torch.no_grad()
def option_logits(model: MultimodalModel, record: Mapping, order: str, image: Image.Image, context: str | None) -> torch.Tensor:
    """The float32 logits of A and B after ``record``'s conflict prompt in ``order``, with this image and context.

    One prompt per forward, so that the peak memory is one prefill's (what the MCR's memory plan holds); a
    batch of the four ablated prompts raised an MCR record's peak beyond it on the small-shape GPU check.
    """
    query = prompts.conflict_query({**record, "context": context}, order)
    batch = model.encode([image], [query.prompt], locate_prompt=False).to(model.device)
    logits, _cache = option_logits_float32(model, model.option_token_ids(), **batch.inputs, use_cache=False)
    return logits[0]


def ablation_ratio(clean: float, no_image: float, no_context: float) -> float:
    """The text's share of the two modalities' pulls (see the module docstring); NaN where neither pulls."""
    text, image = max(0.0, clean - no_context), max(0.0, no_image - clean)
    return text / (text + image) if text + image > 0 else math.nan


def input_ablation(model: MultimodalModel, record: Mapping, clean_logits: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The input-ablation columns of one record, given its clean option logits per order (the MCR's prefills).

    A record without a context has nothing to leave out: its ``p_text_no_context`` is the clean one.
    """

    def mean_text_probability(image: Image.Image, context: str | None) -> float:
        return float(
            np.mean([text_probability(record, order, option_logits(model, record, order, image, context)) for order in ORDERS])
        )

    clean = float(np.mean([text_probability(record, order, clean_logits[order]) for order in ORDERS]))
    no_image = mean_text_probability(empty_like(record["image"]), record["context"])
    no_context = clean if record["context"] is None else mean_text_probability(record["image"], None)
    return {
        "p_text_clean": clean,
        "p_text_no_image": no_image,
        "p_text_no_context": no_context,
        "ablation_ratio": ablation_ratio(clean, no_image, no_context),
    }


def hidden_text_probability(model: MultimodalModel, record: Mapping, order: str, state: Prefill, modality: str) -> float:
    """P(text option) in one order with ``modality`` hidden from the fed answer token (its prefill otherwise)."""
    if not len(state.positions[modality]):
        return text_probability(record, order, state.option_logits)
    copies = ModalityCopies(state, modality)  # let go on return: one copy of the shared entries at a time
    target = prompts.option_index(record, order, "text")
    return float(option_log_probability(model, state, copies.shared, copies.hidden(), target).exp()[0])


@torch.no_grad()
def answer_ablation(model: MultimodalModel, record: Mapping, states: Mapping[str, Prefill], clean: float) -> dict[str, float]:
    """The answer-position ablation columns of one record (module docstring), from its prefill per order.

    ``clean`` is the record's ``p_text_clean``. Must run inside :func:`amps.mcr.perturb.scoring_mode`. A
    modality without positions (a prompt without a context) is not there to hide: its column is ``clean``.
    """
    hidden = {
        modality: float(
            np.mean([hidden_text_probability(model, record, order, state, modality) for order, state in states.items()])
        )
        for modality in MODALITIES
    }
    return {
        "p_text_answer_no_image": hidden["image"],
        "p_text_answer_no_context": hidden["text"],
        "answer_ablation_ratio": ablation_ratio(clean, hidden["image"], hidden["text"]),
    }
