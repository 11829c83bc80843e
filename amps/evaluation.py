"""Preference evaluation: ask records in both option orders, parse answers, score modalities.

Scores follow MC²: S_vision, S_text and S_other sum to 1 and vision ratio = S_vision / (S_vision +
S_text). They are reported for each option order, for both orders pooled (MC²'s protocol), and for
the record-level view, where a record follows a modality only if both orders pick that modality's
answer; ``rate_a`` (the share of answers that chose letter A) sits beside them so that a model
pushed to one letter is not mistaken for a modality shift.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable

import numpy as np
import pandas as pd
import torch

from amps import prompts
from amps.data import Benchmark
from amps.io import read_table, write_table
from amps.models import MultimodalModel
from amps.progress import progress

log = logging.getLogger(__name__)

#: Baseline conditions: the conflict record under each instruction, and the agreeing control.
BASELINE_CONDITIONS = ("none", "text", "image", "agreeing")
VIEWS = ("pooled", "vision_first", "text_first", "record")
SCORE_COLUMNS = ["n", "s_vision", "s_text", "s_other", "vision_ratio", "rate_a"]
CHECK_COLUMNS = [
    "model",
    "agreeing_accuracy",
    "follows_image_instruction",
    "follows_text_instruction",
    "uninstructed_vision_ratio",
    "uninstructed_s_other",
    "passes",
]


@dataclass(frozen=True)
class Question:
    """One row to ask: a record in one option order under one condition."""

    record_index: int
    condition: str
    order: str
    prompt: str
    option_a: str
    option_b: str


def make_question(record, record_index: int, condition: str, order: str) -> Question:
    """Build the question for a record under a condition (an instruction, or ``agreeing``).

    ``agreeing`` asks with a context that supports the vision answer (``context_agreeing``); where a
    benchmark has none (MC²), the context is left out, so the image alone decides.
    """
    option_a, option_b = prompts.options_for_order(record["answer_vision"], record["answer_text"], order)
    if condition == "agreeing":
        context = record.get("context_agreeing")
        context = None if context is None or (isinstance(context, float) and np.isnan(context)) else context
        prompt = prompts.build_prompt(record["question"], option_a, option_b, context)
    else:
        prompt = prompts.build_prompt(record["question"], option_a, option_b, record["context"], condition)
    return Question(record_index, condition, order, prompt, option_a, option_b)


BatchContext = Callable[[list[Question], "object"], ContextManager]


def ask(
    model: MultimodalModel,
    benchmark: Benchmark,
    records: pd.DataFrame,
    questions: list[Question],
    batch_size: int,
    max_new_tokens: int,
    batch_context: BatchContext | None = None,
    desc: str = "ask",
) -> pd.DataFrame:
    """Generate greedy answers for ``questions`` and classify each as vision / text / other.

    ``batch_context(questions, batch)``, if given, returns a context manager entered around each
    batch's generation (steering hooks use it to add per-row vectors).
    """
    rows = []
    with progress(total=len(questions), desc=desc, unit="q") as bar:
        for start in range(0, len(questions), batch_size):
            chunk = questions[start : start + batch_size]
            images = [benchmark.image(records.iloc[q.record_index]) for q in chunk]
            batch = model.encode(images, [q.prompt for q in chunk])
            with batch_context(chunk, batch) if batch_context else contextlib.nullcontext():
                answers = model.generate(batch, max_new_tokens)
            rows += [answer_row(records, question, answer) for question, answer in zip(chunk, answers)]
            bar.update(len(chunk))
    return pd.DataFrame(rows)


def answer_row(records: pd.DataFrame, question: Question, answer: str) -> dict:
    """One answers-table row: the record, the question's condition and order, the answer, its letter and choice."""
    record = records.iloc[question.record_index]
    letter = prompts.parse_letter(answer, question.option_a, question.option_b)
    return {
        "record_id": record["record_id"],
        "task": record["task"],
        "condition": question.condition,
        "order": question.order,
        "answer": answer,
        "letter": letter or "",
        "choice": prompts.classify(answer, record, question.order),
    }


def baseline_questions(records: pd.DataFrame, conditions: Iterable[str] = BASELINE_CONDITIONS) -> list[Question]:
    """Every record under every condition, in both option orders."""
    return [
        make_question(record, index, condition, order)
        for condition in conditions
        for index, record in records.iterrows()
        for order in prompts.ORDERS
    ]


def evaluate_baseline(settings: dict, benchmark_dir: str, model: str, output: str) -> None:
    """CLI step: ask the test split under no / text / image instruction and the agreeing control.

    ``settings``: ``model_name``, ``model`` (the model's config entry), ``evaluation``, ``threads``.
    """
    torch.set_num_threads(settings["threads"])
    spec = settings["model"]
    loaded = MultimodalModel.load(
        model, spec["device"], spec["dtype"], spec["device_map"], spec["trust_remote_code"]
    )
    benchmark = Benchmark(benchmark_dir)
    records = benchmark.split("test")
    answers = ask(
        loaded,
        benchmark,
        records,
        baseline_questions(records),
        spec["batch_size"],
        settings["evaluation"]["max_new_tokens"],
        desc=f"baseline {settings['model_name']}",
    )
    answers.insert(0, "model", settings["model_name"])
    write_table(output, answers)


# ----------------------------------------------------------------------------- scoring


def _shares(choices: pd.Series, letters: pd.Series) -> dict[str, float]:
    n = len(choices)
    s_vision = float((choices == "vision").mean()) if n else np.nan
    s_text = float((choices == "text").mean()) if n else np.nan
    decided = s_vision + s_text
    return {
        "n": n,
        "s_vision": s_vision,
        "s_text": s_text,
        "s_other": 1.0 - decided if n else np.nan,
        "vision_ratio": s_vision / decided if n and decided > 0 else np.nan,
        "rate_a": float((letters == "A").mean()) if n else np.nan,
    }


def record_choices(answers: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Record-level choices: a modality only where both option orders chose it, else ``other``."""
    wide = answers.pivot_table(index=keys + ["record_id"], columns="order", values="choice", aggfunc="first")
    agree = wide["vision_first"] == wide["text_first"]
    choice = wide["vision_first"].where(agree, "other")
    return choice.rename("choice").reset_index()


def score(answers: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Scores per group of ``keys`` (plus ``task``, with ``all`` for the whole) and per view."""
    rows = []
    records = record_choices(answers, keys + ["task"])
    letters_by_record = answers.groupby(keys + ["task", "record_id"])["letter"].apply(lambda s: (s == "A").mean())
    for task_level in ("all", "task"):
        group_keys = keys + (["task"] if task_level == "task" else [])
        for group, frame in answers.groupby(group_keys, sort=True):
            group = group if isinstance(group, tuple) else (group,)
            base = dict(zip(group_keys, group))
            base.setdefault("task", "all")
            rows.append({**base, "view": "pooled", **_shares(frame["choice"], frame["letter"])})
            for order in prompts.ORDERS:
                part = frame[frame["order"] == order]
                rows.append({**base, "view": order, **_shares(part["choice"], part["letter"])})
            mask = np.ones(len(records), dtype=bool)
            for key, value in zip(group_keys, group):
                mask &= (records[key] == value).to_numpy()
            chosen = records[mask]
            shares = _shares(chosen["choice"], pd.Series(dtype=object))
            rate = letters_by_record.loc[tuple(group)] if group_keys else letters_by_record
            shares["rate_a"] = float(np.mean(rate))
            rows.append({**base, "view": "record", **shares})
    table = pd.DataFrame(rows)
    return table[keys + ["task", "view"] + SCORE_COLUMNS]


def toy_checks(scores: pd.DataFrame, checks: dict) -> pd.DataFrame:
    """The behaviour the toy models must show, per model, with pass/fail against the config."""
    pooled = scores[(scores["task"] == "all") & (scores["view"] == "pooled")].set_index(["model", "condition"])
    rows = []
    for model in sorted(pooled.index.get_level_values("model").unique()):
        none = pooled.loc[(model, "none")]
        row = {
            "model": model,
            "agreeing_accuracy": pooled.loc[(model, "agreeing"), "s_vision"],
            "follows_image_instruction": pooled.loc[(model, "image"), "s_vision"],
            "follows_text_instruction": pooled.loc[(model, "text"), "s_text"],
            "uninstructed_vision_ratio": none["vision_ratio"],
            "uninstructed_s_other": none["s_other"],
        }
        preferred = (
            row["uninstructed_vision_ratio"] <= 0.35
            if checks["preference"] == "text"
            else row["uninstructed_vision_ratio"] >= 0.65
        )
        row["passes"] = bool(
            row["agreeing_accuracy"] >= checks["agreeing_accuracy"]
            and row["follows_image_instruction"] >= checks["instruction_following"]
            and row["follows_text_instruction"] >= checks["instruction_following"]
            and preferred
            and row["uninstructed_s_other"] <= checks["max_other"]
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def summarize_baseline(settings: dict, answers: str, scores: str, checks: str) -> None:
    """CLI step: score all models' baseline answers and write the toy-model checks."""
    frames = [read_table(path) for path in answers.split(",")]
    table = score(pd.concat(frames, ignore_index=True), ["model", "condition"])
    table.insert(0, "run", settings["run_name"])
    write_table(scores, table)
    # The behaviour checks are the toy models' design targets; pretrained models are only measured.
    check_table = toy_checks(table[table["model"].isin(settings["toy_models"])], settings["evaluation"]["checks"])
    check_table.insert(0, "run", settings["run_name"])
    write_table(checks, check_table)
    log.info("toy model checks:\n%s", check_table.to_string(index=False))
