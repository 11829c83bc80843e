"""The memory formulas (amps.core.memory, which plan every job's requests) against the peaks measured on the CPU,
side by side, in one run.

For each model, random weights in float32, each stage's core operation runs once on the CPU and the
peak of the bytes its tensors held is measured (tests/peak_memory.py: every storage an operation
allocates, counted until freed). The formulas get the model's own shapes (read from its config) and
the prompt lengths of its batch, as the planner gets the paper models' shapes from their config.json:

* weights and inputs: the bytes of the loaded parameters and of one encoded batch, against
  ``weights_bytes`` and ``inputs_bytes``;
* ``generate`` (evaluate, sweep, select, steered evaluation, ablations): greedy generation of
  ``--new-tokens`` tokens for a batch of ``--batch`` prompts, against ``cache_bytes`` (prompt plus
  new tokens) + ``generation_activations``;
* ``forward`` (activations): one forward keeping the logits of the last position only;
* ``mcr``: the MCR of one record (both option orders prefilled, ``--samples`` samples of each
  modality with the Fisher term, passes of up to ``--samples`` rows), against ``mcr_bytes``.

Models: toy-l (the largest toy of config/config.yaml, with the shape the planner uses for it:
``amps.core.memory.toy_shape``, its parameter count from the shapes), llava-576
(a LLaVA with 576 image tokens from 336-pixel images, hidden 512, 4 layers, 8 query heads sharing 2
key-value heads) and qwen2-vl (a Qwen2-VL with hidden 256, 4 layers, grouped heads, 224-pixel images:
256 patches, 64 image tokens).

Target: every formula bounds its measured peak (measured <= formula) without planning more than a
third too much (formula <= 1.33 x measured). The script prints both and exits with status 1 when a
target is missed.

Usage: python benchmarks/memory_plan.py [--batch 8] [--new-tokens 8] [--samples 32] [--models toy-l,llava-576,qwen2-vl]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable

import torch
from mcr_cost import SCALES, build
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from amps.core import memory
from amps.data import prompts, world
from amps.mcr.measure import measure_mcr
from amps.models.interface import Batch, MultimodalModel
from amps.models.qwen import ImageOnlyQwenProcessor
from amps.steering.activations import last_token_states

from default_scales import default_architecture

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peak_memory import TensorPeak  # noqa: E402 (a test helper, beside tests/tiny_models.py)

from tiny_models import (  # noqa: E402
    QWEN_CHAT_TEMPLATE,
    Qwen2VLImageProcessorPil,
    build_qwen_tokenizer,
    qwen_token_ids,
    set_generation_tokens,
)

QWEN_IMAGE_SIZE = 224
QWEN_PATCH_SIZE = 14
#: Targets: the formula bounds the measured peak, by at most this factor.
MOST_OVER = 1.33
MB = 1e6


def build_qwen() -> MultimodalModel:
    """A random-weight Qwen2-VL: hidden 256, 4 layers, 4 query heads sharing 2 key-value heads."""
    tokenizer = build_qwen_tokenizer()
    pixels = QWEN_IMAGE_SIZE * QWEN_IMAGE_SIZE
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=QWEN_PATCH_SIZE, merge_size=2, temporal_patch_size=2, min_pixels=pixels, max_pixels=pixels
    )
    processor = ImageOnlyQwenProcessor(image_processor, tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(
        depth=2, embed_dim=128, hidden_size=256, num_heads=2, mlp_ratio=4, patch_size=QWEN_PATCH_SIZE, spatial_merge_size=2
    )
    torch.manual_seed(0)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tokenizer))
    model = Qwen2VLForConditionalGeneration(config).eval()
    set_generation_tokens(model, tokenizer)
    return MultimodalModel(model, processor, torch.device("cpu"))


def conflict_record() -> dict:
    """One conflict-world record with its image: a batch asks it in every row, so all rows have one length."""
    record = world.make_records(["color"], 1, seed=1)[0]
    return dict(record, image=world.render_record_image("color", record["answer_vision"], record["image_id"], 32))


def shape_of(model: MultimodalModel, batch: Batch) -> memory.ModelShape:
    """The model's shapes as the formulas take them, from its config and the prompt lengths of ``batch``."""
    config = model.model.config
    vision = config.vision_config
    image_tokens = int(batch.image_mask[0].sum())
    if model.family == "llava":
        vision_hidden, vision_intermediate = vision.hidden_size, vision.intermediate_size
        vision_positions, kept = (vision.image_size // vision.patch_size) ** 2 + 1, vision.num_hidden_layers + 1
    else:
        vision_hidden, vision_intermediate = vision.embed_dim, vision.embed_dim * vision.mlp_ratio
        vision_positions, kept = int(batch.inputs["image_grid_thw"][0].prod()), 0
    return memory.ModelShape(
        parameters=sum(parameter.numel() for parameter in model.model.parameters()),
        text=memory.text_shape(config.get_text_config()),
        vision_hidden=vision_hidden,
        vision_intermediate=vision_intermediate,
        vision_positions=vision_positions,
        vision_states_kept=kept,
        image_tokens=image_tokens,
        pixel_values=batch.inputs["pixel_values"][0].numel() * (1 if model.family == "llava" else vision_positions),
        prompt_tokens=batch.input_ids.shape[1] - image_tokens,
    )


def peak(operation: Callable[[], object]) -> int:
    """Peak bytes the tensors of ``operation`` held at once."""
    with torch.no_grad(), TensorPeak() as measured:
        operation()
    return measured.peak


def mcr_peak(model: MultimodalModel, record: dict, samples: int) -> tuple[int, int]:
    """Peak bytes of one record's MCR (gradients on: the Fisher term), and its larger modality's positions."""
    with TensorPeak() as measured:
        measure_mcr(model, record, samples=samples, max_batch=samples)
    encoded = model.encode(
        [record["image"]], [prompts.conflict_query(record, "vision_first").prompt], contexts=[record["context"]]
    )
    return measured.peak, max(int(encoded.image_mask.sum()), int(encoded.context_mask.sum()))


def compare(
    name: str, model: MultimodalModel, planned: memory.ModelShape | None, batch_size: int, new_tokens: int, samples: int
) -> list[tuple]:
    """Rows of (model, what, formula bytes, measured bytes) for one model; ``planned`` is the shape the planner
    uses for it (a toy's), else the shape is read from the model."""
    record = conflict_record()
    prompt = prompts.conflict_query(record, "vision_first").prompt
    batch = model.encode([record["image"]] * batch_size, [prompt] * batch_size)
    shape = shape_of(model, batch)
    if planned is not None:  # the planner's shape, with this batch's prompt length (it plans a bound)
        shape = dataclasses.replace(planned, prompt_tokens=shape.prompt_tokens)
    b = next(model.model.parameters()).element_size()
    generation = memory.generation_activations(shape, batch_size, b)
    weights = sum(parameter.nbytes for parameter in model.model.parameters())
    inputs = sum(value.nbytes for value in batch.inputs.values()) + sum(
        mask.nbytes for mask in (batch.image_mask, batch.text_mask) if mask is not None
    )
    layers = list(range(model.num_layers))
    generate = peak(lambda: model.generate(batch, new_tokens))
    forward = peak(lambda: last_token_states(model, batch, layers))
    mcr, positions = mcr_peak(model, record, samples)
    mcr_cache, mcr_activations = memory.mcr_bytes(shape, samples, b, fisher=True, positions=positions)
    return [
        (name, "weights", memory.weights_bytes(shape, b), weights),
        (name, f"inputs ({batch_size} prompts)", memory.inputs_bytes(shape, batch_size, b), inputs),
        (
            name,
            f"generate {batch_size} x {new_tokens}",
            memory.cache_bytes(shape.text, batch_size, shape.sequence + new_tokens, b) + generation,
            generate,
        ),
        (
            name,
            f"forward {batch_size}",
            memory.cache_bytes(shape.text, batch_size, shape.sequence, b) + generation,
            forward,
        ),
        (name, f"mcr {samples} rows", mcr_cache + mcr_activations, mcr),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="prompts per generation and forward (default 8)")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generated per prompt (default 8)")
    parser.add_argument("--samples", type=int, default=32, help="MCR samples per modality, all in one pass (default 32)")
    parser.add_argument("--models", default="toy-l,llava-576,qwen2-vl", help="comma-separated, from toy-l, llava-576, qwen2-vl")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    toy_l = default_architecture("toy-l")
    builders = {
        "toy-l": lambda: (build(toy_l, toy_l.text_heads), memory.toy_shape(dataclasses.asdict(toy_l))),
        "llava-576": lambda: (build(SCALES["llava-576"], 2), None),
        "qwen2-vl": lambda: (build_qwen(), None),
    }
    unknown = sorted(set(args.models.split(",")) - set(builders))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {list(builders)}")
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        rows += compare(name, *builders[name](), args.batch, args.new_tokens, args.samples)
    print(f"{'model':<10} {'what':<24} {'formula MB':>11} {'measured MB':>12} {'formula / measured':>19}")
    missed = []
    for name, what, formula, measured in rows:
        ratio = formula / measured
        print(f"{name:<10} {what:<24} {formula / MB:>11.2f} {measured / MB:>12.2f} {ratio:>19.2f}")
        if not 1.0 <= ratio <= MOST_OVER:
            missed.append(f"{name} {what}")
    print(f"\ntarget: measured <= formula <= {MOST_OVER} x measured: " + (f"missed by {missed}" if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
