"""Steered vs unsteered batched generation on the same inputs, in one run.

Two random-weight models are timed: the largest toy scale of config/config.yaml (toy-l,
16 image tokens) and a tiny LLaVA-architecture model with LLaVA-1.5's 576 image tokens
(336-pixel images, patch 14). Each batch is generated unsteered and with one steering vector per row
(the per-sample path every steering method uses) at all positions, for a fixed number of new tokens
so both runs do the same work. Runs alternate in ABBA order (so slow drifts cancel). Each run is
timed by the process's CPU time, which other jobs on a shared machine do not inflate the way they
inflate wall-clock time, and by wall-clock time; the verdict uses the median CPU-time ratio.
Because contention still moves both by several percent, the time spent inside the steering hook
itself is also measured directly (timer hooks registered just before and just after it on the same
layer) and printed as a share of the unsteered generation time.

Usage: python benchmarks/steering_overhead.py [--batch-size 64] [--new-tokens 8] [--repeats 10]
Exits with status 1 when the steered/unsteered ratio of any model exceeds --max-ratio.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from amps.data import prompts, world
from amps.models import toy
from amps.models.interface import MultimodalModel
from amps.models.toy_plan import ToyArchitecture
from amps.steering.hook import steer
from amps.vocabulary import ORDERS

from default_scales import default_architecture, generation_parser, parse_generation_args

SCALES = {
    "toy-large (16 image tokens)": default_architecture("toy-l"),
    "tiny LLaVA (576 image tokens)": ToyArchitecture(
        text_layers=2, text_hidden=64, text_heads=2, vision_layers=1, vision_hidden=32, image_size=336, patch_size=14
    ),
}
TASKS = list(world.TASKS)


def build(arch: ToyArchitecture) -> MultimodalModel:
    """A random-weight toy LLaVA of the given sizes behind the model interface."""
    return toy.build_toy(arch, TASKS, seed=0)


def inputs(model: MultimodalModel, arch: ToyArchitecture, batch_size: int):
    """A batch of conflict-world questions (both option orders) with their rendered images."""
    records = world.make_records(TASKS, -(-batch_size // len(TASKS)), seed=1)[:batch_size]
    orders = [ORDERS[index % 2] for index in range(len(records))]
    images = [world.render_record_image(r["task"], r["answer_vision"], r["image_id"], arch.image_size) for r in records]
    texts = [prompts.conflict_query(record, order).prompt for record, order in zip(records, orders)]
    return model.encode(images, texts)


@torch.no_grad()
def timed_generate(model: MultimodalModel, batch, new_tokens: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one greedy generation of exactly ``new_tokens`` tokens per row."""
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    model.model.generate(**batch.inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return time.process_time() - cpu_started, time.perf_counter() - wall_started


@torch.no_grad()
def hook_seconds(model: MultimodalModel, layer: int, vectors: torch.Tensor, batch, new_tokens: int) -> float:
    """Wall seconds spent inside the steering hook during one generation, summed over its calls."""
    module = model.decoder_layers[layer]
    starts: list[float] = []
    spans: list[float] = []
    before = module.register_forward_hook(lambda *_: starts.append(time.perf_counter()))
    try:
        with steer(model, layer, vectors, positions="all"):
            after = module.register_forward_hook(lambda *_: spans.append(time.perf_counter() - starts[-1]))
            try:
                model.model.generate(**batch.inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            finally:
                after.remove()
    finally:
        before.remove()
    return sum(spans)


def measure(name: str, arch: ToyArchitecture, batch_size: int, new_tokens: int, repeats: int) -> float:
    """Print median unsteered and steered times for one model; return the CPU-time ratio."""
    model = build(arch)
    batch = inputs(model, arch, batch_size)
    vectors = torch.randn(batch.input_ids.shape[0], model.hidden_size, generator=torch.Generator().manual_seed(0))
    layer = model.num_layers // 2

    def steered() -> tuple[float, float]:
        with steer(model, layer, vectors, positions="all"):
            return timed_generate(model, batch, new_tokens)

    timed_generate(model, batch, new_tokens)  # warm-up: first calls allocate and pick kernels
    steered()
    plain_times, steered_times = [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            plain_times.append(timed_generate(model, batch, new_tokens))
            steered_times.append(steered())
        else:
            steered_times.append(steered())
            plain_times.append(timed_generate(model, batch, new_tokens))
    medians = {
        clock: (statistics.median(t[index] for t in plain_times), statistics.median(t[index] for t in steered_times))
        for index, clock in enumerate(("CPU", "wall"))
    }
    print(f"{name}: batch {batch.input_ids.shape[0]} x {batch.input_ids.shape[1]} tokens, {new_tokens} new tokens, layer {layer}")
    for clock, (plain, steered_time) in medians.items():
        print(
            f"  {clock:>4} time, median of {repeats}: unsteered {plain * 1000:.1f} ms, "
            f"steered {steered_time * 1000:.1f} ms, ratio {steered_time / plain:.3f}"
        )
    inside = statistics.median(hook_seconds(model, layer, vectors, batch, new_tokens) for _ in range(repeats))
    print(
        f"  time inside the steering hook: {inside * 1000:.2f} ms per generation, "
        f"{inside / medians['CPU'][0]:.2%} of the unsteered CPU time"
    )
    plain, steered_time = medians["CPU"]
    return steered_time / plain


def main(argv: list[str] | None = None) -> int:
    parser = generation_parser(__doc__.splitlines()[0], repeats=10)
    parser.add_argument("--max-ratio", type=float, default=1.05, help="steered/unsteered limit")
    args = parse_generation_args(parser, argv)
    ratios = {name: measure(name, arch, args.batch_size, args.new_tokens, args.repeats) for name, arch in SCALES.items()}
    worst = max(ratios.values())
    print(f"worst CPU-time ratio {worst:.3f} (limit {args.max_ratio}): {'PASS' if worst <= args.max_ratio else 'FAIL'}")
    return 0 if worst <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
