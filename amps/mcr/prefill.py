"""The MCR's prefill: one prompt run once, its cache kept without the last position (which scoring feeds again),
and the two option logits in float32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import Cache

from amps.models.interface import Batch, MultimodalModel


@dataclass
class Prefill:
    """One prompt prefilled once: the cache without its last position, and what scoring needs.

    ``layers`` holds each decoder layer's (keys, values), shaped [1, kv_heads, length - 1, head_dim];
    ``positions`` maps each modality to the cache positions it occupies; ``option_logits`` are the
    clean logits of A and B at the last prompt position, in float32.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    last_token: torch.Tensor
    last_position_ids: torch.Tensor
    positions: dict[str, torch.Tensor]
    option_ids: tuple[int, int]
    option_logits: torch.Tensor


def prompt_position_ids(model: MultimodalModel, batch: Batch) -> torch.Tensor:
    """The position ids the model uses for the prompt: [batch, length], or [3, batch, length] for M-RoPE.

    M-RoPE families (Qwen2-VL, Qwen2.5-VL) derive positions from the image grid; they are computed
    with the model's own ``get_rope_index`` so that the re-fed last token gets the same position as
    in the prefill.
    """
    if "position_ids" in batch.inputs:
        return batch.inputs["position_ids"]
    keys = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
    extra = {key: batch.inputs[key] for key in keys if key in batch.inputs}
    position_ids, _deltas = model.model.model.get_rope_index(
        batch.input_ids,
        mm_token_type_ids=batch.inputs["mm_token_type_ids"],
        attention_mask=batch.attention_mask,
        **extra,
    )
    return position_ids


def option_logits_float32(model: MultimodalModel, option_ids: Sequence[int], **inputs) -> tuple[torch.Tensor, Cache | None]:
    """The logits of ``option_ids`` at the last position, in float32, and the forward's cache.

    Runs the base model (no output layer) on ``inputs`` and takes the final hidden state, after the
    final norm, at the last position. The options' logits are its product with their rows of the
    output layer (plus their bias entries, if it has a bias), both cast to float32, so they keep
    float32 precision whatever the model's dtype: a bf16 output layer would round a logit of 16-32
    to a multiple of 0.125. Only two rows are read, never the whole vocabulary. Differentiable in
    the inputs (and the cache). Returns ([rows, len(option_ids)], the returned cache or None).
    """
    output = model.model.model(**inputs)
    head = model.model.get_output_embeddings()
    ids = torch.tensor(list(option_ids), device=head.weight.device)
    hidden = output.last_hidden_state[:, -1].to(head.weight.device).float()
    logits = hidden @ head.weight[ids].float().T
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[ids].float()
    return logits, output.cache


@torch.no_grad()
def prefill(model: MultimodalModel, batch: Batch, text: str = "context") -> Prefill:
    """Run the prompt once and keep its cache, minus the last position (which scoring feeds again).

    ``text`` says which positions are the text modality (:data:`TEXT_POSITIONS`); a prompt without a
    context has no text positions under ``context`` (its text contributes nothing).
    """
    if batch.input_ids.shape[0] != 1:
        raise ValueError(f"the MCR prefill takes one prompt at a time, got a batch of {batch.input_ids.shape[0]}")
    batch = batch.to(model.device)  # encoded on the host
    text_mask = batch.context_mask if text == "context" else batch.text_mask
    if text_mask is None:
        raise ValueError(
            f"the MCR needs the {text}'s positions: encode the batch with locate_prompt=True"
            + (" and its context" if text == "context" else "")
        )
    position_ids = prompt_position_ids(model, batch)
    logits, cache = option_logits_float32(
        model, model.option_token_ids(), **dict(batch.inputs, position_ids=position_ids), use_cache=True
    )
    cache.crop(-1)
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    last = batch.input_ids.shape[1] - 1
    positions = {}
    for modality, mask in (("text", text_mask), ("image", batch.image_mask)):
        if mask[0, last]:
            raise ValueError(f"the last prompt token is a {modality} token; it is fed live, so it cannot be perturbed")
        positions[modality] = mask[0, :last].nonzero().flatten()
    if len(positions["image"]) == 0 or (text == "prompt" and len(positions["text"]) == 0):
        missing = "image" if len(positions["image"]) == 0 else "text"
        raise ValueError(f"the prompt has no {missing} positions to perturb")
    return Prefill(
        layers=layers,
        last_token=batch.input_ids[:, last:],
        last_position_ids=position_ids[..., last:],
        positions=positions,
        option_ids=model.option_token_ids(),
        option_logits=logits[0],
    )
