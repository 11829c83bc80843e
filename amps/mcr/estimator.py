"""The Modality Contribution Ratio (MCR): Monte Carlo functional entropy on the KV cache.

For one prompt, ``f`` is the model's probability of one answer (by default its own clean answer).
Gaussian noise on the cached keys and values of one modality's positions, in every decoder layer,
makes ``f`` a random variable; how much it varies says how much the answer rests on that modality.
Two estimators are reported, both from the same ``N`` samples:

* the functional entropy ``Ent(f) = E[f log f] - E[f] log E[f]``;
* the Fisher-information term of the Gaussian log-Sobolev inequality, ``E[|grad f|^2 / f]``, with the
  gradient taken with respect to the standard normal noise ``eps`` (the perturbation is
  ``sigma * spread * eps``), so that ``Ent(f) <= E[|grad f|^2 / f] / 2`` holds for every ``f``.

``MCS_m`` is modality ``m``'s score and ``MCR = MCS_text / (MCS_text + MCS_image)``: near 1 the answer
rests on the text, near 0 on the image.

Choices, and why:

* The prompt is the plain conflict prompt (no instruction). Each record is estimated in both option
  orders and ``MCS_m`` is the mean of the two orders' scores, so that the answer letter's own
  position (A or B) cannot dominate; the per-order scores are kept in the table.
* ``f`` is the softmax over the two option tokens (A, B) only: the quantity of interest is which
  option the model prefers, not how sure it is that an option letter comes next at all. The two
  option logits are computed in float32 from the final hidden state (after the final norm) and the
  output layer's two rows (:func:`option_logits_float32`), whatever the model's dtype: a bf16 output
  layer rounds letter logits of 16-32 to steps of 0.125, noise that would inflate the entropy.
* "Text positions" are, by default (``text: context``), the tokens of the text context: the text
  evidence that conflicts with the image. The question, the options and the answer line are needed
  whichever modality the answer rests on (noise on an option line scrambles which letter names which
  value), so counting them as text made the MCR blind to the evidence: on a trained toy, removing
  the context moved it by about 0.01 although the answer switched to the image. ``text: prompt``
  takes the whole user prompt instead. Never the chat template's fixed tokens. A prompt without a
  context has no text evidence: its text score is 0. "Image positions" are the image tokens.
* The noise scale is ``sigma`` times the per-channel spread: the standard deviation (population, so
  a single position gives zero noise rather than NaN) over the modality's positions of each key and
  value channel, per layer and head.
* The prompt is prefilled once. Its last position is cropped from the cache and fed again against
  ``N`` perturbed copies of the cache in batched one-token forwards (at most ``max_batch`` rows per
  pass); the prefill is never re-run. A row holds only its own copy of the perturbed entries; the
  clean entries of the other positions are shared by all rows through a split attention
  (:func:`split_attention`, registered with transformers' attention interface), which reads them
  once per pass. The cost beyond the prefill thus follows the perturbed entries, not the cache.
* The Fisher term's gradient is taken by autograd with respect to the perturbed entries and mapped
  to the noise by the chain rule (the perturbation is affine), in the same pass as ``f``.
* Randomness: each (record, option order, modality) has its own generator seeded from the config
  seed, the record id and the settings' ``stream`` name (empty for the main run; a re-estimate
  under another name draws independently of it); the samples are drawn from it one after another.
  A record's numbers thus depend neither on its shard nor on ``max_batch`` (on a given device type).
* Standard errors are delta-method Monte Carlo errors; they fall as ``1/sqrt(N)``. A non-finite
  sample is never averaged away: the record's estimates become NaN and its ``problem`` column says
  which order, modality and estimator failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from transformers import AttentionInterface, Cache, DynamicCache
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from amps.data import prompts
from amps.data.benchmark import Benchmark
from amps.mcr.table import COLUMNS
from amps.models.interface import Batch, MultimodalModel
from amps.core.progress import progress
from amps.mcr.settings import EstimatorSettings
from amps.vocabulary import MODALITIES, ORDERS

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate and its standard error."""

    value: float
    se: float


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


@dataclass
class Samples:
    """The ``N`` Monte Carlo values of ``f`` and, when computed, of ``|grad f|^2 / f``."""

    f: np.ndarray
    fisher: np.ndarray | None


# ----------------------------------------------------------------------------- prefill


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


def option_logits_float32(
    model: MultimodalModel, option_ids: Sequence[int], **inputs
) -> tuple[torch.Tensor, Cache | None]:
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
    text_mask = batch.context_mask if text == "context" else batch.text_mask
    if text_mask is None:
        raise ValueError(f"the MCR needs the {text}'s positions: encode the batch with locate_prompt=True"
                         + (" and its context" if text == "context" else ""))
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


# ----------------------------------------------------------------------------- perturbation


def position_index(positions: torch.Tensor) -> slice | torch.Tensor:
    """A slice when the positions form one contiguous run (a view, written in place), else the index tensor."""
    first, last = int(positions[0]), int(positions[-1])
    if last - first + 1 == len(positions):
        return slice(first, last + 1)
    return positions


def channel_spread(entries: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Per-channel spread of cache entries over ``positions``: [1, kv_heads, 1, head_dim], float32."""
    return entries[:, :, position_index(positions), :].float().std(dim=2, keepdim=True, correction=0)


def noise_scales(state: Prefill, modality: str, sigma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``sigma`` times the per-channel spread of the keys and of the values, per layer, in the cache dtype."""
    positions = state.positions[modality]
    return [
        (
            (sigma * channel_spread(keys, positions.to(keys.device))).to(keys.dtype),
            (sigma * channel_spread(values, positions.to(values.device))).to(values.dtype),
        )
        for keys, values in state.layers
    ]


def noise_shape(state: Prefill, modality: str) -> tuple[int, ...]:
    """Shape of one sample's standard normal noise: [layers, 2 (keys, values), kv_heads, positions, head_dim]."""
    shapes = {tuple(keys.shape) for keys, _ in state.layers} | {tuple(values.shape) for _, values in state.layers}
    if len(shapes) != 1:
        raise ValueError(f"cache layers differ in shape ({sorted(shapes)}); the MCR needs one shape for all layers")
    _, heads, _, head_dim = next(iter(shapes))
    return (len(state.layers), 2, heads, len(state.positions[modality]), head_dim)


def stream_seed(seed: int, record_id: str, order: str, modality: str, stream: str = "") -> int:
    """A stable 63-bit seed for one (record, option order, modality) noise stream.

    ``stream`` names a set of draws: the empty name gives the main run's seeds, any other name
    seeds independent of them (and of every other name's).
    """
    key = f"{seed}|{record_id}|{order}|{modality}" + (f"|stream={stream}" if stream else "")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def draw_noise(generator: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` ([samples, *noise shape]) with standard normal noise, one sample after another.

    Drawing sample by sample from the stream means that cutting it into passes of any size never
    changes a sample.
    """
    for sample in out:
        sample.normal_(generator=generator)
    return out


def split_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of one query per row over shared cache entries plus the row's own entries.

    ``key``/``value`` [rows, kv_heads, own + 1, head_dim] are the row's own entries (the perturbed
    positions, then the fed token); ``kwargs["mcr_shared"][layer]`` holds the clean entries every
    row shares, [1, kv_heads, shared, head_dim]. Keys are cached after their rotary embedding, so
    attention over the union is attention over the whole cache: the shared keys are read once per
    pass (one matrix product for all rows) instead of once per row. Registered with transformers'
    attention interface, so it serves every model that dispatches attention through it.
    """
    if query.shape[2] != 1:
        raise ValueError(f"split attention scores one fed token per row, got {query.shape[2]} query positions")
    if attention_mask is not None:
        masked = ~attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
        if masked.any():
            raise ValueError("split attention needs an unmasked cache (one prompt, no padding)")
    if kwargs.get("sliding_window") is not None:
        raise ValueError("split attention attends to the whole cache; this model's layer uses a sliding window")
    shared_keys, shared_values = kwargs["mcr_shared"][module.layer_idx]
    rows, heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    # Query head h reads key-value head h // groups (the layout of transformers' repeat_kv).
    grouped = query.reshape(rows, kv_heads, groups, head_dim)
    by_head = grouped.transpose(0, 1).reshape(kv_heads, rows * groups, head_dim)
    shared_scores = torch.bmm(by_head, shared_keys[0].transpose(1, 2)).reshape(kv_heads, rows, groups, -1).transpose(0, 1)
    own_scores = torch.matmul(grouped, key.transpose(2, 3))
    weights = torch.cat([shared_scores, own_scores], dim=-1).mul(scaling).softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    shared_weights, own_weights = weights.split([shared_scores.shape[-1], own_scores.shape[-1]], dim=-1)
    shared_part = torch.bmm(shared_weights.transpose(0, 1).reshape(kv_heads, rows * groups, -1), shared_values[0])
    output = shared_part.reshape(kv_heads, rows, groups, head_dim).transpose(0, 1) + torch.matmul(own_weights, value)
    return output.reshape(rows, heads, 1, head_dim).transpose(1, 2), None


SPLIT_ATTENTION = "amps_mcr_split"
AttentionInterface.register(SPLIT_ATTENTION, split_attention)
AttentionMaskInterface.register(SPLIT_ATTENTION, sdpa_mask)


class ModalityCopies:
    """Per-row perturbed copies of one modality's cache entries, and the clean entries all rows share.

    A row's cache is the union of its own entries at the modality's positions (``clean + scale *
    noise``, written into ``buffers`` reused from pass to pass) and the ``shared`` entries everywhere
    else: the clean entries themselves, held once for all rows.
    """

    def __init__(self, state: Prefill, modality: str, rows: int):
        positions = state.positions[modality].cpu()
        length = state.layers[0][0].shape[2]
        is_shared = torch.ones(length, dtype=torch.bool)
        is_shared[positions] = False
        self.shared_positions = is_shared.nonzero().flatten()
        self.shared = [
            (keys[:, :, self.shared_positions.to(keys.device)], values[:, :, self.shared_positions.to(values.device)])
            for keys, values in state.layers
        ]
        self.clean = [
            (keys[:, :, position_index(positions.to(keys.device))], values[:, :, position_index(positions.to(values.device))])
            for keys, values in state.layers
        ]
        self.buffers = [
            (keys.new_empty((rows, *keys.shape[1:])), values.new_empty((rows, *values.shape[1:])))
            for keys, values in self.clean
        ]

    def perturb(self, scales: list[tuple[torch.Tensor, torch.Tensor]], noise: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The perturbed entries for ``len(noise)`` rows: ``clean + scale * noise`` per layer, as (keys, values)."""
        rows = noise.shape[0]
        layers = []
        for index, ((keys, values), (clean_keys, clean_values)) in enumerate(zip(self.buffers, self.clean)):
            key_scale, value_scale = scales[index]
            torch.addcmul(clean_keys, key_scale, noise[:, index, 0].to(keys.device), out=keys[:rows])
            torch.addcmul(clean_values, value_scale, noise[:, index, 1].to(values.device), out=values[:rows])
            layers.append((keys[:rows], values[:rows]))
        return layers


def cache_of(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A DynamicCache holding ``layers`` as they are.

    ``DynamicCache(ddp_cache_data=...)`` would copy every tensor once more (it concatenates onto an
    empty one), so the tensors are placed in the initialised layers directly. The forward then
    appends the fed token by concatenation, leaving these tensors unchanged.
    """
    cache = DynamicCache(ddp_cache_data=[(keys[:, :, :0], values[:, :, :0]) for keys, values in layers])
    for layer, (keys, values) in zip(cache.layers, layers):
        layer.keys, layer.values = keys, values
    return cache


@contextlib.contextmanager
def scoring_mode(model: MultimodalModel) -> Iterator[None]:
    """Inside the block: weights without gradients (only the cache needs them), and split attention.

    Both are restored on exit, also on error. Nested blocks do nothing (the outer one restores), so
    a caller can hold the mode over many scoring calls. A prefill must run outside it.
    """
    decoder = model.model.get_decoder()
    implementation = decoder.config._attn_implementation
    if implementation == SPLIT_ATTENTION:  # already inside an enclosing scoring_mode
        yield
        return
    flags = [(parameter, parameter.requires_grad) for parameter in model.model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    decoder.set_attn_implementation(SPLIT_ATTENTION)
    try:
        yield
    finally:
        decoder.set_attn_implementation(implementation)
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def option_log_probability(
    model: MultimodalModel,
    state: Prefill,
    shared: list[tuple[torch.Tensor, torch.Tensor]],
    own: list[tuple[torch.Tensor, torch.Tensor]],
    target: int,
) -> torch.Tensor:
    """log f for each row: the log softmax over (A, B) of option ``target`` after feeding the last token.

    ``own`` are each row's own cache entries, ``shared`` the entries all rows share (see
    :func:`split_attention`). Must run inside :func:`scoring_mode`.
    """
    count = own[0][0].shape[0]
    position_ids = state.last_position_ids.expand(*state.last_position_ids.shape[:-2], count, 1)
    option_logits, _cache = option_logits_float32(
        model,
        state.option_ids,
        input_ids=state.last_token.expand(count, 1),
        position_ids=position_ids,
        cache=cache_of(own),
        use_cache=True,
        mcr_shared=shared,
    )
    return option_logits.log_softmax(dim=-1)[:, target]


def sample_plan(samples: int, max_batch: int) -> list[int]:
    """Rows of each batched pass: ``samples`` cut into passes of at most ``max_batch``."""
    return [min(max_batch, samples - start) for start in range(0, samples, max_batch)]


def fisher_terms(gradients: Sequence[torch.Tensor], scales: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``|grad_eps log f|^2`` per row from the gradients of ``log f`` with respect to the perturbed entries.

    The perturbation is affine (``entry = clean + scale * eps``), so ``grad_eps = scale * grad_entry``.
    ``gradients`` alternate keys and values, layer by layer.
    """
    total = torch.zeros(gradients[0].shape[0], dtype=torch.float32, device=gradients[0].device)
    for index, gradient in enumerate(gradients):
        scaled = gradient * scales[index // 2][index % 2].to(gradient.device)
        # A norm over one contiguous axis: far faster than reducing over the positions axis in place.
        total += torch.linalg.vector_norm(scaled.flatten(1), dim=1, dtype=torch.float32).to(total.device) ** 2
    return total


def score_samples(
    model: MultimodalModel,
    state: Prefill,
    target: int,
    generators: dict[str, torch.Generator],
    settings: EstimatorSettings,
    max_batch: int,
) -> dict[str, Samples]:
    """Evaluate ``f`` (and ``|grad f|^2 / f``) on ``settings.samples`` perturbations of each modality.

    ``generators`` maps each modality to its noise stream. Samples go in batched passes of at most
    ``max_batch`` rows. With ``settings.fisher`` the gradient of ``log f`` with respect to the
    perturbed entries is taken by autograd in the same pass.
    """
    plan = sample_plan(settings.samples, max_batch)
    dtype, device = state.layers[0][0].dtype, state.layers[0][0].device
    scored = {}
    with scoring_mode(model):
        for modality, generator in generators.items():
            copies = ModalityCopies(state, modality, plan[0])
            scales = noise_scales(state, modality, settings.sigma)
            noise = torch.empty((plan[0], *noise_shape(state, modality)), dtype=dtype, device=device)
            f_parts, fisher_parts = [], []
            for rows in plan:
                own = copies.perturb(scales, draw_noise(generator, noise[:rows]))
                if settings.fisher:
                    leaves = [(keys.detach().requires_grad_(), values.detach().requires_grad_()) for keys, values in own]
                    with torch.enable_grad():
                        log_f = option_log_probability(model, state, copies.shared, leaves, target)
                        # Rows are independent, so the gradient of the sum holds each row's own gradient.
                        gradients = torch.autograd.grad(log_f.sum(), [part for pair in leaves for part in pair])
                    f = log_f.detach().exp()
                    # |grad f|^2 / f = f |grad log f|^2, which stays finite where f underflows.
                    fisher_parts.append((f * fisher_terms(gradients, scales).to(f.device)).double().cpu().numpy())
                else:
                    with torch.no_grad():
                        f = option_log_probability(model, state, copies.shared, own, target).exp()
                f_parts.append(f.double().cpu().numpy())
            scored[modality] = Samples(np.concatenate(f_parts), np.concatenate(fisher_parts) if settings.fisher else None)
    return scored


# ----------------------------------------------------------------------------- estimators


def functional_entropy(f: np.ndarray) -> Estimate:
    """``E[f log f] - E[f] log E[f]`` and its delta-method standard error.

    Computed as ``mean(f (log f - log mean f))`` in float64 (the same quantity), so that equal
    samples give zero up to rounding rather than the difference of two large terms. ``0 log 0 = 0``.
    Non-finite samples give NaN.
    """
    f = np.asarray(f, dtype=np.float64)
    if len(f) < 2:
        raise ValueError(f"the functional entropy needs at least 2 samples, got {len(f)}")
    if not np.isfinite(f).all() or (f < 0).any():
        return Estimate(math.nan, math.nan)
    mean = f.mean()
    if mean == 0:
        return Estimate(0.0, 0.0)
    log_f = np.log(np.where(f > 0, f, 1.0))
    log_mean = math.log(mean)
    entropy = float(np.mean(f * (log_f - log_mean)))
    # Influence of each sample on g(a, b) = a - b log b, with a = mean(f log f) and b = mean(f).
    influence = f * log_f - (log_mean + 1.0) * f
    return Estimate(entropy, float(influence.std(ddof=1) / math.sqrt(len(f))))


def sample_mean(values: np.ndarray) -> Estimate:
    """The mean of Monte Carlo values and its standard error (NaN if any value is non-finite)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        return Estimate(math.nan, math.nan)
    return Estimate(float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))))


def order_average(estimates: Sequence[Estimate]) -> Estimate:
    """The mean of independent estimates (one per option order) and its standard error."""
    count = len(estimates)
    return Estimate(
        sum(estimate.value for estimate in estimates) / count,
        math.sqrt(sum(estimate.se**2 for estimate in estimates)) / count,
    )


def contribution_ratio(text: Estimate, image: Estimate) -> Estimate:
    """``text / (text + image)`` and its delta-method standard error (the two are drawn independently)."""
    total = text.value + image.value
    if not total > 0:
        return Estimate(math.nan, math.nan)
    se = math.sqrt((image.value * text.se) ** 2 + (text.value * image.se) ** 2) / total**2
    return Estimate(text.value / total, se)


# ----------------------------------------------------------------------------- records


def target_index(record, order: str, answer: str, option_logits: torch.Tensor) -> int:
    """Which option (0 = A, 1 = B) ``f`` scores: the clean argmax, or the vision- or text-consistent option."""
    if answer == "clean":
        return int(option_logits.argmax())
    option_a, _option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
    wanted = record["answer_vision"] if answer == "vision" else record["answer_text"]
    return 0 if option_a == wanted else 1


@dataclass
class OrderScores:
    """One option order's estimates per modality: functional entropy and, when computed, the Fisher term."""

    entropy: dict[str, Estimate]
    fisher: dict[str, Estimate] | None


def clean_answer(record, order: str, state: Prefill) -> dict:
    """Which modality the unperturbed answer follows in ``order``, and its probability among (A, B)."""
    query = prompts.conflict_query(record, order)
    probabilities = state.option_logits.softmax(dim=-1)
    letter = int(probabilities.argmax())
    chosen = query.option_a if letter == 0 else query.option_b
    return {
        f"clean_choice_{order}": "vision" if chosen == record["answer_vision"] else "text",
        f"clean_p_{order}": float(probabilities[letter]),
    }


def non_finite_problems(order: str, state: Prefill, scored: dict[str, Samples]) -> list[str]:
    """What in one order's prefill or samples is NaN or infinite, in words (empty when all is finite)."""
    problems = []
    if not torch.isfinite(state.option_logits).all():
        problems.append(f"{order}: clean option logits non-finite")
    for modality, samples in scored.items():
        for name, values in (("samples of f", samples.f), ("Fisher terms", samples.fisher)):
            bad = 0 if values is None else int((~np.isfinite(values)).sum())
            if bad:
                problems.append(f"{order} {modality}: {bad} of {len(values)} {name} non-finite")
    return problems


def score_order(model: MultimodalModel, record, order: str, state: Prefill, settings: EstimatorSettings,
                max_batch: int) -> tuple[OrderScores, list[str]]:
    """Both modalities' estimates for one option order, with each modality's own seeded noise stream."""
    target = target_index(record, order, settings.answer, state.option_logits)
    device = state.layers[0][0].device
    generators = {
        modality: torch.Generator(device=device).manual_seed(
            stream_seed(settings.seed, record["record_id"], order, modality, settings.stream)
        )
        for modality in MODALITIES
        if len(state.positions[modality])
    }
    scored = score_samples(model, state, target, generators, settings, max_batch)
    # A modality with no positions (a prompt without a context) contributes nothing: exactly 0.
    absent = {modality: Estimate(0.0, 0.0) for modality in MODALITIES if modality not in scored}
    entropy = {**{modality: functional_entropy(samples.f) for modality, samples in scored.items()}, **absent}
    fisher = {**{modality: sample_mean(samples.fisher) for modality, samples in scored.items()}, **absent} if settings.fisher else None
    return OrderScores(entropy, fisher), non_finite_problems(order, state, scored)


def combined_columns(scores: dict[str, OrderScores]) -> dict[str, float]:
    """MCS, Fisher terms and both ratios with their errors, averaged over the option orders; per-order MCS."""
    columns: dict[str, float] = {}
    for order, order_scores in scores.items():
        for modality in MODALITIES:
            columns[f"mcs_{modality}_{order}"] = order_scores.entropy[modality].value
    estimators = (
        ("mcs", "mcr", [order_scores.entropy for order_scores in scores.values()]),
        ("fisher", "mcr_fisher", [order_scores.fisher for order_scores in scores.values()]),
    )
    for prefix, ratio_name, per_order in estimators:
        if any(estimates is None for estimates in per_order):  # the Fisher term was not asked for
            per_modality = {modality: Estimate(math.nan, math.nan) for modality in MODALITIES}
        else:
            per_modality = {modality: order_average([estimates[modality] for estimates in per_order]) for modality in MODALITIES}
        for modality in MODALITIES:
            columns[f"{prefix}_{modality}"] = per_modality[modality].value
            columns[f"{prefix}_{modality}_se"] = per_modality[modality].se
        ratio = contribution_ratio(per_modality["text"], per_modality["image"])
        columns[ratio_name], columns[f"{ratio_name}_se"] = ratio.value, ratio.se
    return columns


def estimate_record(model: MultimodalModel, benchmark: Benchmark, record, settings: EstimatorSettings, max_batch: int) -> dict:
    """The MCR row of one record: both option orders, both modalities, both estimators (at most ``max_batch``
    samples per pass).

    Both orders are prefilled first, then scored inside one :func:`scoring_mode`.
    """
    image = benchmark.image(record)
    states = {
        order: prefill(model, model.encode([image], [prompts.conflict_query(record, order).prompt], contexts=[record["context"]]),
                       settings.text)
        for order in ORDERS
    }
    row: dict = {"record_id": record["record_id"], "task": record["task"], "split": record["split"]}
    scores, problems = {}, []
    with scoring_mode(model):
        for order, state in states.items():
            row.update(clean_answer(record, order, state))
            scores[order], order_problems = score_order(model, record, order, state, settings, max_batch)
            problems += order_problems
    row.update(combined_columns(scores))
    row["problem"] = "; ".join(problems)
    if problems:
        log.warning("record %s: non-finite Monte Carlo values (%s); its estimates are NaN", record["record_id"], row["problem"])
    return row


# ----------------------------------------------------------------------------- shard jobs


def estimate_records(
    model: MultimodalModel, benchmark: Benchmark, indices: range, settings: EstimatorSettings, max_batch: int, desc: str
) -> pd.DataFrame:
    """MCR rows for the benchmark records at ``indices`` (positions in ``records.parquet``)."""
    rows = []
    with progress(total=len(indices), desc=desc, unit="record") as bar:
        for index in indices:
            row = estimate_record(model, benchmark, benchmark.records.iloc[index], settings, max_batch)
            rows.append({"record_index": index, **row})
            bar.update(1)
    return pd.DataFrame(rows, columns=COLUMNS)
