"""The one place of the answer metrics: S_vision, S_text, S_other and the vision ratio, per option order,
pooled and per record, with the rate of answering "A"; record-level choices; shift and collapse against no
steering; the smallest strengths at which a record reacts; the sweep's per-record table and sensitivity.

Scores follow MC²: S_vision, S_text and S_other sum to 1 and vision ratio = S_vision / (S_vision +
S_text). They are reported for each option order, for both orders pooled (MC²'s protocol), and for
the record-level view, where a record follows a modality only if both orders pick that modality's
answer; ``rate_a`` (the share of answers that chose letter A) sits beside them so that a model
pushed to one letter is not mistaken for a modality shift. Two formulas look alike but are not
bit-equal and both stay: :func:`score`'s S_other is the complement of the decided shares, while
:func:`conflict_metrics` (AMPS's tables) counts the answers that name no option.

Nothing here imports torch or transformers: the table jobs that use it start in about a second.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from amps.vocabulary import CHOICES, DIRECTIONS, ORDERS

SWEEP_KEYS = ["model", "direction", "alpha"]
SCORE_COLUMNS = ["n", "s_vision", "s_text", "s_other", "vision_ratio", "rate_a"]


def modality_shares(choices: Iterable[str], letters: Iterable[str] | None = None) -> dict[str, float]:
    """S_vision, S_text and S_other of a set of answers (they sum to 1), the vision ratio S_vision / (S_vision +
    S_text) and the rate of answering "A"; ``n`` answers.

    ``choices`` holds each answer's choice, ``vision``, ``text`` or ``other`` (:func:`amps.data.prompts.classify`);
    ``letters`` each answer's letter, ``A``, ``B`` or empty (:func:`amps.data.prompts.parse_letter`): without
    them the rate of "A" is NaN. Shares of no answers, and the ratio where none chose a modality, are NaN.

    Example::

        amps.modality_shares(["vision", "text", "vision", "other"], ["A", "A", "B", ""])
        # {'n': 4, 's_vision': 0.5, 's_text': 0.25, 's_other': 0.25, 'vision_ratio': 0.667, 'rate_a': 0.5}
    """
    choices = choices if isinstance(choices, pd.Series) else pd.Series(list(choices), dtype=object)
    letters = pd.Series(dtype=object) if letters is None else letters
    letters = letters if isinstance(letters, pd.Series) else pd.Series(list(letters), dtype=object)
    unknown = sorted(set(choices.unique()) - set(CHOICES))
    if unknown:
        raise ValueError(f"unknown answer choices {unknown}; expected {CHOICES} (amps.classify reads an answer's choice)")
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


def target_metrics(answers: pd.DataFrame, keys: list[str], target: str) -> pd.DataFrame:
    """Per group: the record-level share following ``target`` in both orders, and pooled S_other."""
    records = record_choices(answers, keys)
    follows = records.assign(follows=records["choice"] == target).groupby(keys)["follows"].mean()
    other = answers.assign(other=answers["choice"] == "other").groupby(keys)["other"].mean()
    return pd.DataFrame({"record_target": follows, "s_other": other}).reset_index()


def shift_and_collapse(answers: pd.DataFrame, unsteered: pd.DataFrame, target: str) -> tuple[float, float]:
    """Record-level shift toward ``target`` and collapse (increase of S_other) of ``answers`` over ``unsteered``."""
    steered, base = (target_metrics(frame.assign(point=0), ["point"], target).iloc[0] for frame in (answers, unsteered))
    return float(steered["record_target"] - base["record_target"]), float(steered["s_other"] - base["s_other"])


def reaction_table(answers: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per record: the smallest strength at which it follows ``target`` in both orders, at which an answer
    names no option, and the smaller of the two (its reaction strength).

    ``answers`` holds every scanned strength (0 = unsteered) in a ``strength`` column; NaN where never.
    """
    records = record_choices(answers, ["strength"])
    any_other = answers.assign(other=answers["choice"] == "other").groupby(["strength", "record_id"])["other"].any()
    records = records.set_index(["strength", "record_id"]).join(any_other).reset_index()
    table = pd.DataFrame(index=sorted(records["record_id"].unique()))
    table.index.name = "record_id"
    table["flip_strength"] = records[records["choice"] == target].groupby("record_id")["strength"].min()
    table["collapse_strength"] = records[records["other"]].groupby("record_id")["strength"].min()
    table["reaction_strength"] = table[["flip_strength", "collapse_strength"]].min(axis=1, skipna=True)
    return table.reset_index()


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
            rows.append({**base, "view": "pooled", **modality_shares(frame["choice"], frame["letter"])})
            for order in ORDERS:
                part = frame[frame["order"] == order]
                rows.append({**base, "view": order, **modality_shares(part["choice"], part["letter"])})
            mask = np.ones(len(records), dtype=bool)
            for key, value in zip(group_keys, group):
                mask &= (records[key] == value).to_numpy()
            chosen = records[mask]
            shares = modality_shares(chosen["choice"])
            rate = letters_by_record.loc[tuple(group)] if group_keys else letters_by_record
            shares["rate_a"] = float(np.mean(rate))
            rows.append({**base, "view": "record", **shares})
    table = pd.DataFrame(rows)
    return table[keys + ["task", "view"] + SCORE_COLUMNS]


def record_table(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, direction, α, record): each order's choice and letter, agreement, record choice.

    A record follows a modality only where both orders picked that modality's answer; ``same_letter``
    marks records that answered the same letter in both orders (position bias: that letter names a
    different modality in each order).
    """
    keys = ["model", "direction", "alpha", "record_id", "task"]
    wide = answers.pivot_table(index=keys, columns="order", values=["choice", "letter"], aggfunc="first")
    table = pd.DataFrame(index=wide.index)
    for order in ORDERS:
        table[f"choice_{order}"] = wide[("choice", order)]
        table[f"letter_{order}"] = wide[("letter", order)]
    first, second = (table[f"choice_{order}"] for order in ORDERS)
    table["orders_agree"] = (first == second) & first.isin(["vision", "text"])
    table["same_letter"] = (table["letter_vision_first"] == table["letter_text_first"]) & (table["letter_vision_first"] != "")
    table["record_choice"] = first.where(table["orders_agree"], "other")
    table["any_other"] = (first == "other") | (second == "other")
    return table.reset_index()


def _smallest_alpha(frame: pd.DataFrame, hits: pd.Series) -> float:
    alphas = frame.loc[hits, "alpha"]
    return float(alphas.min()) if len(alphas) else np.nan


def sensitivity(records: pd.DataFrame) -> pd.DataFrame:
    """Per-sample sensitivity: per model, record and direction, two strengths of the grid.

    ``flip_alpha``: the smallest α at which the record follows the target modality in both orders
    (0 when it already does unsteered). ``collapse_alpha``: the smallest α at which its answer in
    either order names no option. NaN where no α of the grid does it.
    """
    rows = []
    for (model, direction, record_id, task), frame in records.groupby(["model", "direction", "record_id", "task"], sort=True):
        target = DIRECTIONS[direction][1]
        unsteered = frame[frame["alpha"] == 0.0]["record_choice"]
        rows.append(
            {
                "model": model,
                "record_id": record_id,
                "task": task,
                "direction": direction,
                "baseline_choice": unsteered.iloc[0] if len(unsteered) else "",
                "flip_alpha": _smallest_alpha(frame, frame["record_choice"] == target),
                "collapse_alpha": _smallest_alpha(frame, frame["any_other"]),
            }
        )
    return pd.DataFrame(rows)


def sweep_overview(answers: pd.DataFrame) -> pd.DataFrame:
    """Pooled vision ratio, S_other and rate of "A" per direction and α, with the record-level ratio."""
    scores = score(answers, SWEEP_KEYS)
    whole = scores[scores["task"] == "all"]
    pooled = whole[whole["view"] == "pooled"].set_index(SWEEP_KEYS)
    record = whole[whole["view"] == "record"].set_index(SWEEP_KEYS)
    overview = pooled[["vision_ratio", "s_other", "rate_a"]].copy()
    overview["record_vision_ratio"] = record["vision_ratio"]
    overview["record_s_vision"] = record["s_vision"]
    return overview.reset_index()


def conflict_metrics(answers: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: n records, S_vision, S_text, S_other, vision ratio, rate of "A", record-level vision and text shares."""
    pooled = answers.groupby(keys).agg(
        n_answers=("choice", "size"),
        s_vision=("choice", lambda c: (c == "vision").mean()),
        s_text=("choice", lambda c: (c == "text").mean()),
        s_other=("choice", lambda c: (c == "other").mean()),
        rate_a=("letter", lambda letters: (letters == "A").mean()),
    )
    decided = pooled["s_vision"] + pooled["s_text"]
    pooled["vision_ratio"] = (pooled["s_vision"] / decided).where(decided > 0)
    records = record_choices(answers, keys)
    per_record = records.groupby(keys).agg(
        n_records=("choice", "size"),
        record_vision=("choice", lambda c: (c == "vision").mean()),
        record_text=("choice", lambda c: (c == "text").mean()),
    )
    return pooled.join(per_record).reset_index()
