"""The MCR's perturbations: seeded Gaussian noise on one modality's cached keys and values, scored in batched
one-token passes through a split attention that reads the shared clean entries once per pass.

Memory: a pass holds one copy of the perturbed entries per row and little else. The noise is drawn one
sample at a time into a one-sample buffer, the rows' entries reach the attention as they are (no cache
concatenates the fed token onto them), and the Fisher term's gradient is reduced layer by layer as the
backward pass produces it (:mod:`amps.core.memory` has the formula, :func:`pass_rows` the rows that fit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from amps.core.devices import run_in_passes
from amps.core.memory import USABLE_GPU_SHARE, rows_that_fit, text_shape
from amps.mcr.prefill import Prefill, option_logits_float32
from amps.mcr.settings import EstimatorSettings
from amps.models.interface import MultimodalModel

log = logging.getLogger(__name__)


@dataclass
class Samples:
    """The ``N`` Monte Carlo values of ``f`` and, when computed, of ``|grad f|^2 / f``."""

    f: np.ndarray
    fisher: np.ndarray | None


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
    """Attention of one fed token per row over shared cache entries, the row's own entries and itself.

    ``key``/``value`` [rows, kv_heads, 1, head_dim] are the fed token's; ``kwargs["mcr_own"][layer]``
    holds each row's own entries (the perturbed positions), [rows, kv_heads, own, head_dim], and
    ``kwargs["mcr_shared"][layer]`` the clean entries every row shares, [1, kv_heads, shared, head_dim].
    Keys are cached after their rotary embedding, so attention over the three parts is attention over
    the whole cache: the shared keys are read once per pass (one matrix product for all rows) instead
    of once per row, and no cache concatenates the fed token onto a copy of the rows' entries.
    Registered with transformers' attention interface, so it serves every model that dispatches
    attention through it.
    """
    if query.shape[2] != 1:
        raise ValueError(f"split attention scores one fed token per row, got {query.shape[2]} query positions")
    if key.shape[2] != 1:
        raise ValueError("split attention takes the rows' entries as mcr_own, not from a cache: run the forward without one")
    if attention_mask is not None:
        masked = ~attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
        if masked.any():
            raise ValueError("split attention needs an unmasked cache (one prompt, no padding)")
    if kwargs.get("sliding_window") is not None:
        raise ValueError("split attention attends to the whole cache; this model's layer uses a sliding window")
    shared_keys, shared_values = kwargs["mcr_shared"][module.layer_idx]
    own_keys, own_values = kwargs["mcr_own"][module.layer_idx]
    rows, heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    # Query head h reads key-value head h // groups (the layout of transformers' repeat_kv).
    grouped = query.reshape(rows, kv_heads, groups, head_dim)
    by_head = grouped.transpose(0, 1).reshape(kv_heads, rows * groups, head_dim)
    shared_scores = torch.bmm(by_head, shared_keys[0].transpose(1, 2)).reshape(kv_heads, rows, groups, -1).transpose(0, 1)
    own_scores = torch.matmul(grouped, own_keys.transpose(2, 3))
    fed_scores = torch.matmul(grouped, key.transpose(2, 3))
    parts = [shared_scores.shape[-1], own_scores.shape[-1], 1]
    scores = torch.cat([shared_scores, own_scores, fed_scores], dim=-1)
    weights = scores.mul(scaling).softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    shared_weights, own_weights, fed_weights = weights.split(parts, dim=-1)
    shared_part = torch.bmm(shared_weights.transpose(0, 1).reshape(kv_heads, rows * groups, -1), shared_values[0])
    output = (
        shared_part.reshape(kv_heads, rows, groups, head_dim).transpose(0, 1)
        + torch.matmul(own_weights, own_values)
        + fed_weights * value
    )
    return output.reshape(rows, heads, 1, head_dim).transpose(1, 2), None


SPLIT_ATTENTION = "amps_mcr_split"
AttentionInterface.register(SPLIT_ATTENTION, split_attention)
AttentionMaskInterface.register(SPLIT_ATTENTION, sdpa_mask)


class ModalityCopies:
    """Per-row perturbed copies of one modality's cache entries, and the clean entries all rows share.

    A row's cache is the union of its own entries at the modality's positions (``clean + scale *
    noise``, written by :meth:`perturb`) and the ``shared`` entries everywhere else: the clean entries
    themselves, held once for all rows.
    """

    def __init__(self, state: Prefill, modality: str):
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
        # One sample's noise, drawn whole: a sample's values then never depend on how passes are cut. Allocated
        # by the first perturbation (hiding the modality needs none).
        self.noise_shape = noise_shape(state, modality)
        self.noise: torch.Tensor | None = None

    def hidden(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One row's own entries with the modality's positions left out: the fed token then cannot attend to them."""
        return [(keys[:, :, :0], values[:, :, :0]) for keys, values in self.clean]

    def perturb(
        self, scales: list[tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator, rows: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``rows`` samples of ``generator``'s stream as perturbed entries, ``clean + scale * noise``, per layer.

        Each sample is drawn into the one-sample buffer and written into its row of every layer, so
        the full noise of a pass is never held. Fresh tensors per pass: a smaller pass (the last one,
        or one retried after running out of memory) holds only its own rows.
        """
        layers = [
            (keys.new_empty((rows, *keys.shape[1:])), values.new_empty((rows, *values.shape[1:]))) for keys, values in self.clean
        ]
        if self.noise is None:
            self.noise = self.clean[0][0].new_empty(self.noise_shape)
        for row in range(rows):
            self.noise.normal_(generator=generator)
            for index, ((keys, values), (clean_keys, clean_values)) in enumerate(zip(layers, self.clean)):
                key_scale, value_scale = scales[index]
                torch.addcmul(clean_keys[0], key_scale[0], self.noise[index, 0].to(keys.device), out=keys[row])
                torch.addcmul(clean_values[0], value_scale[0], self.noise[index, 1].to(values.device), out=values[row])
        return layers


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
    :func:`split_attention`); the forward keeps no cache. Must run inside :func:`scoring_mode`.
    """
    count = own[0][0].shape[0]
    position_ids = state.last_position_ids.expand(*state.last_position_ids.shape[:-2], count, 1)
    option_logits, _cache = option_logits_float32(
        model,
        state.option_ids,
        input_ids=state.last_token.expand(count, 1),
        position_ids=position_ids,
        use_cache=False,
        mcr_shared=shared,
        mcr_own=own,
    )
    return option_logits.log_softmax(dim=-1)[:, target]


def fisher_terms(
    log_f: torch.Tensor, own: list[tuple[torch.Tensor, torch.Tensor]], scales: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """``|grad_eps log f|^2`` per row, from a backward pass of ``log f`` to the perturbed entries ``own``.

    The perturbation is affine (``entry = clean + scale * eps``), so ``grad_eps = scale * grad_entry``.
    Each entry's gradient is reduced to its rows' squared norms as soon as the backward pass has
    produced it, and let go: one layer's gradient is alive at a time, never the whole gradient. Rows
    are independent, so the gradient of the sum holds each row's own gradient.
    """
    entries = [part for pair in own for part in pair]
    squares: dict[int, torch.Tensor] = {}

    def reduce(index: int):
        def hook(entry: torch.Tensor) -> None:
            scaled = entry.grad.mul_(scales[index // 2][index % 2].to(entry.grad.device))  # the gradient is ours to discard
            # A norm over one contiguous axis: far faster than reducing over the positions axis in place.
            squares[index] = torch.linalg.vector_norm(scaled.flatten(1), dim=1, dtype=torch.float32) ** 2
            entry.grad = None

        return hook

    handles = [entry.register_post_accumulate_grad_hook(reduce(index)) for index, entry in enumerate(entries)]
    try:
        log_f.sum().backward(inputs=entries)
    finally:
        for handle in handles:
            handle.remove()
    total = torch.zeros(log_f.shape[0], dtype=torch.float32, device=log_f.device)
    for index in range(len(entries)):  # summed in layer order, whatever order the backward pass took
        total += squares[index].to(total.device)
    return total


def score_pass(
    model: MultimodalModel,
    state: Prefill,
    copies: ModalityCopies,
    scales: list[tuple[torch.Tensor, torch.Tensor]],
    generator: torch.Generator,
    rows: int,
    target: int,
    fisher: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``f`` (and ``|grad f|^2 / f``) of the next ``rows`` samples of ``generator``'s stream, in one batched pass."""
    own = copies.perturb(scales, generator, rows)
    if not fisher:
        with torch.no_grad():
            f = option_log_probability(model, state, copies.shared, own, target).exp()
        return f.double().cpu().numpy(), None
    for keys, values in own:
        keys.requires_grad_()
        values.requires_grad_()
    with torch.enable_grad():
        log_f = option_log_probability(model, state, copies.shared, own, target)
        squared_norms = fisher_terms(log_f, own, scales)
    f = log_f.detach().exp()
    # |grad f|^2 / f = f |grad log f|^2, which stays finite where f underflows.
    return f.double().cpu().numpy(), (f * squared_norms.to(f.device)).double().cpu().numpy()


def pass_rows(model: MultimodalModel, state: Prefill, modality: str, fisher: bool, max_batch: int) -> int:
    """Rows per pass: ``max_batch``, or fewer on CUDA where the device's free memory holds fewer.

    What a pass needs per row is :func:`amps.core.memory.mcr_pass_bytes`; where the model is spread
    over several GPUs, each device's layers must fit its own free memory. The memory this process's
    allocator has cached counts as free. On the CPU the memory is the machine's: ``max_batch`` as set.
    """
    devices = {keys.device for keys, _ in state.layers}
    if any(device.type != "cuda" for device in devices):
        return max_batch
    text = text_shape(model.model.config.get_text_config())
    keys = state.layers[0][0]
    positions, length = len(state.positions[modality]), keys.shape[2] + 1
    rows = max_batch
    for device in devices:
        free, _total = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        here = dataclasses.replace(text, layers=sum(layer_keys.device == device for layer_keys, _ in state.layers))
        rows = min(rows, rows_that_fit(here, free * USABLE_GPU_SHARE, positions, length, keys.element_size(), fisher))
    if rows < max_batch:
        log.info("MCR %s: %d rows per pass fit the free GPU memory (max_batch %d)", modality, rows, max_batch)
    return rows


def score_modality(
    model: MultimodalModel,
    state: Prefill,
    modality: str,
    generator: torch.Generator,
    target: int,
    settings: EstimatorSettings,
    max_batch: int,
) -> Samples:
    """``settings.samples`` perturbations of one modality, drawn from ``generator``, in passes of at most ``max_batch``.

    Passes take as many rows as fit the device (:func:`pass_rows`) and are halved on CUDA out of memory
    (:func:`amps.core.devices.run_in_passes`); a retried pass rewinds the stream to its first sample, so
    it draws the same noise. The modality's copies are let go on return.
    """
    copies = ModalityCopies(state, modality)
    scales = noise_scales(state, modality, settings.sigma)
    stream_at = {0: generator.get_state()}  # the stream's state at each pass's first sample

    def run_pass(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        generator.set_state(stream_at[start])
        scores = score_pass(model, state, copies, scales, generator, stop - start, target, settings.fisher)
        stream_at[stop] = generator.get_state()
        return scores

    rows = pass_rows(model, state, modality, settings.fisher, max_batch)
    parts = run_in_passes(run_pass, settings.samples, rows, f"MCR {modality} samples")
    fisher = np.concatenate([part[1] for part in parts]) if settings.fisher else None
    return Samples(np.concatenate([part[0] for part in parts]), fisher)


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
    ``max_batch`` rows (:func:`score_modality`). With ``settings.fisher`` the gradient of ``log f`` with
    respect to the perturbed entries is taken by autograd in the same pass.
    """
    with scoring_mode(model):
        return {
            modality: score_modality(model, state, modality, generator, target, settings, max_batch)
            for modality, generator in generators.items()
        }
