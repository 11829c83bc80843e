"""Prefills per answer: amps's answering (amps.models.asking.greedy_tokens) against one full greedy generation, in one run.

A random-weight toy of the largest default scale (toy-l) answers a batch of conflict-world questions, its
logits biased so that each row answers with a letter and then either ends (as trained toys and models that
answer with a letter do) or writes on to the token limit (as a collapsed or wordy answer does), by a share
of rows that writes on. For each share, both ways answer the same batch and their answers are asserted
identical; the cost per answer is printed in units of one prefill of the batch: the forward passes over the
prompt and the decoding steps per answer (each pass counted by its rows), and the CPU time (median of the
repeats, the two ways in ABBA order) divided by that of one prefill forward of the batch.

Full generation stops once every row has ended, so where every answer is a letter and its end the two cost
the same (a prefill and one step); where some rows write on, full generation carries every row to the
limit, and amps generates on only those rows (their prompts again, as a batch of their own).

Usage: python benchmarks/answer_cost.py [--batch-size 64] [--new-tokens 8] [--repeats 9]
Exits with status 1 when the answers differ, or when amps costs more than --max-prefills prefills per answer
where every answer is a letter and its end.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from typing import Callable, Iterator

import torch

from amps.data import prompts, world
from amps.models import toy
from amps.models.asking import Question, greedy_tokens
from amps.models.batch import Batch
from amps.models.interface import MultimodalModel
from amps.models.toy_plan import ToyArchitecture
from amps.vocabulary import ORDERS

from default_scales import default_architecture, generation_parser, parse_generation_args

TASKS = list(world.TASKS)
SHARES = (0.0, 1 / 16, 1 / 4, 1.0)
#: A logit bias that decides the token outright.
FORCE = 100.0


def build() -> tuple[MultimodalModel, ToyArchitecture]:
    """A random-weight toy of the default toy-l scale, and its architecture."""
    arch = default_architecture("toy-l")
    return toy.build_toy(arch, TASKS, seed=0), arch


def questions(model: MultimodalModel, image_size: int, batch_size: int) -> tuple[list[Question], Batch]:
    """``batch_size`` conflict-world questions with distinct prompts (both option orders), their images, encoded."""
    asked, images = [], []
    for record in world.make_records(TASKS, batch_size, seed=1):
        for order in ORDERS:
            query = prompts.conflict_query(record, order)
            if len(asked) < batch_size and query.prompt not in {question.prompt for question in asked}:
                asked.append(Question(len(asked), "conflict", order, query.prompt, query.option_a, query.option_b))
                images.append(world.render_record_image(record["task"], record["answer_vision"], record["image_id"], image_size))
    batch = model.encode(images, [question.prompt for question in asked])
    if batch.rows < batch_size or len(set(prompt_keys(batch.input_ids, batch.attention_mask))) != batch.rows:
        raise ValueError(f"could not find {batch_size} distinct prompts: the rows writing on are chosen by prompt")
    return asked, batch


def prompt_keys(ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, ...]]:
    """Each row's own prompt tokens (padding left out): what a row is, in any batch."""
    return [tuple(ids[row][mask[row].bool()].tolist()) for row in range(ids.shape[0])]


@contextlib.contextmanager
def answering(model: MultimodalModel, batch: Batch, share: float, passes: list[tuple[int, int]]) -> Iterator[None]:
    """Rows answer a letter (by prompt), then end, except the first ``share`` of the batch's prompts, which write on;
    every forward's (rows, positions) goes to ``passes``."""
    keys = prompt_keys(batch.input_ids, batch.attention_mask)
    writing_on = set(keys[: round(share * batch.rows)])
    options = model.option_token_ids()
    end = model.end_tokens()[0]
    # Each row of the generation running, from its prefill: a decoding step sees only the token just written.
    letters = torch.zeros(0, dtype=torch.long)
    writes_on = torch.zeros(0, dtype=torch.bool)

    def read_tokens(_module, _args, kwargs):
        nonlocal letters, writes_on
        ids = kwargs["input_ids"]
        passes.append((ids.shape[0], ids.shape[1]))
        if ids.shape[1] > 1:
            rows = prompt_keys(ids, kwargs["attention_mask"])
            letters = torch.tensor([options[sum(key) % 2] for key in rows])
            writes_on = torch.tensor([key in writing_on for key in rows])

    def bias(_module, _args, logits):
        logits = logits.clone()
        if passes[-1][1] > 1:
            logits[torch.arange(logits.shape[0]), -1, letters] += FORCE
        else:
            logits[:, -1, end] += torch.where(writes_on, -FORCE, FORCE)
        return logits

    handles = [
        model.model.model.register_forward_pre_hook(read_tokens, with_kwargs=True),
        model.model.get_output_embeddings().register_forward_hook(bias),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.process_time()
    result = run()
    return time.process_time() - started, result


def measure(model, asked, batch, share: float, new_tokens: int, repeats: int, prefill_seconds: float) -> float:
    """Print both ways' cost per answer at one share of rows writing on; return amps's prefills per answer."""
    costs: dict[str, dict] = {}
    ways = {
        "amps": lambda: model.decode(greedy_tokens(model, asked, batch, new_tokens)),
        "full generation": lambda: model.generate(batch, new_tokens),
    }
    answers = {}
    for name, way in ways.items():
        passes: list[tuple[int, int]] = []
        with answering(model, batch, share, passes):
            answers[name] = way()
        costs[name] = {
            "prefills": sum(rows for rows, positions in passes if positions > 1) / batch.rows,
            "steps": sum(rows for rows, positions in passes if positions == 1) / batch.rows,
            "seconds": [],
        }
    if answers["amps"] != answers["full generation"]:
        raise AssertionError(f"amps's answers differ from full generation's at share {share:g}")
    for repeat in range(repeats):
        order = list(ways) if repeat % 2 == 0 else list(ways)[::-1]
        for name in order:
            with answering(model, batch, share, []):
                costs[name]["seconds"].append(timed(ways[name])[0])
    print(f"  {round(share * batch.rows)} of {batch.rows} rows writing on:")
    for name, cost in costs.items():
        seconds = statistics.median(cost["seconds"])
        print(
            f"    {name:>15}: {cost['prefills']:.3f} prompt passes + {cost['steps']:.3f} decoding steps per answer, "
            f"CPU time {seconds / prefill_seconds:.3f} prefills per answer ({seconds * 1000:.1f} ms per batch)"
        )
    return statistics.median(costs["amps"]["seconds"]) / prefill_seconds


def main(argv: list[str] | None = None) -> int:
    parser = generation_parser(__doc__.splitlines()[0], repeats=9)
    parser.add_argument("--max-prefills", type=float, default=1.2, help="limit where every answer is a letter and its end")
    args = parse_generation_args(parser, argv)
    model, arch = build()
    asked, batch = questions(model, arch.image_size, args.batch_size)

    @torch.no_grad()
    def prefill() -> None:
        model.forward(batch, use_cache=True, logits_to_keep=1)

    prefill()  # warm-up: first calls allocate and pick kernels
    model.generate(batch, args.new_tokens)
    prefill_seconds = statistics.median(timed(prefill)[0] for _ in range(args.repeats))
    print(
        f"toy-l (random weights): batch {batch.rows} x {batch.input_ids.shape[1]} tokens, up to {args.new_tokens} new "
        f"tokens, one prefill {prefill_seconds * 1000:.1f} ms CPU time"
    )
    amps_cost = {share: measure(model, asked, batch, share, args.new_tokens, args.repeats, prefill_seconds) for share in SHARES}
    letters_only = amps_cost[0.0]
    verdict = "PASS" if letters_only <= args.max_prefills else "FAIL"
    print(
        f"amps, every answer a letter and its end: {letters_only:.3f} prefills per answer (limit {args.max_prefills}): {verdict}"
    )
    return 0 if letters_only <= args.max_prefills else 1


if __name__ == "__main__":
    sys.exit(main())
