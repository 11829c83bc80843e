"""Each method at its own best: strengths from each method's own validation scan, β's sign only from a significant link,
and AMPS's candidates scanned through their own modules (a scripted model: records flip and collapse at known strengths)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from amps.method import scaling
from amps.method import select as selection
from amps.method.methods import VectorSteering
from amps.method.steps import SelectAmps
from amps.vocabulary import ORDERS

from steps import TINY_MODEL, build

RECORDS = [f"r{index:02d}" for index in range(16)]
#: Eight sensitive records (follow the target from effective strength 0.5, collapse from 2) and eight tolerant ones
#: (follow from 2, never collapse).
FLIP = np.array([0.5] * 8 + [2.0] * 8)
COLLAPSE = np.array([2.0] * 8 + [math.inf] * 8)
GRID = [0.5, 1.0, 2.0, 3.0, 4.0]


class FakeVectors:
    """Per-sample vectors of potency 1, the mean vector of potency 0.5 (it needs twice the strength)."""

    layer = 1
    prompt_scale = 1.0

    def base(self, vector: str) -> torch.Tensor:
        potency = 1.0 if vector == "per_sample" else 0.5
        return torch.full((2, len(RECORDS), 1), potency)


class ScriptedScanner(selection.Scanner):
    """Answers as the script says: a record's effective strength is strength × potency × its factor."""

    def __init__(self, module_factors: dict[str, np.ndarray]):
        unsteered = self._answers(np.zeros(len(RECORDS)))
        super().__init__(None, None, unsteered, GRID, 0.05, 2)
        self.module_factors = module_factors
        self.calls: list[str] = []

    @staticmethod
    def _answers(effective: np.ndarray) -> pd.DataFrame:
        choices = np.where(effective >= COLLAPSE, "other", np.where(effective >= FLIP, "vision", "text"))
        return pd.DataFrame(
            [
                {"record_id": record, "order": order, "choice": choice}
                for record, choice in zip(RECORDS, choices)
                for order in ORDERS
            ]
        )

    def answers(self, steering, strength: float, desc: str) -> pd.DataFrame:
        self.calls.append(desc)
        if isinstance(steering, VectorSteering):
            potency = float(steering.vectors[0, 0, 0])
            factors = np.ones(len(RECORDS)) if steering.factors is None else np.asarray(steering.factors)
        else:
            potency, factors = 1.0, self.module_factors.get(steering.name, np.ones(len(RECORDS)))
        return self._answers(strength * potency * factors)


def _settings(**amps) -> SelectAmps:
    section = dict(beta_units=[1.0, 2.0], anchor_quantiles=[0.5], strengths=GRID, seeds=2, sign_bootstrap=400, **amps)
    return build(
        SelectAmps,
        {"models": {"scripted": TINY_MODEL}, "amps": section, "steering": {"positions": "all"}, "seed": 3},
        model="scripted",
    )


def _run(monkeypatch, settings: SelectAmps, mcr: np.ndarray):
    """Select in direction to_vision with the scripted model; the training MCR is the validation MCR."""
    grid = settings.grid
    candidates, _ = scaling.candidates(mcr, [1, -1], list(grid.beta_units), list(grid.anchor_quantiles), grid.max_factor)
    if grid.fixed:
        candidates = [scaling.from_values(mcr, grid.beta, grid.r_anchor, grid.max_factor)]
    factors = {
        f"amps-to_vision-{candidate.name}-seed{seed}": candidate.factors(mcr)
        for candidate in candidates
        for seed in range(settings.seeds)
    }
    monkeypatch.setattr(
        selection, "module_steering", lambda _model, _folder, name, _positions, _scale: SimpleNamespace(name=name)
    )
    scanner = ScriptedScanner(factors)
    choice, rows = selection.select_direction(
        settings, scanner, "to_vision", FakeVectors(), pd.Series(mcr, index=RECORDS), mcr, "steerers", "scripted"
    )
    return choice, pd.concat(rows, ignore_index=True), scanner


@pytest.mark.parametrize("sensitive_mcr", ["low", "high"])
def test_each_method_takes_its_own_strength_and_amps_its_sign_from_a_significant_link(monkeypatch, sensitive_mcr):
    low, high = np.linspace(0.1, 0.4, 8), np.linspace(0.6, 0.9, 8)
    mcr = np.concatenate([low, high] if sensitive_mcr == "low" else [high, low])
    choice, rows, _scanner = _run(monkeypatch, _settings(), mcr)
    # Unscaled prompt vectors: half the records follow from 0.5 (ties go to the weaker strength); at 2 the sensitive ones
    # collapse.
    for method in ("p2s", "l2s"):
        assert [(entry["strength"], entry["shift"], entry["collapse"]) for entry in choice[method]["seeds"]][0] == (0.5, 0.5, 0.0)
    # The mean vector is half as potent: its own scan picks twice the strength.
    assert (choice["mean"]["seeds"][0]["strength"], choice["mean"]["seeds"][0]["shift"]) == (1.0, 0.5)
    sign = choice["amps"]["sign"]
    assert sign["significant"] and sign["sign"] == (1 if sensitive_mcr == "low" else -1) and sign["source"] == "l2s"
    assert (sign["low"] > 0 or sign["high"] < 0) and sign["records"] == len(RECORDS)
    # AMPS weakens the sensitive records and strengthens the tolerant ones: more follow, none collapses.
    amps = choice["amps"]
    assert np.sign(amps["scaling"]["beta"]) == sign["sign"] and amps["scaling"]["factor_mean"] == pytest.approx(1.0)
    assert amps["seeds"][0]["shift"] >= 0.75 and amps["seeds"][0]["collapse"] == 0.0
    # Only the candidates of the data's sign were scanned, each through its own module, and the other seed through its own.
    scanned = rows[rows["method"] == "amps"]
    assert set(scanned["candidate"]) == {f"b{sign['sign'] * unit:+g}_q0.5" for unit in (1.0, 2.0)}
    assert set(scanned.loc[scanned["seed"] == 1, "candidate"]) == {amps["scaling"]["name"]}
    assert [entry["seed"] for entry in amps["seeds"]] == [0, 1]


def test_no_significant_link_keeps_beta_zero_and_amps_is_learn_to_steer(monkeypatch):
    # The MCR says nothing about which records are sensitive (alternating): the interval spans 0.
    mcr = np.tile([0.2, 0.8], 8) + np.linspace(0, 0.01, 16)
    choice, rows, _scanner = _run(monkeypatch, _settings(), mcr)
    sign = choice["amps"]["sign"]
    assert not sign["significant"] and sign["sign"] == 0 and sign["low"] < 0 < sign["high"]
    assert choice["amps"]["scaling"]["beta"] == 0.0 and choice["amps"]["scaling"]["name"] == "b0"
    assert choice["amps"]["seeds"] == choice["l2s"]["seeds"]
    assert "amps" not in set(rows["method"])  # no candidate was scanned


def test_a_fixed_beta_keeps_to_its_own_scaling_even_the_wrong_way(monkeypatch):
    mcr = np.concatenate([np.linspace(0.1, 0.4, 8), np.linspace(0.6, 0.9, 8)])
    # The data say β > 0; the config imposes β < 0: sensitive records are steered harder and collapse sooner.
    choice, rows, _scanner = _run(monkeypatch, _settings(beta=-3.0, r_anchor=0.5), mcr)
    assert choice["amps"]["scaling"]["beta"] == -3.0
    assert set(rows.loc[rows["method"] == "amps", "candidate"]) == {choice["amps"]["scaling"]["name"]}
    assert choice["amps"]["seeds"][0]["shift"] < 1.0


def test_a_scan_stops_after_two_strengths_beyond_the_bound(monkeypatch):
    mcr = np.concatenate([np.linspace(0.1, 0.4, 8), np.linspace(0.6, 0.9, 8)])
    _choice, rows, _scanner = _run(monkeypatch, _settings(), mcr)
    l2s = rows[(rows["method"] == "l2s") & (rows["seed"] == 0)]
    # Collapse 0.5 from strength 2 on: 2 and 3 exceed the bound, 4 is never asked.
    assert l2s["strength"].tolist() == [0.5, 1.0, 2.0, 3.0]
