"""The CUDA path in one run: every model family through every stage's operation, and models of the paper's
shapes against the planner.

Part 1, each family (tiny random-weight LLaVA-1.5, Qwen2-VL and Qwen2.5-VL, saved with ``save_pretrained``
and loaded by ``amps.load_model`` on ``--device``, in ``--dtype`` and in float32 beside it), on conflict
prompts of MC²'s format with images of four aspect ratios:

* ``answers batched = single``: a batch answered together gives each row's answer alone (float32: the
  padding, positions and masks are right on the device);
* ``logits batched ~ single``: the same in ``--dtype``, first-token logits within the dtype's tolerance;
* ``bf16 ~ fp32``: the MCR's float32 option scores of the ``--dtype`` model against the float32 model's;
* ``activations batched ~ single``: the last-position states every steering layer gives;
* ``mean vector batched = single`` and ``learned module batched = single``: steered answers (float32), and
  no hook left on the model afterwards;
* ``zero noise = prefill``: the MCR with zero noise reproduces the prefill's answer probability in every
  sample of both modalities (``--dtype``).

Part 2, random-weight models of the paper's shapes (LLaVA-1.5-7B and 13B, Qwen2.5-VL-7B, from
``amps.core.memory.PRETRAINED_SHAPES``; ``--shapes small``: the same architectures a few layers deep and
narrow, for the CPU, where part 2 runs in float32), on 640x480 images as MC²'s COCO photographs: the
weights, one batch's generation (the evaluations), its forward (the activations) and one record's MCR
(Fisher term, a pass of ``--rows`` rows), each measured (peak bytes: ``torch.cuda.max_memory_allocated``
on CUDA, tensor storages on the CPU; seconds) and planned (the formulas of ``amps.core.memory`` on the
model's shapes, as ``amps plan-resources`` plans; seconds per prompt from config/paper.yaml's
``compute.seconds_per_prompt_per_billion``). Memory target: measured <= formula <= 1.5 x measured. Time
is reported, not judged (the planner adds its own margin, RUNTIME_MARGIN).

Exit status 1 when any check or target fails.

Usage: python benchmarks/gpu_check.py [--device cuda] [--dtype bfloat16] [--shapes paper|small] [--batch 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from amps.core import memory
from amps.core.config import load_config
from amps.data import prompts
from amps.mcr import perturb
from amps.mcr.measure import measure_mcr
from amps.mcr.prefill import option_logits_float32, prefill
from amps.mcr.settings import EstimatorSettings
from amps.method.steerer import Steerer
from amps.method.steering_module import learned_steering
from amps.models.interface import MultimodalModel, decoder_layers
from amps.models.loading import load_model
from amps.models.qwen import ImageOnlyQwenProcessor
from amps.steering.activations import last_token_states
from amps.steering.hook import SteeringVector
from amps.vocabulary import MODALITIES, ORDERS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peak_memory import TensorPeak  # noqa: E402

from fake_mc2 import IMAGE_SIZES, synthetic_records  # noqa: E402 (test helpers: MC²-format records, tiny models)
from tiny_models import (  # noqa: E402
    LLAVA_CHAT_TEMPLATE,
    QWEN_CHAT_TEMPLATE,
    TINY_FAMILIES,
    CLIPImageProcessorPil,
    Qwen2VLImageProcessorPil,
    build_llava_tokenizer,
    build_qwen_tokenizer,
    build_tiny_model,
    qwen_token_ids,
    set_generation_tokens,
)

#: Relative tolerance of a comparison in each compute dtype (of the compared values' largest magnitude).
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}
#: bfloat16 against float32: the option scores' rounding through every layer.
DTYPE_TOLERANCE = 0.1
#: The paper's checkpoints checked at their shapes, by the name config/paper.yaml gives them.
PAPER_MODELS = {
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf",
    "llava-1.5-13b": "llava-hf/llava-1.5-13b-hf",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
}
#: MC²'s images are COCO photographs, most of them 640x480.
COCO_SIZE = (640, 480)
MOST_OVER = 1.5
GB = 1e9


@dataclasses.dataclass
class Check:
    part: str
    what: str
    value: float
    bound: float
    passed: bool


# ---------------------------------------------------------------------------------------------- part 1


def conflict_batch(count: int) -> tuple[list[dict], list[Image.Image], list[str]]:
    """``count`` MC²-format records with images of varied aspect ratios, and their prompts in both orders."""
    records = synthetic_records(["colour"], count)
    images, texts = [], []
    for index, record in enumerate(records):
        for order in ORDERS:
            images.append(Image.effect_noise(IMAGE_SIZES[index % len(IMAGE_SIZES)], 40).convert("RGB"))
            texts.append(prompts.conflict_query(record, order).prompt)
    return records, images, texts


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference of ``a`` and ``b`` over the largest magnitude of ``b``."""
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def first_token_logits(model: MultimodalModel, images, texts) -> torch.Tensor:
    with torch.no_grad():
        return model.forward(model.encode(images, texts)).logits[:, -1].float().cpu()


def hook_count(model: MultimodalModel) -> int:
    """Forward and pre-forward hooks on the decoder layers (transformers may keep its own: compare counts)."""
    return sum(len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in decoder_layers(model))


def family_checks(family: str, folder: Path, device: str, dtype: str) -> list[Check]:
    """Part 1 for one family: the float32 model and the ``dtype`` model on ``device``."""
    exact = load_model(folder, device=device, dtype="float32")
    model = load_model(folder, device=device, dtype=dtype)
    tolerance = TOLERANCE[model.model.dtype]
    records, images, texts = conflict_batch(4)
    checks = []

    def check(what: str, value: float, bound: float, passed: bool | None = None) -> None:
        checks.append(Check(family, what, value, bound, value <= bound if passed is None else passed))

    def each_alone(answer: Callable[[list, list], list]) -> list:
        return [row for image, text in zip(images, texts) for row in answer([image], [text])]

    def plain(images_, texts_):
        return exact.generate(exact.encode(images_, texts_), 4)

    together = plain(images, texts)
    check("answers batched = single", sum(a != b for a, b in zip(together, each_alone(plain))), 0)
    batched = first_token_logits(model, images, texts)
    alone = torch.cat([first_token_logits(model, [image], [text]) for image, text in zip(images, texts)])
    check(f"logits batched ~ single ({dtype})", relative_gap(batched, alone), tolerance)

    option_ids = model.option_token_ids()

    def option_scores(which: MultimodalModel) -> torch.Tensor:
        batch = which.encode(images, texts)
        with torch.no_grad():
            return option_logits_float32(which, option_ids, **batch.to(which.device).inputs)[0]

    check(f"bf16 ~ fp32 option scores ({dtype})", relative_gap(option_scores(model), option_scores(exact)), DTYPE_TOLERANCE)

    layers = sorted({1, model.num_layers - 1})

    def states(images_, texts_) -> torch.Tensor:
        captured = last_token_states(model, model.encode(images_, texts_), layers)
        return torch.cat([captured[layer] for layer in layers], dim=-1)

    stacked = torch.cat([states([image], [text]) for image, text in zip(images, texts)])
    check(f"activations batched ~ single ({dtype})", relative_gap(states(images, texts), stacked), tolerance)

    hooks_before = hook_count(exact)
    generator = torch.Generator().manual_seed(0)
    hidden = exact.hidden_size
    vector = SteeringVector(torch.randn(hidden, generator=generator).to(exact.device), layer=1)

    def mean_steered(images_, texts_):
        with vector.apply(exact.model, strength=4.0):
            return plain(images_, texts_)

    steered = mean_steered(images, texts)
    check("mean vector batched = single", sum(a != b for a, b in zip(steered, each_alone(mean_steered))), 0)
    steerer = Steerer(hidden, 16, generator=generator).to(exact.device)

    def module_steered(images_, texts_):
        with learned_steering(exact.model, steerer, 1, 1, strength=8.0):
            return plain(images_, texts_)

    learned = module_steered(images, texts)
    check("learned module batched = single", sum(a != b for a, b in zip(learned, each_alone(module_steered))), 0)
    check("hooks left after steering", hook_count(exact) - hooks_before, 0)

    record = dict(records[0], image=images[0])
    state = prefill(model, model.encode([record["image"]], [texts[0]], contexts=[record["context"]]))
    settings = EstimatorSettings(0.0, 4, "clean", True, "context", seed=0)
    generators = {modality: torch.Generator().manual_seed(index) for index, modality in enumerate(MODALITIES)}
    scored = perturb.score_samples(model, state, 0, generators, settings, max_batch=4)
    clean = float(state.option_logits.softmax(dim=-1)[0])
    drift = max(float(abs(torch.as_tensor(scored[modality].f) - clean).max()) for modality in MODALITIES)
    check(f"zero noise = prefill ({dtype})", drift, tolerance)
    return checks


# ---------------------------------------------------------------------------------------------- part 2


def small(shape: memory.ModelShape) -> memory.ModelShape:
    """The architecture at CPU scale: two text and vision layers, 32-wide heads, an eighth of the heads; images and
    prompts as they are."""
    text = shape.text
    heads = max(2, text.heads // 8)
    kv_heads = heads if text.kv_heads == text.heads else max(1, text.kv_heads // 4)
    hidden = heads * 32
    scaled = memory.TextShape(2, hidden, heads, kv_heads, 32, hidden * text.intermediate // text.hidden, text.vocab)
    kept = 3 if shape.vision_states_kept else 0  # LLaVA keeps every vision layer's states (two layers: three)
    return dataclasses.replace(shape, text=scaled, vision_hidden=64, vision_intermediate=128, vision_states_kept=kept)


def build_at_shape(family: str, shape: memory.ModelShape, device: str, dtype: torch.dtype) -> MultimodalModel:
    """A random-weight model of ``shape`` (its vocabulary the real one), with a processor that gives the
    checkpoint's image tokens for a 640x480 image."""
    text = shape.text
    text_config = dict(
        vocab_size=text.vocab,
        hidden_size=text.hidden,
        intermediate_size=text.intermediate,
        num_hidden_layers=text.layers,
        num_attention_heads=text.heads,
        num_key_value_heads=text.kv_heads,
        max_position_embeddings=4096,
    )
    if family == "llava":
        tokenizer = build_llava_tokenizer()
        vision_layers = shape.vision_states_kept - 1
        config = LlavaConfig(
            vision_config=CLIPVisionConfig(
                hidden_size=shape.vision_hidden,
                intermediate_size=shape.vision_intermediate,
                num_hidden_layers=vision_layers,
                num_attention_heads=max(1, shape.vision_hidden // 64),
                image_size=336,
                patch_size=14,
            ),
            text_config=LlamaConfig(**text_config, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            image_seq_length=576,
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
        )
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=14,
            num_additional_image_tokens=1,
            vision_feature_select_strategy="default",
            chat_template=LLAVA_CHAT_TEMPLATE,
            image_token="<image>",
        )
        network_class = LlavaForConditionalGeneration
    else:
        tokenizer = build_qwen_tokenizer()
        head_dim = text.hidden // text.heads
        quarter = head_dim // 2 // 4
        text_config["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": [head_dim // 2 - 2 * quarter * 3 // 2, quarter * 3 // 2, quarter * 3 // 2],
        }
        vision = dict(
            depth=2 if shape.vision_hidden < 1280 else 32,
            hidden_size=shape.vision_hidden,
            intermediate_size=shape.vision_intermediate,
            num_heads=max(1, shape.vision_hidden // 80),
            out_hidden_size=text.hidden,
            patch_size=14,
            spatial_merge_size=2,
            fullatt_block_indexes=[1] if shape.vision_hidden < 1280 else [7, 15, 23, 31],
        )
        text_config["pad_token_id"] = tokenizer.pad_token_id
        config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision, **qwen_token_ids(tokenizer))
        image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2)
        processor = ImageOnlyQwenProcessor(image_processor, tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
        network_class = Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(0)
    with torch.device(device):
        network = network_class._from_config(config, dtype=dtype).eval()
    set_generation_tokens(network, tokenizer)
    return MultimodalModel(network, processor, torch.device(device))


class Peak:
    """Peak bytes a block added on its device, and its seconds."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> "Peak":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            self.tensors = TensorPeak().__enter__()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.before
        else:
            self.tensors.__exit__(*exc)
            self.bytes = self.tensors.peak
        self.seconds = time.perf_counter() - self.start


def shape_checks(
    name: str, shape: memory.ModelShape, device: str, dtype: torch.dtype, batch: int, rows: int, seconds_per_billion: float
) -> tuple[list[Check], list[str]]:
    """Part 2 for one model: measured peak bytes and seconds of each stage against the plan."""
    family = "llava" if "llava" in name else "qwen2_5_vl"
    model = build_at_shape(family, shape, device, dtype)
    b = torch.finfo(dtype).bits // 8
    weights = sum(parameter.nbytes for parameter in model.model.parameters())
    record = dict(synthetic_records(["colour"], 1)[0], image=Image.effect_noise(COCO_SIZE, 40).convert("RGB"))
    prompt = prompts.conflict_query(record, "vision_first").prompt
    encoded = model.encode([record["image"]] * batch, [prompt] * batch, contexts=[record["context"]] * batch)
    measured_shape = dataclasses.replace(
        shape,
        parameters=sum(parameter.numel() for parameter in model.model.parameters()),
        image_tokens=int(encoded.image_mask[0].sum()),
        prompt_tokens=encoded.input_ids.shape[1] - int(encoded.image_mask[0].sum()),
    )
    text = measured_shape.text
    billions = measured_shape.parameters / 1e9
    with Peak(device) as generation:
        model.generate(encoded, 8)
    with Peak(device) as forward, torch.no_grad():
        last_token_states(model, encoded, [text.layers // 2])
    with Peak(device) as mcr:
        measure_mcr(model, record, samples=rows, max_batch=rows)
    positions = max(int(encoded.image_mask[0].sum()), int(encoded.context_mask[0].sum()))
    mcr_cache, mcr_activations = memory.mcr_bytes(measured_shape, rows, b, fisher=True, positions=positions)
    planned = {
        "weights": memory.weights_bytes(measured_shape, b),
        f"generate {batch} x 8": memory.cache_bytes(text, batch, measured_shape.sequence + 8, b)
        + memory.generation_activations(measured_shape, batch, b),
        f"forward {batch}": memory.cache_bytes(text, batch, measured_shape.sequence, b)
        + memory.generation_activations(measured_shape, batch, b),
        f"mcr {rows} rows": mcr_cache + mcr_activations,
    }
    measured = {"weights": weights, f"generate {batch} x 8": generation.bytes, f"forward {batch}": forward.bytes}
    measured[f"mcr {rows} rows"] = mcr.bytes
    checks = [
        Check(
            name,
            f"{what}: formula {planned[what] / GB:.3f} GB / measured {measured[what] / GB:.3f} GB",
            planned[what] / measured[what],
            MOST_OVER,
            1.0 <= planned[what] / measured[what] <= MOST_OVER,
        )
        for what in planned
    ]
    # Planned seconds per prompt: a prefill and a few tokens; the MCR's record: both orders, both modalities,
    # ``rows`` samples at the planner's per-sample share of a prompt, tripled by the Fisher term.
    per_prompt = seconds_per_billion * billions
    mcr_prompts = len(ORDERS) * len(MODALITIES) * rows * 0.05 * 3
    times = [
        f"{name}: {measured_shape.sequence} positions ({measured_shape.image_tokens} image), {billions:.2f} B parameters",
        f"  generate: {generation.seconds / batch:.3f} s per prompt (planned {per_prompt:.3f})",
        f"  forward:  {forward.seconds / batch:.3f} s per prompt (planned {per_prompt:.3f})",
        f"  mcr:      {mcr.seconds:.3f} s per record (planned {mcr_prompts * per_prompt:.3f})",
    ]
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return checks, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="compute dtype (default: bfloat16 on CUDA, float32 on the CPU)")
    parser.add_argument("--shapes", choices=("paper", "small"), default=None, help="default: paper on CUDA, small on the CPU")
    parser.add_argument("--models", default=",".join(PAPER_MODELS), help=f"part 2's models, from {list(PAPER_MODELS)}")
    parser.add_argument("--batch", type=int, default=None, help="prompts per generation (default 16 on CUDA, 2 on the CPU)")
    parser.add_argument("--rows", type=int, default=None, help="MCR rows per pass (default 32 on CUDA, 4 on the CPU)")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    shapes = args.shapes or ("paper" if cuda else "small")
    batch, rows = args.batch or (16 if cuda else 2), args.rows or (32 if cuda else 4)
    unknown = sorted(set(args.models.split(",")) - set(PAPER_MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {list(PAPER_MODELS)}")
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    checks: list[Check] = []
    with tempfile.TemporaryDirectory() as root:
        for family in TINY_FAMILIES:
            checks += family_checks(family, build_tiny_model(family, Path(root) / family), args.device, dtype)
    times = []
    paper = load_config(Path(__file__).resolve().parent.parent / "config" / "paper.yaml", check_paths=False)
    seconds_per_billion = paper["compute"]["seconds_per_prompt_per_billion"]
    # On the CPU, bfloat16 attention falls back to a kernel that materialises the attention weights, which the
    # CUDA kernels never do; CPU models run in float32 anyway (dtype auto), so part 2 measures them so there.
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype if cuda else "float32"]
    for name in args.models.split(","):
        shape = memory.PRETRAINED_SHAPES[PAPER_MODELS[name]]
        shape = small(shape) if shapes == "small" else shape
        found, timed = shape_checks(name, shape, args.device, torch_dtype, batch, rows, seconds_per_billion)
        checks += found
        times += timed
    print(f"{'part':<14} {'check':<72} {'value':>9} {'bound':>9}  ok")
    for check in checks:
        print(f"{check.part:<14} {check.what:<72} {check.value:>9.3g} {check.bound:>9.3g}  {'yes' if check.passed else 'NO'}")
    print("\n" + "\n".join(times))
    failed = [f"{check.part}: {check.what}" for check in checks if not check.passed]
    print("\nall checks passed" if not failed else f"\nfailed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
