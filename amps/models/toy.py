"""The toy MLLM family of the offline world: real LLaVA architecture, trained here in minutes.

A toy model is a ``LlavaForConditionalGeneration`` (small CLIP vision tower, small Llama text
model) with a closed word-level tokenizer and a processor carrying a chat template. It is trained
on the world's corpus by a curriculum from the config (value words first, so the vision tower
learns to see; then A/B questions from one modality, so the model learns to point from a value to
its option letter; then the full mix with instructed and uninstructed conflicts), saved with
``save_pretrained``, and from then on
loaded only through :func:`amps.models.loading.load_model`, like any real checkpoint.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from amps.core.io import atomic_directory, write_json
from amps.core.progress import progress
from amps.data import corpus
from amps.models.interface import MultimodalModel
from amps.models.toy_plan import ToyArchitecture, TrainingPlan

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{{ '\\n' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{{ ' ' }}"
    "{% else %}ASSISTANT: {{ message['content'] }}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tokenizer(tasks: list[str]) -> PreTrainedTokenizerFast:
    """A closed word-level tokenizer whose vocabulary covers every string the world can produce."""
    splitter = pre_tokenizers.Whitespace()
    words = set()
    for text in corpus.vocabulary_texts(tasks) + ["USER", "ASSISTANT", ":"]:
        words.update(piece for piece, _ in splitter.pre_tokenize_str(text))
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = splitter
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, arch: ToyArchitecture) -> LlavaProcessor:
    """A LLaVA processor (CLIP image processor + the word tokenizer + chat template)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": arch.image_size},
        crop_size={"height": arch.image_size, "width": arch.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=arch.patch_size,
        # CLIP's CLS token is dropped by the "default" feature strategy: one token per patch.
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )


def build_model(tokenizer: PreTrainedTokenizerFast, arch: ToyArchitecture, seed: int) -> LlavaForConditionalGeneration:
    """A randomly initialised toy LLaVA of the given scale."""
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=arch.vision_hidden,
        intermediate_size=arch.vision_hidden * 2,
        num_hidden_layers=arch.vision_layers,
        num_attention_heads=max(1, arch.vision_hidden // 32),
        image_size=arch.image_size,
        patch_size=arch.patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.text_hidden,
        intermediate_size=arch.text_hidden * 2,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads,
        num_key_value_heads=arch.text_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_toy(arch: ToyArchitecture, tasks: list[str], seed: int) -> MultimodalModel:
    """A randomly initialised toy of the given scale behind the model interface, on the CPU: its word tokenizer,
    processor and weights (the training starts from it; tests and benchmarks use it untrained).

    Example::

        model = build_toy(ToyArchitecture(4, 64, 4, 2, 64, 32, 8), list(world.TASKS), seed=0)
    """
    tokenizer = build_tokenizer(tasks)
    processor = build_processor(tokenizer, arch)
    return MultimodalModel(build_model(tokenizer, arch, seed), processor, torch.device("cpu"))


def _first_targets(labels: torch.Tensor) -> torch.Tensor:
    """Each row's position (in the shifted labels) of its first target token: the answer letter or word."""
    return (labels[:, 1:] != -100).float().argmax(dim=1)


def _first_token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose first target token (the answer letter or word) is predicted correctly."""
    targets = labels[:, 1:]
    predicted = logits[:, :-1].argmax(-1)
    first = _first_targets(labels)
    rows = torch.arange(len(labels))
    return float((predicted[rows, first] == targets[rows, first]).float().mean())


def training_loss(
    logits: torch.Tensor, labels: torch.Tensor, alternatives: torch.Tensor, probabilities: torch.Tensor
) -> torch.Tensor:
    """Next-token cross-entropy over the target tokens, with soft answers where ``probabilities`` < 1.

    A row's first target token (its answer) costs ``p · CE(answer) + (1 − p) · CE(alternative)``
    (``alternatives`` holds token ids, any id where ``p`` is 1); every other target token costs its
    plain cross-entropy. With every ``p`` at 1 this is the causal LM loss transformers computes.
    """
    targets = labels[:, 1:]
    log_probs = logits[:, :-1].float().log_softmax(-1)
    kept = targets != -100
    token_loss = -log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * kept
    rows = torch.arange(len(labels))
    first = _first_targets(labels)
    alternative_loss = -log_probs[rows, first, alternatives]
    token_loss[rows, first] = probabilities * token_loss[rows, first] + (1 - probabilities) * alternative_loss
    return token_loss.sum() / kept.sum()


def _batches(stream, batch_size: int):
    while True:
        yield list(itertools.islice(stream, batch_size))


def fit_toy_model(
    output_dir: str | Path,
    arch: ToyArchitecture,
    plan: TrainingPlan,
    tasks: list[str],
) -> dict:
    """Build, train and save a toy model; returns a summary of the run.

    The folder is written to a temporary sibling and renamed into place at the end, so a killed
    run never leaves a folder that looks complete.
    """
    torch.set_num_threads(plan.threads)
    random.seed(plan.seed)
    np.random.seed(plan.seed)
    wrapper = build_toy(arch, tasks, plan.seed)
    net, processor = wrapper.model, wrapper.processor
    # foreach: the multi-tensor update, bitwise equal to the per-tensor one on the CPU and faster.
    optimizer = torch.optim.AdamW(net.parameters(), lr=plan.learning_rate, weight_decay=0.01, foreach=True)
    total = plan.steps
    warmup = max(1, total // 50)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),
    )
    net.train()
    started = time.perf_counter()
    losses: list[float] = []
    stage_accuracy: dict[str, float] = {}
    with progress(total=total, desc=f"train {Path(output_dir).name}", unit="step") as bar:
        for index, (stage, steps) in enumerate(zip(plan.stages, plan.stage_steps())):
            stream = corpus.training_examples(tasks, stage.mix, plan.preference, arch.image_size, plan.seed + index)
            hits: list[float] = []
            for examples in itertools.islice(_batches(stream, plan.batch_size), steps):
                batch = wrapper.encode(
                    [example.image for example in examples],
                    [example.prompt for example in examples],
                    [example.answer for example in examples],
                    locate_prompt=False,
                )
                output = net(**batch.inputs)
                alternatives = torch.tensor(
                    [wrapper.tokenizer.convert_tokens_to_ids(example.alternative or example.answer) for example in examples]
                )
                probabilities = torch.tensor([example.probability for example in examples])
                loss = training_loss(output.logits, batch.labels, alternatives, probabilities)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at step {len(losses)}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                hits.append(_first_token_accuracy(output.logits, batch.labels))
                bar.update(1)
                if len(losses) % 100 == 0:
                    log.info(
                        "step %d (%s): loss %.3f, answer accuracy %.3f",
                        len(losses),
                        stage.name,
                        np.mean(losses[-100:]),
                        np.mean(hits[-100:]),
                    )
            stage_accuracy[stage.name] = float(np.mean(hits[-50:])) if hits else float("nan")
    net.eval()
    output = Path(output_dir)
    with atomic_directory(output) as folder:
        net.save_pretrained(folder)
        processor.save_pretrained(folder)
        summary = {
            "architecture": arch.__dict__,
            "parameters": sum(p.numel() for p in net.parameters()),
            "steps": total,
            "stage_steps": dict(zip([stage.name for stage in plan.stages], plan.stage_steps())),
            "final_answer_accuracy_per_stage": stage_accuracy,
            "examples": total * plan.batch_size,
            "final_loss": float(np.mean(losses[-50:])),
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        write_json(folder / "training_summary.json", summary)
    log.info("trained %s: %s", output, summary)
    return summary
